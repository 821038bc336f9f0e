//! The Keithley 2450 driver against a scripted responder over a real loopback TCP socket and a
//! real pseudo-terminal. Every reply is written as the 2450 Reference Manual 2450-901-01 (Rev. B)
//! documents it; the section is cited next to each.

mod common;

use std::collections::VecDeque;
use std::time::Duration;

use common::{line, path_config, serve_pty, serve_tcp, tcp_config, until, Answer, Script};
use nanoecr_core::config::hardware::{SmuModel, SmuTransport, SmuTrigger};
use nanoecr_hw::keithley::Keithley2450;
use nanoecr_hw::scpi::RunPlan;
use nanoecr_hw::{HwError, SmuPacing, SmuReading, SourceMeter};

/// *IDN? of a 2450 as current firmware answers it (the shim's; manual appendix B "*IDN?", p. B-5,
/// documents `KEITHLEY INSTRUMENTS INC.,MODEL nnnn,<serial>,<firmware>`: both are accepted).
const IDN: &str = "KEITHLEY INSTRUMENTS,MODEL 2450,04512345,1.7.12b";
/// Empty error queue — manual §6 ":SYSTem:ERRor:NEXT?": `0,"No error"`.
const NO_ERROR: &str = "0,\"No error\"";
const PLAN: RunPlan = RunPlan { rate_hz: 1000.0, readings: 5000 };

/// A 2450 answering `*LANG?` with `lang`, `:SYST:ERR:NEXT?` from `errors` then "no error",
/// `:TRAC:ACT:END?` from `ends` (repeating the last) and `:TRAC:DATA?` from `data`.
fn k2450(
    lang: &'static str,
    idn: &'static str,
    errors: &[&'static str],
    ends: &[u64],
    data: &[&'static str],
) -> Script {
    let mut errors: VecDeque<&str> = errors.iter().copied().collect();
    let mut ends: VecDeque<u64> = ends.iter().copied().collect();
    let mut data: VecDeque<&str> = data.iter().copied().collect();
    common::with_ese(common::with_output(Box::new(move |m: &str| match m {
        // *LANG? — manual appendix B "*LANG" (p. B-5): SCPI, SCPI2400 or TSP.
        "*LANG?" => line(lang),
        "*IDN?" => line(idn),
        // `:SYSTem:ERRor[:NEXT]?` in either spelling: the resync drains with the short one.
        ":SYST:ERR:NEXT?" | ":SYST:ERR?" => line(errors.pop_front().unwrap_or(NO_ERROR)),
        m if m.starts_with(":TRAC:ACT:END?") => {
            let e = if ends.len() > 1 { ends.pop_front() } else { ends.front().copied() };
            line(&e.unwrap_or(0).to_string())
        }
        m if m.starts_with(":TRAC:DATA?") => match data.pop_front() {
            Some(d) => line(d),
            None => Answer::Silent,
        },
        _ => Answer::Silent,
    })))
}

fn open(script: Script) -> (Result<Keithley2450, HwError>, common::Log) {
    let (addr, log) = serve_tcp(script);
    (Keithley2450::open("SMU0", &tcp_config(SmuModel::Keithley2450, addr), PLAN), log)
}

fn acquire_some(k: &mut Keithley2450) -> Result<Vec<SmuReading>, HwError> {
    let mut out = [SmuReading::default(); 16];
    until(|| match k.acquire(&mut out) {
        Ok(0) => None,
        Ok(n) => Some(Ok(out[..n].to_vec())),
        Err(e) => Some(Err(e)),
    })
}

#[test]
fn set_up_readings_and_shut_down_over_tcp() {
    // :TRAC:DATA? s, e, "defbuffer1", READ, REL, SOURSTAT — manual §6 ":TRACe:DATA?" (p. 6-109):
    // the elements of each reading in the order asked, comma-separated. SOURSTAT bits — manual §8
    // "bufferVar.sourcestatuses" (p. 8-29): 32 = source limited (STAT_LIMIT), 128 = output on.
    // 9.9E37 is SCPI's overflow value.
    let data = "1.000000E-06,0.000000E+00,128,9.900000E+37,1.000000E-03,128,1.000000E-04,2.000000E-03,160";
    let (k, log) = open(k2450("SCPI", IDN, &[], &[0, 3], &[data]));
    let mut k = k.expect("open");
    assert_eq!(k.identify().expect("identify").serial, "04512345");
    assert_eq!(k.pacing(), SmuPacing::ExternalTrigger);
    k.bias_on(5.0, 1e-4).expect("bias on");
    let r = acquire_some(&mut k).expect("readings");
    assert_eq!(r.len(), 3);
    assert_eq!(r.iter().map(|r| r.seq).collect::<Vec<_>>(), [0, 1, 2], "buffer index i + 1 is frame sample i");
    assert_eq!(r[0].current_a, 1e-6);
    assert!(r[1].current_a.is_nan(), "overflow 9.9E37 is an invalid sample");
    assert_eq!(r[2].current_a, 1e-4);
    assert_eq!(r.iter().map(|r| r.compliance).collect::<Vec<_>>(), [false, false, true], "source-limit bit 32");
    assert_eq!(r.iter().map(|r| r.time_s).collect::<Vec<_>>(), [0.0, 1e-3, 2e-3]);
    assert!(r.iter().all(|r| r.voltage_v == 5.0));
    k.bias_off().expect("bias off");

    let sent = log.lines();
    let pos = |m: &str| sent.iter().position(|s| s == m).unwrap_or_else(|| panic!("{m:?} not sent: {sent:#?}"));
    // Set-up (docs/hardware.md): reset, source V with a current limit, fixed current range from the
    // limit (1E-4 A is itself a 2450 range), buffer sized for the run, trigger model on DIGIO1.
    let setup = [
        "*RST",
        "*CLS",
        ":SOUR:FUNC VOLT",
        ":SOUR:VOLT:RANG 2E1",
        ":SOUR:VOLT 5E0",
        ":SOUR:VOLT:ILIM 1E-4",
        ":SENS:FUNC \"CURR\"",
        ":SENS:CURR:RANG 1E-4",
        ":SENS:CURR:NPLC 0.01",
        ":SENS:CURR:AZER OFF",
        ":TRAC:POIN 5000, \"defbuffer1\"",
        ":TRAC:CLE \"defbuffer1\"",
        ":DIG:LINE1:MODE TRIG, IN",
        ":TRIG:DIG1:IN:EDGE FALL",
        ":TRIG:LOAD \"Empty\"",
        ":TRIG:BLOC:BUFF:CLE 1, \"defbuffer1\"",
        ":TRIG:BLOC:WAIT 2, DIGIO1",
        ":TRIG:BLOC:MDIG 3, \"defbuffer1\", 1",
        ":TRIG:BLOC:BRAN:COUN 4, 5000, 2",
        ":SYST:ERR:NEXT?",
        ":OUTP ON",
        ":INIT",
    ];
    let at: Vec<usize> = setup.iter().map(|m| pos(m)).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "set-up out of order: {sent:#?}");
    assert!(sent.contains(&":TRAC:DATA? 1, 3, \"defbuffer1\", READ, REL, SOURSTAT".to_string()), "{sent:#?}");
    let (abort, off) = (sent.iter().rposition(|s| s == ":ABOR"), sent.iter().rposition(|s| s == ":OUTP OFF"));
    assert!(abort.is_some() && off.is_some() && abort < off, "shut-down is :ABOR then :OUTP OFF: {sent:#?}");
}

#[test]
fn timer_trigger_waits_on_timer1() {
    let (addr, log) = serve_tcp(k2450("SCPI", IDN, &[], &[0], &[]));
    let mut cfg = tcp_config(SmuModel::Keithley2450, addr);
    cfg.trigger = SmuTrigger::Timer;
    let mut k = Keithley2450::open("SMU0", &cfg, PLAN).expect("open");
    assert_eq!(k.pacing(), SmuPacing::Timer);
    k.bias_on(1.0, 1e-3).expect("bias on");
    let sent = log.lines();
    // :TRIGger:TIMer<n>:DELay / :COUNt (0 = indefinitely) / :STARt:GENerate / :STATe — manual §6.
    for m in [":TRIG:TIM1:DEL 1E-3", ":TRIG:TIM1:COUN 0", ":TRIG:TIM1:STAR:GEN ON", ":TRIG:BLOC:WAIT 2, TIMER1"] {
        assert!(sent.iter().any(|s| s == m), "{m:?} not sent: {sent:#?}");
    }
    let init = sent.iter().position(|s| s == ":INIT").expect(":INIT");
    let stat = sent.iter().position(|s| s == ":TRIG:TIM1:STAT ON").expect("timer on");
    assert!(init < stat, "timer enabled after the model waits for it");
}

#[test]
fn tsp_command_set_is_refused_with_the_front_panel_fix() {
    // A 2450 set to TSP still answers *LANG? — manual appendix B "*LANG" (p. B-5): returns TSP.
    let (k, _) = open(k2450("TSP", IDN, &[], &[0], &[]));
    let e = k.expect_err("TSP refused").to_string();
    assert!(e.contains("SMU0") && e.contains("keithley-2450"), "{e}");
    assert!(e.contains("\"TSP\"") && e.contains("Command Set") && e.contains("power-cycle"), "{e}");
    let (k, _) = open(k2450("SCPI2400", IDN, &[], &[0], &[]));
    assert!(k.expect_err("2400 emulation refused").to_string().contains("SCPI2400"));
}

#[test]
fn the_manuals_own_idn_example_is_a_2450() {
    // 2450 Reference Manual 2450-901-01 Rev. B, appendix B "*IDN?" (p. B-5), its example output.
    let (k, _) = open(k2450("SCPI", "KEITHLEY INSTRUMENTS INC.,MODEL 2450,01234567,1.0.0i", &[], &[0], &[]));
    let info = k.expect("the manual's example identifies a 2450").identify().expect("*IDN? again");
    assert_eq!((info.serial.as_str(), info.firmware.as_str()), ("01234567", "1.0.0i"));
}

#[test]
fn another_instrument_is_refused_quoting_its_idn() {
    // A 2400 in native mode: "KEITHLEY INSTRUMENTS INC.,MODEL 2400,…" (2400 manual §18, *IDN?).
    let (k, _) = open(k2450("SCPI", "KEITHLEY INSTRUMENTS INC.,MODEL 2400,1234567,C30", &[], &[0], &[]));
    let e = k.expect_err("mismatch").to_string();
    assert!(e.contains("KEITHLEY INSTRUMENTS INC.,MODEL 2400,1234567,C30") && e.contains("MODEL 2450"), "{e}");
}

#[test]
fn an_error_queue_entry_after_set_up_is_a_device_error_with_its_code_and_text() {
    // -222 "Data out of range" — manual, "Error summary": e.g. a limit the range cannot hold.
    let (k, _) = open(k2450("SCPI", IDN, &["-222,\"Data out of range\"", "-113,\"Undefined header\""], &[0], &[]));
    let mut k = k.expect("open");
    match k.bias_on(5.0, 1e-4) {
        Err(HwError::Device { device, code, message, .. }) => {
            assert_eq!(code, -222);
            assert!(message.contains("Data out of range") && message.contains("-113"), "{message}");
            assert!(device.contains("SMU0") && device.contains("keithley-2450"), "{device}");
        }
        other => panic!("expected a device error, got {other:?}"),
    }
}

#[test]
fn a_missing_reading_is_a_stream_error() {
    // The index says 3 readings, the data holds 2: a reading went missing between the queries.
    let data = "1.0E-06,0.0E+00,128,1.0E-06,1.0E-03,128";
    let (k, _) = open(k2450("SCPI", IDN, &[], &[3], &[data]));
    let mut k = k.expect("open");
    k.bias_on(5.0, 1e-4).expect("bias on");
    match acquire_some(&mut k) {
        Err(HwError::Stream { device, message }) => {
            assert!(device.contains("SMU0") && message.contains("missing"), "{device}: {message}");
        }
        other => panic!("expected a stream error, got {other:?}"),
    }
}

#[test]
fn a_buffer_index_going_back_is_a_stream_error() {
    let data = "1.0E-06,0.0E+00,128,1.0E-06,1.0E-03,128";
    let (k, _) = open(k2450("SCPI", IDN, &[], &[2, 1], &[data]));
    let mut k = k.expect("open");
    k.bias_on(5.0, 1e-4).expect("bias on");
    assert_eq!(acquire_some(&mut k).expect("two").len(), 2);
    match acquire_some(&mut k) {
        Err(HwError::Stream { message, .. }) => assert!(message.contains("went back from 2 to 1"), "{message}"),
        other => panic!("expected a stream error, got {other:?}"),
    }
}

#[test]
fn silence_is_a_timeout_and_garbage_a_protocol_error_naming_smu0_and_the_model() {
    // The index query is never answered.
    let mut script = k2450("SCPI", IDN, &[], &[0], &[]);
    let silent: Script =
        Box::new(move |m: &str| if m.starts_with(":TRAC:ACT:END?") { Answer::Silent } else { script(m) });
    let (addr, _) = serve_tcp(silent);
    let mut cfg = tcp_config(SmuModel::Keithley2450, addr);
    cfg.timeout_ms = common::SILENCE_TIMEOUT_MS;
    let mut k = Keithley2450::open("SMU0", &cfg, PLAN).expect("open");
    k.bias_on(5.0, 1e-4).expect("bias on");
    let mut out = [SmuReading::default(); 4];
    match k.acquire(&mut out) {
        Ok(n) => panic!("expected a timeout, got {n} readings"),
        Err(e @ HwError::Timeout { .. }) => {
            let t = e.to_string();
            assert!(t.contains("SMU0") && t.contains("keithley-2450") && t.contains("tcp 127.0.0.1"), "{t}");
        }
        Err(e) => panic!("expected a timeout, got {e}"),
    }

    // Garbage in place of the index (line noise).
    let mut script = k2450("SCPI", IDN, &[], &[0], &[]);
    let garbage: Script =
        Box::new(
            move |m: &str| {
                if m.starts_with(":TRAC:ACT:END?") {
                    Answer::Bytes(b"\x15\xfe#!\n".to_vec())
                } else {
                    script(m)
                }
            },
        );
    let (k, _) = open(garbage);
    let mut k = k.expect("open");
    k.bias_on(5.0, 1e-4).expect("bias on");
    match k.acquire(&mut out) {
        Err(e @ HwError::Protocol { .. }) => {
            let t = e.to_string();
            assert!(t.contains("SMU0") && t.contains("keithley-2450") && t.contains("non-ASCII"), "{t}");
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[test]
fn a_garbled_reply_is_retried_over_a_fresh_connection() {
    let mut script = k2450("SCPI", IDN, &[], &[1], &["2.0E-06,0.0E+00,128"]);
    let mut garbled_once = false;
    let flaky: Script = Box::new(move |m: &str| {
        if m.starts_with(":TRAC:ACT:END?") && !garbled_once {
            garbled_once = true;
            return Answer::Bytes(b"\x00\x01\n".to_vec());
        }
        script(m)
    });
    let (addr, _) = serve_tcp(flaky);
    let mut cfg = tcp_config(SmuModel::Keithley2450, addr);
    cfg.retries = 2;
    let mut k = Keithley2450::open("SMU0", &cfg, PLAN).expect("open");
    k.bias_on(5.0, 1e-4).expect("bias on");
    let r = acquire_some(&mut k).expect("reading after a retry");
    assert_eq!((r.len(), r[0].current_a), (1, 2e-6));
    assert_eq!(k.stats().retries, 1);
}

#[test]
fn a_lan_drop_is_a_transport_error_not_retried() {
    let mut script = k2450("SCPI", IDN, &[], &[0], &[]);
    let dropping: Script =
        Box::new(move |m: &str| if m.starts_with(":TRAC:ACT:END?") { Answer::Close } else { script(m) });
    let (addr, _) = serve_tcp(dropping);
    let mut cfg = tcp_config(SmuModel::Keithley2450, addr);
    cfg.retries = 2;
    let mut k = Keithley2450::open("SMU0", &cfg, PLAN).expect("open");
    k.bias_on(5.0, 1e-4).expect("bias on");
    let mut out = [SmuReading::default(); 4];
    match k.acquire(&mut out) {
        Err(e @ HwError::Transport { .. }) => {
            let t = e.to_string();
            assert!(t.contains("SMU0") && t.contains("closed by the instrument"), "{t}");
        }
        other => panic!("expected a transport error, got {other:?}"),
    }
    assert_eq!(k.stats().retries, 0, "a closed session is not retried");
}

#[test]
fn dropping_the_driver_switches_the_output_off() {
    let (k, log) = open(k2450("SCPI", IDN, &[], &[0], &[]));
    let mut k = k.expect("open");
    k.bias_on(5.0, 1e-4).expect("bias on");
    drop(k);
    let sent = until(|| {
        let l = log.lines();
        (l.last().map(String::as_str) == Some(":OUTP OFF")).then_some(l)
    });
    assert_eq!(sent[sent.len() - 2], ":ABOR");
}

#[test]
fn the_same_driver_over_a_pseudo_terminal() {
    let data = "3.0E-06,0.0E+00,128";
    let (path, _slave, log) = serve_pty(k2450("SCPI", IDN, &[], &[1], &[data]));
    let cfg = path_config(SmuModel::Keithley2450, SmuTransport::Serial, &path);
    let mut k = Keithley2450::open("SMU0", &cfg, PLAN).expect("open over the pty");
    assert!(k.device().contains(&format!("serial {path}")), "{}", k.device());
    k.bias_on(5.0, 1e-4).expect("bias on");
    let r = acquire_some(&mut k).expect("reading");
    assert_eq!((r[0].seq, r[0].current_a), (0, 3e-6));
    k.bias_off().expect("bias off");
    assert!(log.lines().iter().any(|s| s == ":OUTP OFF"));
}

/// A reply later than the timeout (1.5 timeouts late, over a pty, which cannot refuse it as a
/// reconnected socket does): the host retries, and the late `:TRAC:ACT:END?` reply arrives while
/// it waits. Before the client resynchronised, the retry took the late reply for its own and the
/// retry's own reply was read as the answer to `:TRAC:DATA?`: "got 1 values", a stream error.
/// Now the retry first writes two markers to `*ESE` (2450 manual appendix B "*ESE", p. B-2: sets the Standard
/// Event Enable register, 0–255; `*ESE?` reads it) and discards every line before their echoes.
#[test]
fn a_reply_later_than_the_timeout_is_discarded_not_read_as_the_next_answer() {
    let mut script = k2450("SCPI", IDN, &[], &[1], &["3.0E-06,0.0E+00,128"]);
    let mut late_once = false;
    let late: Script = Box::new(move |m: &str| {
        if m.starts_with(":TRAC:ACT:END?") && !late_once {
            late_once = true;
            return Answer::Late(Duration::from_millis(common::LATE_BY_MS), b"1\n".to_vec());
        }
        script(m)
    });
    let (path, _slave, log) = serve_pty(late);
    let mut cfg = path_config(SmuModel::Keithley2450, SmuTransport::Serial, &path);
    (cfg.timeout_ms, cfg.retries) = (common::LATE_TIMEOUT_MS, 2);
    let mut k = Keithley2450::open("SMU0", &cfg, PLAN).expect("open over the pty");
    k.bias_on(5.0, 1e-4).expect("bias on");
    let r = acquire_some(&mut k).expect("the reading, after a retry");
    assert_eq!((r.len(), r[0].seq, r[0].current_a), (1, 0, 3e-6));
    assert!(k.stats().retries >= 1, "{:?}", k.stats());
    // In step: the shut-down reads the output's state, not a late reply.
    k.bias_off().expect("bias off");
    let sent = log.lines();
    let markers: Vec<&str> = sent.iter().map(String::as_str).filter(|m| m.starts_with("*ESE")).collect();
    assert_eq!(&markers[..5], ["*ESE 2", "*ESE?", "*ESE 3", "*ESE?", "*ESE 0"], "{sent:#?}");
    // Then the error queue, read until it is empty (here at once).
    assert!(sent.windows(2).any(|w| w == ["*ESE 0", ":SYST:ERR?"]), "{sent:#?}");
}
