//! The keithley-2450 and keysight-b2900 models in the combined rig shim, driven by independent
//! clients (pyvisa-py for the SMU, pymodbus for the frame): one reading per frame sample after
//! the frame's reset, REAL,64 blocks parsed by pyvisa, and the LAN drop fault.

use anyhow::Context;
use nanoecr_hil_tests::{hil_toml, python_check, require_python_modules, Shim};

const SHIM: &str = env!("CARGO_BIN_EXE_rig-shim");

fn run_script(args: &[String]) -> anyhow::Result<()> {
    require_python_modules(&["pyvisa", "pyvisa_py", "pymodbus"])?;
    python_check("smu_rig.py", args).with_context(|| format!("smu_rig.py {}", args[0]))
}

fn endpoints(shim: &Shim) -> anyhow::Result<Vec<String>> {
    let frame = shim.tcp.context("MODBUS_TCP endpoint")?;
    let smu = shim.scpi_tcp.context("SCPI_TCP endpoint")?;
    Ok(vec![frame.ip().to_string(), frame.port().to_string(), smu.ip().to_string(), smu.port().to_string()])
}

fn align(model: &str, mode: &str) -> anyhow::Result<()> {
    let shim =
        Shim::spawn(SHIM, &hil_toml(), &["--tcp", "127.0.0.1:0", "--smu-model", model, "--smu-listen", "127.0.0.1:0"])?;
    let rate_hz = nanoecr_core::config::load(&hil_toml())?.rate_hz();
    let mut args = vec![mode.to_string()];
    args.extend(endpoints(&shim)?);
    args.push(rate_hz.to_string());
    run_script(&args)?;
    shim.stop()?;
    Ok(())
}

#[test]
fn b2900_takes_one_reading_per_frame_sample_after_the_reset() -> anyhow::Result<()> {
    align("keysight-b2900", "align-b2900")
}

#[test]
fn k2450_takes_one_reading_per_frame_sample_after_the_reset() -> anyhow::Result<()> {
    align("keithley-2450", "align-2450")
}

#[test]
fn smu_drop_after_s_closes_the_scpi_connection_mid_run() -> anyhow::Result<()> {
    let shim = Shim::spawn(
        SHIM,
        &hil_toml(),
        &[
            "--tcp",
            "127.0.0.1:0",
            "--smu-model",
            "keysight-b2900",
            "--smu-listen",
            "127.0.0.1:0",
            "--smu-drop-after-s",
            "0.5",
        ],
    )?;
    let mut args = vec!["drop".to_string()];
    args.extend(endpoints(&shim)?);
    args.push("0.5".into());
    run_script(&args)?;
    shim.stop()?;
    Ok(())
}
