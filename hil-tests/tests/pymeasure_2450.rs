//! An independent client — PyMeasure's `Keithley2450` over pyvisa-py's `TCPIP::…::SOCKET`
//! resource — drives the keithley-2450 shim and reads the simulated pillar's current.

use std::process::Command;

use anyhow::Context;
use nanoecr_hil_tests::{hil_toml, workspace_root, Shim};

const SMU: &str = env!("CARGO_BIN_EXE_hil-smu-shim");

#[test]
fn pymeasure_keithley2450_reads_v_over_r_and_gets_113_for_2400_buffer_commands() -> anyhow::Result<()> {
    let probe =
        Command::new("python3").args(["-c", "import pymeasure, pyvisa, pyvisa_py"]).status().context("python3")?;
    anyhow::ensure!(
        probe.success(),
        "pymeasure / pyvisa-py are missing: `pip install pymeasure pyvisa pyvisa-py` (scripts/setup.sh installs them)"
    );
    let shim = Shim::spawn(SMU, &hil_toml(), &["--model", "keithley-2450", "--listen", "127.0.0.1:0"])?;
    let addr = shim.scpi_tcp.context("SCPI_TCP endpoint")?;
    // The same config the shim simulates: I = V / R for a pillar in Ohmic contact.
    let cfg = nanoecr_core::config::load(&hil_toml())?;
    let r_ohm = cfg.raw.simulation.circuit_resistance_ohm;
    let script = workspace_root().join("hil-tests/python/pymeasure_2450.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(r_ohm.to_string())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stdout.contains("ALL OK"), "PyMeasure check failed");
    shim.stop()?;
    Ok(())
}
