//! nanoecr's resynchronisation leaves no error of its own making in the meter's error queue, seen
//! from an independent client.
//!
//! Over USB-TMC or GPIB a meter follows IEEE 488.2's message exchange protocol: a reply waits
//! until the controller reads it, and a message that arrives while it is unread discards it and
//! queues −410 "Query INTERRUPTED" (IEEE 488.2-1992 §6.3.2.3). When a reply is late past the
//! host's timeout, the resynchronisation's first `*ESE` marker is that message: the −410 is
//! nanoecr's doing. Each shim model here runs in process behind `smu_shim::MessageExchange` (that
//! protocol; no USB-TMC device exists on a test machine) as nanoecr's link, with the reply to its
//! second query late, and is served on 127.0.0.1 TCP at the same time; after nanoecr's
//! resynchronised query, PyMeasure over pyvisa-py reads the queue there
//! (hil-tests/python/error_queue.py, which cites the byte strings) and must find it empty. The
//! control: one more query interrupted by hand, and PyMeasure must read that −410.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nanoecr_hil_tests::workspace_root;
use nanoecr_hw::scpi::ScpiClient;
use nanoecr_hw::transport::ByteLink;
use smu_shim::{serve_tcp, MessageExchange, Meter, MeterConfig, Model};

/// nanoecr's link to the in-process exchange.
struct ExchangeLink(MessageExchange);

impl ByteLink for ExchangeLink {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        // nanoecr writes one program message per call, as one USB-TMC transfer.
        self.0.write(&String::from_utf8_lossy(bytes));
        Ok(())
    }

    fn read_some(&mut self, buf: &mut [u8], _timeout: Duration) -> std::io::Result<usize> {
        // An empty output queue: nothing to read (the client's deadline ends the wait).
        Ok(self.0.read(buf))
    }

    fn restart(&mut self) -> std::io::Result<()> {
        // Reopening /dev/usbtmcN leaves the instrument's output queue as it is.
        Ok(())
    }

    fn describe(&self) -> &str {
        "usbtmc (in-process smu-shim message exchange)"
    }
}

/// PyMeasure's reading of the error queue at `addr`: the entries' codes.
fn pymeasure_errors(model: &str, addr: SocketAddr) -> anyhow::Result<Vec<i32>> {
    let script = workspace_root().join("hil-tests/python/error_queue.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([model, &addr.ip().to_string(), &addr.port().to_string()])
        .output()
        .context("python3")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{model}: PyMeasure read\n{stdout}{}", String::from_utf8_lossy(&out.stderr));
    anyhow::ensure!(out.status.success() && stdout.contains("EMPTY"), "{model}: PyMeasure's error-queue read failed");
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("ENTRY "))
        .map(|l| l.split_whitespace().next().unwrap_or("").parse::<i32>().context("entry code"))
        .collect()
}

fn check_model(model: Model, name: &str) -> anyhow::Result<()> {
    let probe =
        Command::new("python3").args(["-c", "import pymeasure, pyvisa, pyvisa_py"]).status().context("python3")?;
    anyhow::ensure!(
        probe.success(),
        "pymeasure / pyvisa-py are missing: `pip install pymeasure pyvisa pyvisa-py` (scripts/setup.sh installs them)"
    );
    let meter = Arc::new(Meter::new(MeterConfig { model, gate_on_frame_reset: false, ..MeterConfig::default() }));
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve_tcp(meter.clone(), "127.0.0.1:0".parse()?, stop.clone())?;
    assert_eq!(pymeasure_errors(name, server.addr)?, Vec::<i32>::new(), "{name}: errors before the test");

    // Query 1 `*IDN?` on time, query 2 `:OUTP?` late: its first attempt times out (the reply
    // never comes while the host waits, whatever the host's speed), and the retry resynchronises.
    let link = Box::new(ExchangeLink(MessageExchange::new(meter.clone(), Some(2))));
    let mut scpi = ScpiClient::new(format!("SMU0 ({name} usbtmc)"), link, "\n", Duration::from_millis(50), 1);
    scpi.identify().context("identify")?;
    let state = scpi.query("reading the output state", ":OUTP?").context("resynchronised query")?.trim().to_string();
    assert_eq!(state.trim_start_matches('+'), "0", "{name}: the output after *RST");
    // Read from the independent side first: nanoecr's own error check below would empty the queue.
    assert_eq!(pymeasure_errors(name, server.addr)?, Vec::<i32>::new(), "{name}: the resync left errors behind");
    let stats = scpi.stats();
    assert_eq!(stats.retries, 1, "{name}: {stats:?}");
    // The late reply was interrupted by the first marker and by nothing else: one −410, drained.
    assert_eq!(stats.resync_query_errors, 1, "{name}: {stats:?}");
    scpi.drain_errors("checking errors").with_context(|| format!("{name}: an error left for the next check"))?;

    // Control: the independent side does see a −410 when one is there.
    let mut by_hand = MessageExchange::new(meter.clone(), None);
    by_hand.write("*IDN?");
    by_hand.write("*ESE?");
    assert_eq!(pymeasure_errors(name, server.addr)?, vec![-410], "{name}: the −410 made by hand");

    stop.store(true, Ordering::Relaxed);
    server.thread.join().map_err(|_| anyhow::anyhow!("server thread panicked"))?;
    Ok(())
}

#[test]
fn after_a_resync_pymeasure_finds_the_keithley_2450_shims_error_queue_empty() -> anyhow::Result<()> {
    check_model(Model::Keithley2450, "keithley-2450")
}

#[test]
fn after_a_resync_pymeasure_finds_the_keysight_b2900_shims_error_queue_empty() -> anyhow::Result<()> {
    check_model(Model::KeysightB2900, "keysight-b2900")
}

#[test]
fn after_a_resync_pymeasure_finds_the_in_house_shims_error_queue_empty() -> anyhow::Result<()> {
    check_model(Model::NanoecrScpi, "nanoecr-scpi")
}
