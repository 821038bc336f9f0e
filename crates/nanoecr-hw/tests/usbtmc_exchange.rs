//! The out-of-step resynchronisation against an instrument that speaks only when asked.
//!
//! Over USB-TMC (and GPIB) an instrument follows the IEEE 488.2 message exchange protocol to the
//! letter: a reply waits in its output queue until the controller reads it, and a new program
//! message that arrives while a reply is still unread clears the queue and logs −410 "Query
//! INTERRUPTED" (IEEE 488.2-1992 §6.3.2.3; B2900 SCPI Command Reference, chapter 5 "Error
//! Messages", "Query Error"; the 2450 Reference Manual's own entry for −410 is unverified). No USB-TMC device exists on this machine, so [`Talker`] plays that protocol in-process
//! behind the same [`ByteLink`] trait the real `UsbtmcLink` implements; the TCP and pty tests
//! cannot show it, because a byte stream delivers replies whether or not they were asked for.
//!
//! The resynchronisation writes `*ESE <a>`, `*ESE?` and reads `<a>` before it sends the second
//! marker (IEEE 488.2 §10.10 `*ESE`, §10.11 `*ESE?`, reply `<NR1>`): had it sent both markers
//! before reading, `*ESE <b>` would have interrupted the unread `<a>` and the pair could never
//! come back. Then it empties the error queue with `:SYST:ERR?` until `0,"No error"`, so the −410
//! it caused is not left for the operator (or a later error check) to find.
//!
//! Error-queue entries as the instruments print them, `<code>,"<text>"`: `-410,"Query
//! INTERRUPTED"` and `0,"No error"` (SCPI-99 Vol. 2 §21.8 error texts; B2900 SCPI Command
//! Reference, chapter 5 "Error Messages", "Query Error" −410 and p. 5-2 for the empty queue, there
//! `+0,"No error"`; the Keithley 2400-series manuals' "Eliminating common SCPI errors", −410
//! "Query INTERRUPTED"), `-222,"Data out of range"` (SCPI-99 Vol. 2 §21.8.6).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nanoecr_hw::scpi::ScpiClient;
use nanoecr_hw::transport::ByteLink;

/// What the instrument did, shared with the test.
#[derive(Default)]
struct State {
    /// Program messages received, in order.
    heard: Vec<String>,
    /// Error queue entries (codes), oldest first.
    errors: Vec<i32>,
}

/// An error-queue entry as the instrument prints it (`:SYSTem:ERRor[:NEXT]?`).
fn entry(code: i32) -> String {
    let text = match code {
        0 => "No error",
        -410 => "Query INTERRUPTED",
        -222 => "Data out of range",
        _ => "Undefined",
    };
    format!("{code},\"{text}\"\n")
}

/// An instrument on a USB-TMC-like link: replies go to an output queue that only a read
/// empties; a new message clears an unread reply (−410). Its first `:OUTP?` reply is late: it
/// reaches the output queue only when the controller has given up and reopened the link.
struct Talker {
    state: Arc<Mutex<State>>,
    ese: u8,
    output: Vec<u8>,
    late: Option<&'static str>,
    first_outp: bool,
    /// How `*ESE?` prints the register.
    ese_form: EseForm,
}

/// How a talker prints its `*ESE?` reply.
type EseForm = fn(u8) -> String;

impl Talker {
    fn new(state: Arc<Mutex<State>>) -> Self {
        Self { state, ese: 0, output: Vec::new(), late: None, first_outp: true, ese_form: |v| v.to_string() }
    }
}

impl ByteLink for Talker {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let mut st = self.state.lock().map_err(|_| std::io::Error::other("state poisoned"))?;
        if !self.output.is_empty() {
            // IEEE 488.2 §6.3.2.3: the unread response is discarded, "Query INTERRUPTED".
            self.output.clear();
            st.errors.push(-410);
        }
        let text = String::from_utf8_lossy(bytes);
        for m in text.split(['\n', ';']).map(str::trim).filter(|m| !m.is_empty()) {
            st.heard.push(m.to_string());
            match m {
                "*ESE?" => self.output.extend_from_slice(format!("{}\n", (self.ese_form)(self.ese)).as_bytes()),
                ":OUTP?" if self.first_outp => {
                    self.first_outp = false;
                    self.late = Some("0\n");
                }
                ":OUTP?" => self.output.extend_from_slice(b"0\n"),
                ":SYST:ERR?" | ":SYST:ERR:NEXT?" => {
                    let code = if st.errors.is_empty() { 0 } else { st.errors.remove(0) };
                    self.output.extend_from_slice(entry(code).as_bytes());
                }
                m => {
                    if let Some(v) = m.strip_prefix("*ESE ").and_then(|v| v.parse().ok()) {
                        self.ese = v;
                    }
                }
            }
        }
        Ok(())
    }

    fn read_some(&mut self, buf: &mut [u8], _timeout: Duration) -> std::io::Result<usize> {
        // Nothing queued: the instrument has nothing to say (the client's deadline ends it).
        let n = self.output.len().min(buf.len());
        buf[..n].copy_from_slice(&self.output[..n]);
        self.output.drain(..n);
        Ok(n)
    }

    fn restart(&mut self) -> std::io::Result<()> {
        // Reopening the device file does not clear the instrument's output queue; the late
        // reply lands there now.
        if let Some(late) = self.late.take() {
            self.output.extend_from_slice(late.as_bytes());
        }
        Ok(())
    }

    fn describe(&self) -> &str {
        "usbtmc (in-process IEEE 488.2 talker)"
    }
}

#[test]
fn a_late_reply_on_a_link_that_speaks_only_when_asked_is_resynchronised_one_marker_at_a_time() {
    let state = Arc::new(Mutex::new(State::default()));
    let link = Box::new(Talker::new(state.clone()));
    let mut scpi = ScpiClient::new("SMU0 (test usbtmc)".into(), link, "\n", Duration::from_millis(30), 1);

    // The first attempt times out (its reply is late), the retry resynchronises and is answered.
    let reply = scpi.query("reading the output state", ":OUTP?").expect("answered after the resync").to_string();
    assert_eq!(reply, "0");

    let st = state.lock().expect("state");
    let markers: Vec<&str> = st.heard.iter().map(String::as_str).filter(|m| m.starts_with("*ESE")).collect();
    assert_eq!(markers, ["*ESE 2", "*ESE?", "*ESE 3", "*ESE?", "*ESE 0"], "{:?}", st.heard);
    // The late reply was cleared by the first marker, as §6.3.2.3 says, and by nothing else: no
    // marker's own answer was interrupted, so the queue held one −410, which the resync drained
    // (two `:SYST:ERR?`: the −410, then "No error") before the retried query.
    let tail: Vec<&str> = st.heard.iter().rev().take(4).rev().map(String::as_str).collect();
    assert_eq!(tail, ["*ESE 0", ":SYST:ERR?", ":SYST:ERR?", ":OUTP?"], "{:?}", st.heard);
    assert!(st.errors.is_empty(), "the resync left {:?} in the error queue", st.errors);
    assert_eq!(scpi.stats().resync_query_errors, 1, "{:?}", scpi.stats());
    // The −410 was ours: the next error check finds nothing to report.
    drop(st);
    scpi.drain_errors("checking errors").expect("no error left to report");
}

/// An entry the resynchronisation did not cause (here −222, from a command the instrument refused
/// before the late reply) is not thrown away with the −410: the next error check reports it.
#[test]
fn an_error_of_the_instruments_own_found_by_the_resync_is_reported_by_the_next_error_check() {
    let state = Arc::new(Mutex::new(State { errors: vec![-222], ..State::default() }));
    let link = Box::new(Talker::new(state.clone()));
    let mut scpi = ScpiClient::new("SMU0 (test usbtmc)".into(), link, "\n", Duration::from_millis(30), 1);

    assert_eq!(scpi.query("reading the output state", ":OUTP?").expect("answered after the resync"), "0");
    assert!(state.lock().expect("state").errors.is_empty(), "the resync left the queue non-empty");
    assert_eq!(scpi.stats().resync_query_errors, 1, "only the −410 is the resync's");

    match scpi.drain_errors("set-up") {
        Err(nanoecr_hw::HwError::Device { code, message, .. }) => {
            assert_eq!(code, -222, "{message}");
            assert_eq!(message, "Data out of range");
        }
        other => panic!("expected the carried −222, got {other:?}"),
    }
    // Reported once.
    scpi.drain_errors("set-up").expect("reported once, then gone");
}

/// The marker's reply as IEEE 488.2 §10.11 defines it (`<NR1>`: `3`, the 2450's form per its
/// manual, RM p. B-2, and the shims'), with a sign (`+3`: NR1 may carry one, §8.7.2; the B2900
/// signs its ASCII data and error codes, CR pp. 1-12 and 5-2, though its `*ESE?` page is
/// unverified), or after a header (`*ESE 3`: neither manual documents one; tolerated). Each is
/// recognised: the resync ends, and the retried query is answered.
#[test]
fn marker_replies_with_a_sign_or_a_header_are_recognised() {
    let forms: [(&str, EseForm); 3] =
        [("NR1", |v| v.to_string()), ("signed", |v| format!("+{v}")), ("header", |v| format!("*ESE {v}"))];
    for (name, form) in forms {
        let state = Arc::new(Mutex::new(State::default()));
        let mut talker = Talker::new(state.clone());
        talker.ese_form = form;
        let mut scpi =
            ScpiClient::new("SMU0 (test usbtmc)".into(), Box::new(talker), "\n", Duration::from_millis(30), 1);
        let reply = scpi.query("reading the output state", ":OUTP?").map(str::to_string);
        assert_eq!(reply.as_deref().ok(), Some("0"), "{name}: {reply:?}");
        assert!(scpi.in_step(), "{name}");
        let st = state.lock().expect("state");
        let markers: Vec<&str> = st.heard.iter().map(String::as_str).filter(|m| m.starts_with("*ESE")).collect();
        assert_eq!(markers, ["*ESE 2", "*ESE?", "*ESE 3", "*ESE?", "*ESE 0"], "{name}: {:?}", st.heard);
    }
}
