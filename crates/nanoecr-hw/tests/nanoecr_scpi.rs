//! The in-house dialect's driver (`model = "nanoecr-scpi"`, docs/hardware.md "In-house dialect")
//! against a scripted responder over a real pseudo-terminal.

mod common;

use common::{line, path_config, serve_pty, Answer, Script};
use nanoecr_core::config::hardware::{SmuModel, SmuTransport};
use nanoecr_hw::nanoecr_scpi::ScpiSourceMeter;
use nanoecr_hw::{HwError, SmuReading, SourceMeter};

/// The dialect's instrument: `*OPC?` → 1, an empty error queue, the output state, and
/// `:TRAC:DATA? <n>,<seq>` answered from `data` by the `<seq>` asked for.
fn inhouse(data: &'static [(&'static str, &'static str)]) -> Script {
    common::with_ese(common::with_output(Box::new(move |m: &str| match m {
        "*OPC?" => line("1"),
        ":SYST:ERR?" => line("0,\"No error\""),
        m => match data.iter().find(|(q, _)| *q == m) {
            Some((_, reply)) => line(reply),
            None => Answer::Silent,
        },
    })))
}

/// `:TRAC:DATA? <n>,<seq>` drops every reading before `<seq>` before it answers (docs/hardware.md,
/// "Shared trigger and the buffer"), so a reading below `<seq>` in the reply means the reply
/// answers an earlier read: the link is out of step. It used to be skipped in silence, which kept
/// a run going one reply behind until `bias_off` read a `:TRAC:DATA?` reply as `:OUTP?`. Now it
/// is a protocol error, and the next query resynchronises first.
#[test]
fn a_reading_before_the_acknowledged_one_is_a_late_reply_and_the_link_resynchronises() {
    let data: &'static [(&str, &str)] = &[
        (":TRAC:DATA? 256,0", "0,1.0E-6,0;1,1.1E-6,0"),
        // The reply to the read from 0 again: readings 0 and 1 were acknowledged.
        (":TRAC:DATA? 256,2", "0,1.0E-6,0;1,1.1E-6,0;2,1.2E-6,0"),
    ];
    let (path, _slave, log) = serve_pty(inhouse(data));
    let cfg = path_config(SmuModel::NanoecrScpi, SmuTransport::Serial, &path);
    let mut m = ScpiSourceMeter::open("SMU0", &cfg).expect("open over the pty");
    m.bias_on(1.0, 1e-4).expect("bias on");
    let mut out = [SmuReading::default(); 256];
    assert_eq!(m.acquire(&mut out).expect("two readings"), 2);
    assert_eq!((out[0].seq, out[1].seq, out[1].current_a), (0, 1, 1.1e-6));
    match m.acquire(&mut out) {
        Err(e @ HwError::Protocol { .. }) => {
            let t = e.to_string();
            assert!(t.contains("SMU0") && t.contains("reading 0") && t.contains("late reply"), "{t}");
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
    m.bias_off().expect("bias off reads the real output state");
    let sent = log.lines();
    let tail: Vec<&str> = sent.iter().map(String::as_str).skip_while(|s| *s != ":TRAC:DATA? 256,2").collect();
    // The markers, then the error queue read until empty (docs/hardware.md "In-house dialect":
    // `:SYST:ERR?` → `0,"No error"` when empty), then the query.
    assert_eq!(
        tail,
        [":TRAC:DATA? 256,2", ":OUTP OFF", "*ESE 2", "*ESE?", "*ESE 3", "*ESE?", "*ESE 0", ":SYST:ERR?", ":OUTP?"]
    );
}
