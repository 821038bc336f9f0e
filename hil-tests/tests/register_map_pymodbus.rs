//! (d) An independent client — Python pymodbus, written from docs/register-map.md alone — reads
//! and writes the shim's registers and checks every value against the document.

use std::process::Command;

use anyhow::Context;
use nanoecr_hil_tests::{hil_toml, workspace_root, Shim};

const SHIM: &str = env!("CARGO_BIN_EXE_rig-shim");

#[test]
fn pymodbus_client_agrees_with_the_register_map() -> anyhow::Result<()> {
    let probe = Command::new("python3").args(["-c", "import pymodbus"]).status().context("python3")?;
    anyhow::ensure!(probe.success(), "pymodbus is missing: `pip install pymodbus` (scripts/setup.sh installs it)");
    let shim = Shim::spawn(SHIM, &hil_toml(), &["--tcp", "127.0.0.1:0"])?;
    let addr = shim.tcp.context("tcp endpoint")?;
    let script = workspace_root().join("hil-tests/python/check_register_map.py");
    let out = Command::new("python3").arg(&script).arg(addr.ip().to_string()).arg(addr.port().to_string()).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stdout.contains("ALL OK"), "pymodbus check failed");
    shim.stop()?;
    Ok(())
}
