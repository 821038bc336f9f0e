//! A serial line can hold bytes when the host opens it: a controller's power-up chatter, a reply
//! to a request of a session that died before reading it, a USB-serial adapter's buffer. Linux
//! keeps a tty's pending input across opens, and a Modbus RTU frame carries no transaction id
//! (Modbus over Serial Line V1.02 §2.5.1), so before the fix the host's first read was answered
//! by whatever well-formed frame of its function code came first — tokio-modbus skips the
//! garbage before it. The other end here is independent of the host and of the shim:
//! hil-tests/python/stale_line.py, a controller written from the specifications on a real
//! pseudo-terminal, which writes the stale bytes before the host opens the line.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use anyhow::Context;
use nanoecr_core::config::hardware::{LoadFrameConfig, Transport};
use nanoecr_hil_tests::workspace_root;
use nanoecr_hw::modbus::ModbusLoadFrame;
use nanoecr_hw::LoadFrame;

/// The device holds chatter and a stale identification reply (serial `PY-STALE`) on the line
/// before the host opens it, then answers each identification read (function 04, input 0–35:
/// `01 04 00 00 00 24 f0 11`, Modbus Application Protocol V1.1b3 §6.4, CRC §6.2.2 of the serial
/// line spec) with serial `PY-FRESH`. The host's first read must return `PY-FRESH`, the second
/// too (no reply left over), with no retry: the stale bytes were discarded on opening the line,
/// every one of them and nothing else (the count the device reports = the count the host
/// discarded). Before the fix the first read returned `PY-STALE`.
#[test]
fn the_first_read_after_opening_a_line_with_stale_bytes_gets_its_own_reply() -> anyhow::Result<()> {
    let probe = Command::new("python3").args(["-c", "import pymodbus"]).status().context("python3")?;
    anyhow::ensure!(probe.success(), "pymodbus is missing (scripts/setup.sh installs it)");
    let script = workspace_root().join("hil-tests/python/stale_line.py");
    let mut device = Command::new("python3")
        .arg(&script)
        .arg("2")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting stale_line.py")?;
    let mut lines = BufReader::new(device.stdout.take().context("device stdout")?).lines();
    let first = lines.next().context("stale_line.py printed nothing")??;
    let fields: Vec<&str> = first.split_whitespace().collect();
    let ["PTY", path, "STALE", stale] = fields[..] else { anyhow::bail!("stale_line.py printed {first:?}") };
    let stale_bytes: u64 = stale.parse()?;

    let cfg = LoadFrameConfig {
        transport: Transport::Rtu,
        serial_path: Some(path.to_string()),
        baud: 921_600,
        unit_id: 1,
        // Generous, so that no host stall makes the device's answer late and forces a retry
        // (the test asserts none): the price is one timeout of silence waited on opening.
        timeout_ms: 5_000,
        retries: 2,
        ..LoadFrameConfig::default()
    };
    let mut frame = ModbusLoadFrame::connect("LOADFRAME0", &cfg, 1000.0)?;
    let id = frame.identify().context("first identify")?;
    assert_eq!(id.serial, "PY-FRESH", "the first read took the stale reply on the line for its own");
    assert_eq!((id.vendor.as_str(), id.model.as_str()), ("NANOECR", "LF-PY-1"));
    let again = frame.identify().context("second identify")?;
    assert_eq!(again.serial, "PY-FRESH", "the second read got a reply left over from the first");
    let stats = frame.stats();
    eprintln!("{stats:?}");
    assert_eq!(stats.discarded_bytes, stale_bytes, "every stale byte, and only those, discarded: {stats:?}");
    assert_eq!((stats.requests, stats.retries, stats.connects, stats.resyncs), (2, 0, 1, 0), "{stats:?}");
    drop(frame);

    // Closing stdin tells the device the host is done; it then checks no further request came.
    let mut stdin = device.stdin.take().context("device stdin")?;
    stdin.flush()?;
    drop(stdin);
    let rest: Vec<String> = lines.collect::<Result<_, _>>()?;
    let status = device.wait()?;
    eprintln!("{first}\n{}", rest.join("\n"));
    assert!(status.success() && rest.iter().any(|l| l == "ALL OK"), "stale_line.py: {rest:?}");
    Ok(())
}
