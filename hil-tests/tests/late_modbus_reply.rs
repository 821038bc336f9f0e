//! A Modbus reply that leaves the load frame after the host's timeout (`--delay-reply FC@N:MS`:
//! the request takes effect at once, its reply waits) must never be taken for the reply to a
//! later request. Modbus RTU frames carry no transaction id (Modbus over Serial Line V1.02
//! §2.5.1: address, function code, data, CRC), and tokio-modbus matches an RTU reply to its
//! request by unit id and function code only, so a late echo of one write is a valid-looking
//! echo of the next write of the same function. Over TCP the retry goes over a fresh connection
//! and the MBAP header's transaction id (Modbus Messaging on TCP/IP V1.0b §3.1.3) is checked
//! too: the same tests pass there with or without the fix, and show it.

use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use nanoecr_core::config::hardware::Transport;
use nanoecr_core::RunStatus;
use nanoecr_daemon::run::{start_run, RunOptions};
use nanoecr_hil_tests::{
    covers_the_program, data_only, hil_config, hil_config_from, hil_toml, python_check, require_python_modules,
    start_rig_shim, temp_path, Shim,
};
use nanoecr_hw::modbus::{LinkStats, ModbusLoadFrame};
use nanoecr_hw::{FrameLimits, HwError, LoadFrame};

const SHIM: &str = env!("CARGO_BIN_EXE_rig-shim");
/// The frame's reply timeout in these tests, ms.
const TIMEOUT_MS: u64 = 1000;
/// How late the one delayed reply leaves, ms: past the timeout, and (on an idle host) well before
/// the retry's own timeout, so that without a resynchronisation it is read as the retry's reply.
const DELAY_MS: u64 = 1200;

/// The ground truth's list of delayed requests (one expected).
fn delayed_replies(gt_path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let gt: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(gt_path)?)?;
    let list = gt["delayed_replies"].as_array().context("ground truth lists delayed replies")?;
    Ok(list.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
}

fn transport_name(transport: Transport) -> &'static str {
    match transport {
        Transport::Tcp => "tcp",
        Transport::Rtu => "rtu",
    }
}

/// `prepare` writes mode 0 (request 1, function 06), the sample rate (request 2, function 16 at
/// 9) and the limits (request 3, function 16 at 5). The rate's echo leaves [`DELAY_MS`] late; the
/// limits are ones the controller refuses (max load must be > 0: exception 03, illegal data
/// value; docs/register-map.md). Before the fix, over RTU, the retried rate write read the late
/// echo as its own, the limits write read the retry's echo `01 10 00 09 00 02 <crc>` (Modbus
/// Application Protocol V1.1b3 §6.12: function 16's reply echoes the starting address and the
/// quantity) as its own, and `prepare` returned Ok: the controller's refusal of the limits — a
/// safety limit the host then believed set — was lost.
fn a_refusal_after_a_late_echo_is_reported(transport: Transport) -> anyhow::Result<()> {
    let label = transport_name(transport);
    let (dir, gt_path) = temp_path("gt.json")?;
    let gt_arg = gt_path.to_str().context("utf-8 path")?.to_string();
    let delay = format!("16@1:{DELAY_MS}");
    // Every reply 20 ms after its request, as a controller that takes time to answer (at 9600
    // baud an 8-byte frame alone takes 8 ms on the wire): without it the shim sends the late echo
    // and the retry's echo in one burst, the host reads both at once, and tokio-modbus drops the
    // second with its read buffer before the next request, by luck of timing.
    let shim = start_rig_shim(SHIM, &["--latency-ms", "20", "--delay-reply", &delay, "--ground-truth", &gt_arg])?;
    let cfg = hil_config(&shim, transport, |c| {
        c.raw.hardware.loadframe.timeout_ms = TIMEOUT_MS;
        c.raw.hardware.loadframe.retries = 2;
    })?;
    let mut frame = ModbusLoadFrame::connect("LOADFRAME0", &cfg.raw.hardware.loadframe, 1000.0)?;
    let refused = FrameLimits { max_load_un: -1.0, max_displacement_nm: 600.0 };
    let started = Instant::now();
    let e = frame.prepare(&refused).expect_err("the controller refuses a max load of -1 µN");
    let took = started.elapsed();
    let text = e.to_string();
    assert!(matches!(e, HwError::Device { code: 3, .. }), "{label}: {text}");
    assert!(text.contains("limits") && text.contains("LOADFRAME0"), "{label}: {text}");
    // The link is in step afterwards: each request reads its own reply (an identify read answered
    // by a write echo would be a function-code mismatch), and accepted limits are confirmed.
    let ok = FrameLimits { max_load_un: 3000.0, max_displacement_nm: 600.0 };
    frame.prepare(&ok).with_context(|| format!("{label}: prepare after the refusal"))?;
    let id = frame.identify().with_context(|| format!("{label}: identify after the refusal"))?;
    assert_eq!(id.model, "LF-SHIM-1", "{label}");
    let stats = frame.stats();
    assert!(stats.retries >= 1, "{label}: the late echo was a timeout and a retry: {stats:?}");
    assert_late_echo_discarded(transport, &stats);
    eprintln!("{label}: {text} after {took:?}; {stats:?}");
    drop(frame);
    shim.stop()?;
    let delayed = delayed_replies(&gt_path)?;
    assert_eq!(delayed.len(), 1, "{label}: {delayed:?}");
    let expected = format!("{label} request 2: WriteMultipleRegisters(9, ");
    assert!(delayed[0].starts_with(&expected), "{label}: the delayed request is {:?}", delayed[0]);
    drop(dir);
    Ok(())
}

/// Over RTU, the wait for a silent line after the timeout discarded the late echo of the rate
/// write, `01 10 00 09 00 02 91 ca` (function 16's reply: Modbus Application Protocol V1.1b3 §6.12;
/// the CRC as hil-tests/python/late_reply.py builds it from the serial line spec, §6.2.2): those
/// 8 bytes and nothing else, in the one wait before the one retry — and the wait ended on that
/// frame (the reply the device owed), not a whole timeout of silence later. That the retry then
/// read its own echo is what the caller's assertions show. Over TCP nothing is waited for.
fn assert_late_echo_discarded(transport: Transport, stats: &LinkStats) {
    let waited = (stats.resyncs, stats.waits_ended_by_frame, stats.discarded_bytes);
    match transport {
        Transport::Rtu => assert_eq!(waited, (1, 1, 8), "rtu: {stats:?}"),
        Transport::Tcp => assert_eq!(waited, (0, 0, 0), "tcp: {stats:?}"),
    }
}

#[test]
fn a_write_echo_late_past_the_timeout_never_answers_the_next_write_over_rtu() -> anyhow::Result<()> {
    a_refusal_after_a_late_echo_is_reported(Transport::Rtu)
}

#[test]
fn a_write_echo_late_past_the_timeout_never_answers_the_next_write_over_tcp() -> anyhow::Result<()> {
    a_refusal_after_a_late_echo_is_reported(Transport::Tcp)
}

/// As above with no retries, so the late echo is left on the line when `prepare` gives up:
/// `prepare` → rate write (request 2) times out → [`HwError::Timeout`]; then `make_safe`, whose
/// first request is function 06 (mode ← 3) and expects the echo `01 06 00 00 00 03 <crc>`
/// (Modbus Application Protocol V1.1b3 §6.6; RTU framing: Modbus over Serial Line V1.02 §2.5.1).
/// Before the fix, over RTU, it read the late `01 10 00 09 00 02 <crc>` instead (a function-code
/// mismatch: a protocol error, not retried), and so did every request after it: the frame could
/// not be made safe. The late echo leaves 100 ms after the 2 s timeout: the wait for a silent
/// line (one timeout) has 1.9 s of margin for a descheduled shim.
fn make_safe_after_a_late_echo_gets_its_own_replies(transport: Transport) -> anyhow::Result<()> {
    let label = transport_name(transport);
    let shim = start_rig_shim(SHIM, &["--latency-ms", "20", "--delay-reply", "16@1:2100"])?;
    let cfg = hil_config(&shim, transport, |c| {
        c.raw.hardware.loadframe.timeout_ms = 2000;
        c.raw.hardware.loadframe.retries = 0;
    })?;
    let mut frame = ModbusLoadFrame::connect("LOADFRAME0", &cfg.raw.hardware.loadframe, 1000.0)?;
    let limits = FrameLimits { max_load_un: 3000.0, max_displacement_nm: 600.0 };
    let e = frame.prepare(&limits).expect_err("the rate write's echo is late past the timeout, no retries");
    assert!(matches!(e, HwError::Timeout { .. }), "{label}: {e}");
    let started = Instant::now();
    frame.make_safe().with_context(|| format!("{label}: make_safe after a late echo"))?;
    let took = started.elapsed();
    let id = frame.identify().with_context(|| format!("{label}: identify after make_safe"))?;
    assert_eq!(id.vendor, "NANOECR", "{label}");
    assert_eq!(frame.stats().retries, 0, "{label}");
    assert_late_echo_discarded(transport, &frame.stats());
    eprintln!("{label}: make_safe took {took:?} after the timeout; {:?}", frame.stats());
    drop(frame);
    shim.stop()?;
    Ok(())
}

#[test]
fn make_safe_after_a_late_echo_and_no_retries_reads_its_own_replies_over_rtu() -> anyhow::Result<()> {
    make_safe_after_a_late_echo_gets_its_own_replies(Transport::Rtu)
}

#[test]
fn make_safe_after_a_late_echo_and_no_retries_reads_its_own_replies_over_tcp() -> anyhow::Result<()> {
    make_safe_after_a_late_echo_gets_its_own_replies(Transport::Tcp)
}

/// A whole run through the daemon (control loop → ring → HDF5) with one frame reply late past the
/// timeout mid-run (`spec`, e.g. `23@100:1200`: the first FIFO read from request 100 on, ≈ 50 ms
/// into the program on an idle host, two requests a tick after ≈ 10 of set-up). The retry must
/// neither lose nor repeat a sample: h5py, an independent reader, finds every sequence number
/// once, in order. Timing interlocks and the integral term are off ([`data_only`]): the ≈ 2 s the
/// loop waits for the late reply is not what is judged. The program is config/hil.toml's with a
/// 2.5 s hold (5 s in all), and the request is an early one, so that the wait ends well before the
/// program does on a loaded host too (the loop skips late ticks, so it then reaches request 600
/// only in the hold, and a wait over the program's end adds its backlog to the file: seen at
/// load 7 with request 600, 5170 samples for 3000).
fn a_late_reply_mid_run_keeps_every_sample_once(
    transport: Transport,
    spec: &str,
    function: &str,
) -> anyhow::Result<()> {
    let label = format!("{} {spec}", transport_name(transport));
    let (dir, gt_path) = temp_path("gt.json")?;
    let gt_arg = gt_path.to_str().context("utf-8 path")?.to_string();
    let text = std::fs::read_to_string(hil_toml())?.replace("hold_s = 0.5", "hold_s = 2.5");
    anyhow::ensure!(text.contains("hold_s = 2.5"), "fixture edit did not apply");
    let cfg_path = dir.path().join("hil.toml");
    std::fs::write(&cfg_path, &text)?;
    let shim = Shim::spawn(
        SHIM,
        &cfg_path,
        &["--tcp", "127.0.0.1:0", "--rtu", "--smu", "--delay-reply", spec, "--ground-truth", &gt_arg],
    )?;
    let cfg = hil_config_from(&cfg_path, &shim, transport, |c| {
        data_only(c);
        c.raw.hardware.loadframe.timeout_ms = TIMEOUT_MS;
        c.raw.hardware.loadframe.retries = 2;
        // The meter is not the fault under test.
        c.raw.hardware.smu.timeout_ms = 2000;
    })?;
    let rig = nanoecr_hw::open_rig(&cfg)?;
    let file = dir.path().join("late.h5");
    let expected = cfg.expected_samples();
    let started = Instant::now();
    let handle = start_run(cfg, rig, RunOptions { file_path: Some(file.clone()), ..Default::default() })?;
    let summary = handle.join()?;
    let took = started.elapsed();
    shim.stop()?;
    assert_eq!(summary.status, RunStatus::Complete, "{label}: {}", summary.end_reason);
    assert_eq!(summary.dropped, 0, "{label}");
    let delayed = delayed_replies(&gt_path)?;
    assert_eq!(delayed.len(), 1, "{label}: {delayed:?}");
    assert!(delayed[0].contains(function), "{label}: the delayed request is {:?}", delayed[0]);

    let script = r#"
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    seq = f["entry/data/sequence"][()]
    load = f["entry/data/load"][()]
assert len(seq) == len(load) > 0, (len(seq), len(load))
d = np.diff(seq.astype(np.int64))
gaps, repeats = int(np.sum(d > 1)), int(np.sum(d < 1))
print(len(seq), int(seq[0]), int(seq[-1]), gaps, repeats)
"#;
    let out = Command::new("python3").arg("-c").arg(script).arg(&file).output().context("python3")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{label}: h5py failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    let f: Vec<u64> = stdout.split_whitespace().map(str::parse).collect::<Result<_, _>>()?;
    let [n, first, last, gaps, repeats] = f[..] else { anyhow::bail!("{label}: h5py printed {stdout:?}") };
    assert_eq!((gaps, repeats), (0, 0), "{label}: sequence gaps / repeats in the file ({first}..={last})");
    assert_eq!(last - first + 1, n, "{label}: every sequence number once");
    assert!(covers_the_program(n, expected), "{label}: {n} samples for {expected} expected");
    assert_eq!(summary.samples, n, "{label}: every sample of the loop is in the file");
    eprintln!("{label}: {delayed:?}; {n} samples {first}..={last} in order; run took {took:?}");
    drop(dir);
    Ok(())
}

#[test]
fn a_fifo_read_late_past_the_timeout_loses_and_repeats_no_sample() -> anyhow::Result<()> {
    // Function 23 is the FIFO read (ack written, window read); the first one from request 100 on.
    a_late_reply_mid_run_keeps_every_sample_once(Transport::Rtu, "23@100:1200", "ReadWriteMultipleRegisters(200, ")?;
    a_late_reply_mid_run_keeps_every_sample_once(Transport::Tcp, "23@100:1200", "ReadWriteMultipleRegisters(200, ")
}

#[test]
fn a_command_echo_late_past_the_timeout_loses_and_repeats_no_sample() -> anyhow::Result<()> {
    // Function 16 at 2 is the per-tick command (load f32 + segment).
    a_late_reply_mid_run_keeps_every_sample_once(Transport::Rtu, "16@100:1200", "WriteMultipleRegisters(2, ")?;
    a_late_reply_mid_run_keeps_every_sample_once(Transport::Tcp, "16@100:1200", "WriteMultipleRegisters(2, ")
}

/// The device side of the fault, checked by an independent client written from the specifications
/// (hil-tests/python/late_reply.py: pyserial with pymodbus's CRC over RTU, a hand-built MBAP
/// header and pymodbus over TCP): over RTU the late echo leaves no earlier than the delay, is a
/// well-formed echo, and is followed by the echo of the request sent meanwhile, byte for byte the
/// same (what the host cannot tell apart); over TCP the held write has taken effect at once, a
/// second connection is served meanwhile, and the late reply returns on its own connection with
/// its own transaction id.
#[test]
fn an_independent_client_sees_the_late_reply_as_the_specifications_frame_it() -> anyhow::Result<()> {
    require_python_modules(&["pymodbus", "serial"])?;
    let delay = format!("16@1:{DELAY_MS}");
    let shim = Shim::spawn(SHIM, &hil_toml(), &["--rtu", "--tcp", "127.0.0.1:0", "--delay-reply", &delay])?;
    let rtu = shim.rtu.clone().context("rtu endpoint")?;
    let tcp = shim.tcp.context("tcp endpoint")?;
    python_check("late_reply.py", &[rtu, tcp.ip().to_string(), tcp.port().to_string(), DELAY_MS.to_string()])?;
    shim.stop()?;
    Ok(())
}
