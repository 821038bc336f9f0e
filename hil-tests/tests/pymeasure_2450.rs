//! An independent client — PyMeasure's `Keithley2450` over pyvisa-py's `TCPIP::…::SOCKET`
//! resource — drives the keithley-2450 shim and reads the simulated pillar's current.

use anyhow::Context;
use nanoecr_hil_tests::{hil_toml, python_check, require_python_modules, Shim};

const SMU: &str = env!("CARGO_BIN_EXE_hil-smu-shim");

#[test]
fn pymeasure_keithley2450_reads_v_over_r_and_gets_113_for_2400_buffer_commands() -> anyhow::Result<()> {
    require_python_modules(&["pymeasure", "pyvisa", "pyvisa_py"])?;
    let shim = Shim::spawn(SMU, &hil_toml(), &["--model", "keithley-2450", "--listen", "127.0.0.1:0"])?;
    let addr = shim.scpi_tcp.context("SCPI_TCP endpoint")?;
    // The same config the shim simulates: I = V / R for a pillar in Ohmic contact.
    let cfg = nanoecr_core::config::load(&hil_toml())?;
    let r_ohm = cfg.raw.simulation.circuit_resistance_ohm;
    python_check("pymeasure_2450.py", &[addr.ip().to_string(), addr.port().to_string(), r_ohm.to_string()])?;
    shim.stop()?;
    Ok(())
}
