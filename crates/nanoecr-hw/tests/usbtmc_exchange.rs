//! The out-of-step resynchronisation against an instrument that speaks only when asked.
//!
//! Over USB-TMC (and GPIB) an instrument follows the IEEE 488.2 message exchange protocol to the
//! letter: a reply waits in its output queue until the controller reads it, and a new program
//! message that arrives while a reply is still unread clears the queue and logs −410 "Query
//! INTERRUPTED" (IEEE 488.2-1992 §6.3.2.3; 2450 Reference Manual 2450-901-01, "Error summary",
//! −410). No USB-TMC device exists on this machine, so [`Talker`] plays that protocol in-process
//! behind the same [`ByteLink`] trait the real `UsbtmcLink` implements; the TCP and pty tests
//! cannot show it, because a byte stream delivers replies whether or not they were asked for.
//!
//! The resynchronisation writes `*ESE <a>`, `*ESE?` and reads `<a>` before it sends the second
//! marker (IEEE 488.2 §10.10 `*ESE`, §10.11 `*ESE?`, reply `<NR1>`): had it sent both markers
//! before reading, `*ESE <b>` would have interrupted the unread `<a>` and the pair could never
//! come back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nanoecr_hw::scpi::ScpiClient;
use nanoecr_hw::transport::ByteLink;

/// What the instrument did, shared with the test.
#[derive(Default)]
struct State {
    /// Program messages received, in order.
    heard: Vec<String>,
    /// Error queue entries (codes).
    errors: Vec<i32>,
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
}

impl Talker {
    fn new(state: Arc<Mutex<State>>) -> Self {
        Self { state, ese: 0, output: Vec::new(), late: None, first_outp: true }
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
                "*ESE?" => self.output.extend_from_slice(format!("{}\n", self.ese).as_bytes()),
                ":OUTP?" if self.first_outp => {
                    self.first_outp = false;
                    self.late = Some("0\n");
                }
                ":OUTP?" => self.output.extend_from_slice(b"0\n"),
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
    // marker's own answer was interrupted.
    assert_eq!(st.errors, [-410], "{:?}", st.heard);
    assert_eq!(st.heard.last().map(String::as_str), Some(":OUTP?"));
}
