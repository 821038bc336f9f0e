//! (d) An independent client — Python pymodbus, written from docs/register-map.md alone — reads
//! and writes the shim's registers and checks every value against the document.

use anyhow::Context;
use nanoecr_hil_tests::{hil_toml, python_check, require_python_modules, Shim};

const SHIM: &str = env!("CARGO_BIN_EXE_rig-shim");

#[test]
fn pymodbus_client_agrees_with_the_register_map() -> anyhow::Result<()> {
    require_python_modules(&["pymodbus"])?;
    let shim = Shim::spawn(SHIM, &hil_toml(), &["--tcp", "127.0.0.1:0"])?;
    let addr = shim.tcp.context("tcp endpoint")?;
    python_check("check_register_map.py", &[addr.ip().to_string(), addr.port().to_string()])?;
    shim.stop()?;
    Ok(())
}
