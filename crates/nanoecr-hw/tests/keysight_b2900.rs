//! The Keysight B2900 driver and the SCPI client's block parsing against a scripted responder
//! over a real loopback TCP socket and real pseudo-terminals (also standing in for a USB-TMC
//! character device). Replies follow the B2900 SCPI Command Reference (Agilent edition 2 /
//! Keysight editions), cited next to each; no independent client reads B2900 binary blocks, so
//! the block bytes are built from the reference's format description.

mod common;

use std::collections::VecDeque;
use std::time::Duration;

use common::{line, path_config, serve_pty, serve_tcp, tcp_config, until, Answer, Script};
use nanoecr_core::config::hardware::{SmuModel, SmuTransport, SmuTrigger};
use nanoecr_hw::keysight::{decode_real64, KeysightB2900};
use nanoecr_hw::scpi::{RunPlan, ScpiClient};
use nanoecr_hw::transport::{ByteLink, TcpLink, UsbtmcLink};
use nanoecr_hw::{HwError, SmuPacing, SmuReading, SourceMeter};

/// *IDN? — B2900 SCPI Command Reference, chapter 3, "*IDN?": `Keysight Technologies,<model>,<serial>,
/// <firmware>` (page and exact text unverified).
const IDN: &str = "Keysight Technologies,B2901A,MY12345678,3.4.2011.5100";
/// Empty queue — reference, chapter 5 "Error Messages" (p. 5-2, edition 2): `+0,"No error"`.
const NO_ERROR: &str = "+0,\"No error\"";
const PLAN: RunPlan = RunPlan { rate_hz: 1000.0, readings: 4000 };

/// An IEEE 488.2 definite-length block of float64 values in `:FORM:BORD NORM` order — reference,
/// chapter 1 "Data Output Format" (p. 1-12, edition 2): `#<number of digits for byte length><byte length><byte>…
/// <byte><terminator>`, 8 bytes per element, "byte 1 to 8" (most significant first).
fn real64_block(values: &[f64]) -> Vec<u8> {
    let len = values.len() * 8;
    let digits = len.to_string();
    let mut b = format!("#{}{}", digits.len(), digits).into_bytes();
    for v in values {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.push(b'\n');
    b
}

/// A B2900 answering `*IDN?` with `idn`, the error queue from `errors`, `:TRAC:POIN:ACT?` from
/// `counts` (repeating the last) and `:TRAC:DATA?` with the raw `data` replies in turn.
fn b2900(idn: &'static str, errors: &[&'static str], counts: &[u64], data: Vec<Vec<u8>>) -> Script {
    let mut errors: VecDeque<&str> = errors.iter().copied().collect();
    let mut counts: VecDeque<u64> = counts.iter().copied().collect();
    let mut data: VecDeque<Vec<u8>> = data.into();
    common::with_ese(common::with_output(Box::new(move |m: &str| match m {
        "*IDN?" => line(idn),
        // `:SYSTem:ERRor[:NEXT]?` in either spelling: the resync drains with the short one.
        ":SYST:ERR:NEXT?" | ":SYST:ERR?" => line(errors.pop_front().unwrap_or(NO_ERROR)),
        // :TRACe:POINts:ACTual? — reference: number of data in the trace buffer (NR1).
        ":TRAC:POIN:ACT?" => {
            let c = if counts.len() > 1 { counts.pop_front() } else { counts.front().copied() };
            line(&format!("+{}", c.unwrap_or(0)))
        }
        m if m.starts_with(":TRAC:DATA?") => match data.pop_front() {
            Some(d) => Answer::Bytes(d),
            None => Answer::Silent,
        },
        _ => Answer::Silent,
    })))
}

/// [`common::REPLY_TIMEOUT_MS`]: every reply these tests wait for does come.
fn reply_timeout() -> Duration {
    Duration::from_millis(common::REPLY_TIMEOUT_MS)
}

fn open(
    script: Script,
    edit: impl FnOnce(&mut nanoecr_core::config::hardware::SmuConfig),
) -> (Result<KeysightB2900, HwError>, common::Log) {
    let (addr, log) = serve_tcp(script);
    let mut cfg = tcp_config(SmuModel::KeysightB2900, addr);
    edit(&mut cfg);
    (KeysightB2900::open("SMU0", &cfg, PLAN), log)
}

fn acquire_some(k: &mut KeysightB2900) -> Result<Vec<SmuReading>, HwError> {
    let mut out = [SmuReading::default(); 16];
    until(|| match k.acquire(&mut out) {
        Ok(0) => None,
        Ok(n) => Some(Ok(out[..n].to_vec())),
        Err(e) => Some(Err(e)),
    })
}

#[test]
fn the_guides_two_element_block_parses_exactly() {
    // Two float64 elements: header "#216" (one length digit, 16 bytes), 16 data bytes, "\n" — the
    // reference's REAL,64 description ("one data element … header (3 bytes, #18), one 8-byte
    // data, and a terminator"), with two elements. Bytes written out by hand, most significant
    // first: 1.0E-6 = 0x3EB0C6F7A0B5ED8D; 9.9E37 = 0x47D29EAD3677AF6F (IEEE 754 binary64).
    let mut reply: Vec<u8> = b"#216".to_vec();
    reply.extend_from_slice(&[0x3E, 0xB0, 0xC6, 0xF7, 0xA0, 0xB5, 0xED, 0x8D]);
    reply.extend_from_slice(&[0x47, 0xD2, 0x9E, 0xAD, 0x36, 0x77, 0xAF, 0x6F]);
    reply.push(b'\n');
    // The hand-written bytes are the binary64 encodings (checked against Rust's own).
    assert_eq!(&reply[4..12], &1.0e-6f64.to_be_bytes());
    assert_eq!(&reply[12..20], &9.9e37f64.to_be_bytes());
    let sent = reply.clone();
    let (addr, _) =
        serve_tcp(Box::new(
            move |m: &str| if m == ":TRAC:DATA? 0,1" { Answer::Bytes(sent.clone()) } else { Answer::Silent },
        ));
    let link = TcpLink::connect("127.0.0.1", addr.port(), Duration::from_secs(1)).expect("connect");
    let mut c = ScpiClient::new("SMU0 (test)".into(), Box::new(link), "\n", reply_timeout(), 0);
    let block = c.query_block("read", ":TRAC:DATA? 0,1").expect("block");
    assert_eq!(block.len(), 16);
    let v: Vec<f64> = decode_real64(block).collect();
    assert_eq!(v, [1.0e-6, 9.9e37]);
}

#[test]
fn indefinite_and_mislengthed_blocks_are_protocol_errors() {
    let replies: VecDeque<Vec<u8>> = VecDeque::from([
        b"#0\x01\x02\n".to_vec(),
        // Announces 8 bytes, sends 9 before the terminator.
        b"#18123456789\n".to_vec(),
        b"+1.0E-6\n".to_vec(),
    ]);
    let mut replies = replies;
    let (addr, _) = serve_tcp(common::with_ese(Box::new(move |m: &str| {
        if m == ":TRAC:DATA? 0,1" {
            replies.pop_front().map_or(Answer::Silent, Answer::Bytes)
        } else if m == ":SYST:ERR?" {
            // The resync's drain; an empty queue (B2900 SCPI Command Reference, chapter 5
            // "Error Messages", p. 5-2: `+0,"No error"`).
            line("+0,\"No error\"")
        } else {
            Answer::Silent
        }
    })));
    let link = TcpLink::connect("127.0.0.1", addr.port(), Duration::from_secs(1)).expect("connect");
    let mut c = ScpiClient::new("SMU0 (keysight-b2900 test)".into(), Box::new(link), "\n", reply_timeout(), 0);
    for expect in ["indefinite-length block (#0)", "not followed by the terminator", "expected a #-block"] {
        match c.query_block("read", ":TRAC:DATA? 0,1") {
            Err(e @ HwError::Protocol { .. }) => {
                let t = e.to_string();
                assert!(t.contains(expect) && t.contains("SMU0"), "{t}");
            }
            other => panic!("expected a protocol error ({expect}), got {other:?}"),
        }
        // A garbled reply leaves the conversation out of step: the next query resynchronises.
        assert!(!c.in_step());
    }
}

#[test]
fn set_up_binary_readings_and_shut_down_over_tcp() {
    // Two readings, three elements each (CURR, TIME, STAT — :FORM:ELEM:SENS). Status bits —
    // reference, Table 1-2 "Bit Definitions of Status Data" (p. 1-14): bits 1–2 compliance (2, 4 or 6),
    // bit 13 (8192) measurement range overflow.
    let first = real64_block(&[2.5e-6, 0.0, 0.0, 1.0e-4, 1.0e-3, 4.0]);
    let second = real64_block(&[9.9e37, 2.0e-3, 8192.0]);
    let (k, log) = open(b2900(IDN, &[], &[0, 2, 3], vec![first, second]), |_| {});
    let mut k = k.expect("open");
    assert_eq!(k.identify().expect("identify").model, "B2901A");
    assert_eq!(k.pacing(), SmuPacing::ExternalTrigger);
    k.bias_on(5.0, 1e-4).expect("bias on");
    let r = acquire_some(&mut k).expect("readings");
    assert_eq!(r.len(), 2);
    assert_eq!((r[0].seq, r[0].current_a, r[0].time_s, r[0].compliance), (0, 2.5e-6, 0.0, false));
    assert_eq!((r[1].seq, r[1].current_a, r[1].time_s, r[1].compliance), (1, 1e-4, 1e-3, true));
    let r = acquire_some(&mut k).expect("third");
    assert_eq!(r[0].seq, 2);
    assert!(r[0].current_a.is_nan(), "9.9E37 / range overflow is an invalid sample");
    k.bias_off().expect("bias off");

    let sent = log.lines();
    let pos = |m: &str| sent.iter().position(|s| s == m).unwrap_or_else(|| panic!("{m:?} not sent: {sent:#?}"));
    let setup = [
        "*RST",
        "*CLS",
        ":SOUR:FUNC:MODE VOLT",
        ":SOUR:VOLT 5E0",
        ":SENS:FUNC \"CURR\"",
        ":SENS:CURR:PROT 1E-4",
        ":SENS:CURR:RANG:AUTO OFF",
        ":SENS:CURR:RANG 1E-4",
        ":SENS:CURR:NPLC 0.01",
        ":TRIG:SOUR EXT1",
        ":TRIG:COUN 4000",
        ":ARM:COUN 1",
        ":TRAC:FEED SENS",
        ":TRAC:POIN 4000",
        ":TRAC:FEED:CONT NEXT",
        ":FORM:DATA REAL,64",
        ":FORM:BORD NORM",
        ":FORM:ELEM:SENS CURR,TIME,STAT",
        ":SYST:ERR:NEXT?",
        ":OUTP ON",
        ":INIT",
    ];
    let at: Vec<usize> = setup.iter().map(|m| pos(m)).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "set-up out of order: {sent:#?}");
    // :TRACe:DATA? <offset>,<size>: offset 0-based.
    assert!(sent.iter().any(|s| s == ":TRAC:DATA? 0,2") && sent.iter().any(|s| s == ":TRAC:DATA? 2,1"), "{sent:#?}");
    let (abort, off) = (sent.iter().rposition(|s| s == ":ABOR"), sent.iter().rposition(|s| s == ":OUTP OFF"));
    assert!(abort.is_some() && off.is_some() && abort < off, "{sent:#?}");
}

#[test]
fn ascii_fallback_and_timer_trigger() {
    // ASCII format — reference "Data Output Format" (p. 1-12): comma-separated, e.g.
    // "+1.000001E-06,+1.000002E-06,+9.999999E-07"; +9.900000E+37 is +infinity.
    let data = b"+1.000000E-06,+0.000000E+00,+0.000000E+00,+9.900000E+37,+1.000000E-03,+2.000000E+00\n".to_vec();
    let (k, log) = open(b2900(IDN, &[], &[2], vec![data]), |c| {
        c.binary = false;
        c.trigger = SmuTrigger::Timer;
    });
    let mut k = k.expect("open");
    assert_eq!(k.pacing(), SmuPacing::Timer);
    k.bias_on(1.0, 1e-3).expect("bias on");
    let r = acquire_some(&mut k).expect("readings");
    assert_eq!((r[0].current_a, r[0].compliance), (1e-6, false));
    assert!(r[1].current_a.is_nan() && r[1].compliance, "+9.9E37 invalid, status 2 compliance");
    let sent = log.lines();
    for m in [":FORM:DATA ASC", ":TRIG:SOUR TIM", ":TRIG:TIM 1E-3"] {
        assert!(sent.iter().any(|s| s == m), "{m:?} not sent: {sent:#?}");
    }
    assert!(!sent.iter().any(|s| s.starts_with(":FORM:DATA REAL")));
}

#[test]
fn any_b29xx_from_keysight_or_agilent_is_accepted_and_others_refused() {
    for idn in ["Agilent Technologies,B2902A,MY0000001,2.0.1225.1111", "Keysight Technologies,B2912B,MY1,1.0"] {
        let (k, _) = open(b2900(idn, &[], &[0], vec![]), |_| {});
        k.unwrap_or_else(|e| panic!("{idn}: {e}"));
    }
    let (k, _) = open(b2900("KEITHLEY INSTRUMENTS,MODEL 2450,04512345,1.7.12b", &[], &[0], vec![]), |_| {});
    let e = k.expect_err("a 2450 is not a B2900").to_string();
    assert!(e.contains("KEITHLEY INSTRUMENTS,MODEL 2450,04512345,1.7.12b") && e.contains("B29xx"), "{e}");
}

#[test]
fn set_up_errors_missing_readings_timeouts_and_garbage() {
    // -222 "Data out of range" — reference, chapter "Error Messages" (standard SCPI errors).
    let (k, _) = open(b2900(IDN, &["-222,\"Data out of range\""], &[0], vec![]), |_| {});
    match k.expect("open").bias_on(5.0, 2.0) {
        Err(HwError::Device { code: -222, message, device, .. }) => {
            assert!(message.contains("Data out of range") && device.contains("keysight-b2900"), "{device} {message}");
        }
        other => panic!("expected a device error, got {other:?}"),
    }

    // The fill says 2, the block holds one reading (24 bytes): a missing reading.
    let (k, _) = open(b2900(IDN, &[], &[2], vec![real64_block(&[1e-6, 0.0, 0.0])]), |_| {});
    let mut k = k.expect("open");
    k.bias_on(5.0, 1e-4).expect("bias on");
    match acquire_some(&mut k) {
        Err(HwError::Stream { device, message }) => {
            assert!(
                device.contains("SMU0") && message.contains("24-byte block") && message.contains("missing"),
                "{message}"
            );
        }
        other => panic!("expected a stream error, got {other:?}"),
    }

    // No answer to the fill query: a timeout naming SMU0 and the model.
    let silent: Script = {
        let mut s = b2900(IDN, &[], &[0], vec![]);
        Box::new(move |m: &str| if m == ":TRAC:POIN:ACT?" { Answer::Silent } else { s(m) })
    };
    let (k, _) = open(silent, |c| c.timeout_ms = common::SILENCE_TIMEOUT_MS);
    let mut k = k.expect("open");
    k.bias_on(5.0, 1e-4).expect("bias on");
    let mut out = [SmuReading::default(); 4];
    match k.acquire(&mut out) {
        Err(e @ HwError::Timeout { .. }) => {
            let t = e.to_string();
            assert!(t.contains("SMU0") && t.contains("keysight-b2900"), "{t}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }

    // Garbage in place of a count.
    let garbage: Script = {
        let mut s = b2900(IDN, &[], &[0], vec![]);
        Box::new(move |m: &str| if m == ":TRAC:POIN:ACT?" { line("lots") } else { s(m) })
    };
    let (k, _) = open(garbage, |_| {});
    let mut k = k.expect("open");
    k.bias_on(5.0, 1e-4).expect("bias on");
    match k.acquire(&mut out) {
        Err(e @ HwError::Protocol { .. }) => {
            let t = e.to_string();
            assert!(t.contains("SMU0") && t.contains("keysight-b2900") && t.contains("\"lots\""), "{t}");
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[test]
fn binary_readings_over_a_pseudo_terminal() {
    let (path, _slave, _log) = serve_pty(b2900(IDN, &[], &[1], vec![real64_block(&[7e-6, 0.0, 0.0])]));
    let cfg = path_config(SmuModel::KeysightB2900, SmuTransport::Serial, &path);
    let mut k = KeysightB2900::open("SMU0", &cfg, PLAN).expect("open over the pty");
    k.bias_on(5.0, 1e-4).expect("bias on");
    let r = acquire_some(&mut k).expect("reading");
    assert_eq!((r[0].seq, r[0].current_a), (0, 7e-6));
    k.bias_off().expect("bias off");
}

/// A reply later than the timeout over a pty (B2900 in ASCII format): the late
/// `:TRAC:POIN:ACT?` reply arrives while the host waits for its retry. Before the client
/// resynchronised, the retry took the late reply for its own and `:TRAC:DATA?` then read the
/// retry's "+1" as its data: "got 1 values", a stream error. (In binary format the "+1" is not a
/// #-block, a protocol error that happened to be retried clean.) Now the retry first writes two markers to `*ESE` (B2900
/// SCPI Command Reference, chapter 3, "*ESE" (page unverified): Standard Event Status Enable register, 0–255; `*ESE?` reads
/// it) and discards every line before their echoes.
#[test]
fn a_reply_later_than_the_timeout_is_discarded_not_read_as_the_next_answer() {
    // ASCII data — reference, "Data Output Format": CURR, TIME, STAT comma-separated.
    let mut script = b2900(IDN, &[], &[1], vec![b"+4.000000E-06,+0.000000E+00,+0.000000E+00\n".to_vec()]);
    let mut late_once = false;
    let late: Script = Box::new(move |m: &str| {
        if m == ":TRAC:POIN:ACT?" && !late_once {
            late_once = true;
            return Answer::Late(Duration::from_millis(common::LATE_BY_MS), b"+1\n".to_vec());
        }
        script(m)
    });
    let (path, _slave, log) = serve_pty(late);
    let mut cfg = path_config(SmuModel::KeysightB2900, SmuTransport::Serial, &path);
    (cfg.timeout_ms, cfg.retries, cfg.binary) = (common::LATE_TIMEOUT_MS, 2, false);
    let mut k = KeysightB2900::open("SMU0", &cfg, PLAN).expect("open over the pty");
    k.bias_on(5.0, 1e-4).expect("bias on");
    let r = acquire_some(&mut k).expect("the reading, after a retry");
    assert_eq!((r.len(), r[0].seq, r[0].current_a), (1, 0, 4e-6));
    assert!(k.stats().retries >= 1, "{:?}", k.stats());
    k.bias_off().expect("bias off");
    let sent = log.lines();
    let markers: Vec<&str> = sent.iter().map(String::as_str).filter(|m| m.starts_with("*ESE")).collect();
    assert_eq!(&markers[..5], ["*ESE 2", "*ESE?", "*ESE 3", "*ESE?", "*ESE 0"], "{sent:#?}");
}

/// The USB-TMC transport is a plain character device: a pty in raw mode stands in for
/// `/dev/usbtmc0`. Verified: open read-write, one write per message, a read per reply, the
/// whole driver on top. Not verified (no device): the kernel driver's USBTMC framing below the
/// device file (bulk-out headers, EOM, REQUEST_DEV_DEP_MSG_IN) and its 5 s USB timeout, which
/// bounds a silent instrument on this transport (a pty's read would block instead, so silence is
/// not tested here).
#[test]
fn usbtmc_link_over_a_character_device() {
    let (path, _slave, log) = serve_pty(b2900(IDN, &[], &[1], vec![real64_block(&[3e-6, 0.0, 6.0])]));
    let mut link = UsbtmcLink::open(&path).expect("open the character device");
    assert_eq!(link.describe(), format!("usbtmc {path}"));
    link.write_all(b"*IDN?\n").expect("one message");
    let mut buf = [0u8; 128];
    let mut got = Vec::new();
    while !got.ends_with(b"\n") {
        let n = link.read_some(&mut buf, Duration::from_secs(1)).expect("reply");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, format!("{IDN}\n").as_bytes());
    drop(link);

    let cfg = path_config(SmuModel::KeysightB2900, SmuTransport::Usbtmc, &path);
    let mut k = KeysightB2900::open("SMU0", &cfg, PLAN).expect("open over usbtmc");
    assert!(k.device().contains("usbtmc"), "{}", k.device());
    k.bias_on(5.0, 1e-4).expect("bias on");
    let r = acquire_some(&mut k).expect("reading");
    assert_eq!((r[0].current_a, r[0].compliance), (3e-6, true));
    k.bias_off().expect("bias off");
    assert!(log.lines().iter().any(|s| s == ":OUTP OFF"));
}

/// Cost of one poll (fill query + a 20-reading binary fetch: what a 1 kHz run does every 20 ms)
/// over loopback TCP against the scripted responder. A measurement, not a test: it asserts
/// nothing about time. `cargo test --release -p nanoecr-hw --test keysight_b2900 -- --ignored
/// --nocapture`.
#[test]
#[ignore = "measurement; prints numbers"]
fn measure_poll_round_trips() {
    const POLLS: usize = 2000;
    let block: Vec<f64> = (0..20).flat_map(|i| [1e-6, i as f64 * 1e-3, 0.0]).collect();
    let block = real64_block(&block);
    let mut count = 0u64;
    let script: Script = {
        let mut s = b2900(IDN, &[], &[0], vec![]);
        Box::new(move |m: &str| match m {
            ":TRAC:POIN:ACT?" => {
                count += 20;
                line(&count.to_string())
            }
            m if m.starts_with(":TRAC:DATA?") => Answer::Bytes(block.clone()),
            m => s(m),
        })
    };
    let (addr, _) = serve_tcp(script);
    let plan = RunPlan { rate_hz: 1000.0, readings: 100_000 };
    let mut k = KeysightB2900::open("SMU0", &tcp_config(SmuModel::KeysightB2900, addr), plan).expect("open");
    k.bias_on(5.0, 1e-4).expect("bias on");
    let mut out = [SmuReading::default(); 256];
    let mut us = Vec::with_capacity(POLLS);
    while us.len() < POLLS {
        let t = std::time::Instant::now();
        let n = k.acquire(&mut out).expect("acquire");
        if n > 0 {
            assert_eq!(n, 20);
            us.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    us.sort_by(f64::total_cmp);
    let q = |p: f64| us[((us.len() - 1) as f64 * p) as usize];
    println!("B2900 poll (2 round trips, 20 readings, 485-byte block) over loopback TCP: p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs ({POLLS} polls)", q(0.5), q(0.99), q(1.0));
}
