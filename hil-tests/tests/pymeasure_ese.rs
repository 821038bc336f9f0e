//! An independent client — PyMeasure over pyvisa-py's `TCPIP::…::SOCKET` resource — sets and
//! reads the IEEE 488.2 standard event status enable register (`*ESE`, `*ESE?`) of each SMU shim
//! model, with the values nanoecr's resynchronisation writes (crates/nanoecr-hw/src/scpi.rs),
//! and checks the reply's bytes. The sources of each byte string are cited in
//! python/pymeasure_ese.py.

use anyhow::Context;
use nanoecr_hil_tests::{hil_toml, python_check, require_python_modules, Shim};

const SMU: &str = env!("CARGO_BIN_EXE_hil-smu-shim");

fn check_model(model: &str) -> anyhow::Result<()> {
    require_python_modules(&["pymeasure", "pyvisa", "pyvisa_py"])?;
    let shim = Shim::spawn(SMU, &hil_toml(), &["--model", model, "--listen", "127.0.0.1:0"])?;
    let addr = shim.scpi_tcp.context("SCPI_TCP endpoint")?;
    python_check("pymeasure_ese.py", &[model.to_string(), addr.ip().to_string(), addr.port().to_string()])
        .with_context(|| format!("{model}: PyMeasure *ESE check"))?;
    shim.stop()?;
    Ok(())
}

#[test]
fn pymeasure_sets_and_reads_ese_of_the_keithley_2450_shim() -> anyhow::Result<()> {
    check_model("keithley-2450")
}

#[test]
fn pymeasure_sets_and_reads_ese_of_the_keysight_b2900_shim() -> anyhow::Result<()> {
    check_model("keysight-b2900")
}

/// Before the shim took IEEE 488.2's decimal numeric program data, `*ESE 2.6` was -222 here.
#[test]
fn pymeasure_sets_and_reads_ese_of_the_in_house_shim() -> anyhow::Result<()> {
    check_model("nanoecr-scpi")
}
