//! A SCPI client over any [`ByteLink`]: program messages with the configured terminator, reply
//! lines, IEEE 488.2 definite-length arbitrary blocks (`#<n><len><bytes>`), the error queue
//! (`:SYST:ERR:NEXT?` until `0`) and `*IDN?`. The instrument drivers ([`crate::keithley`],
//! [`crate::keysight`], [`crate::nanoecr_scpi`]) are written on top of it.
//!
//! Error policy, as for the Modbus frame (docs/hardware.md, fault table): a query that times out
//! or comes back garbled is retried up to `retries` times, because every query sent through
//! [`ScpiClient::query`] is idempotent; commands are never retried.
//!
//! A query whose reply timed out or came back garbled leaves the conversation out of step: the
//! instrument may still send that reply at any time, and the next read would take it for the
//! answer to another query (the instrument's replies carry no tag). So the next exchange first
//! resynchronises ([`ScpiClient::resync`]): [`ByteLink::restart`] (TCP reconnects, so a late
//! reply goes to the old connection; serial and USB-TMC cannot refuse one still on its way),
//! then markers the instrument echoes — `*ESE <a>`, `*ESE?`, read until `<a>`, then `*ESE <b>`,
//! `*ESE?`, read until `<b>` (IEEE 488.2-1992 §10.10 and §10.11; 2450 Reference Manual 2450-901-01
//! appendix B "Common commands", `*ESE`, p. B-2; B2900 SCPI Command Reference, chapter 3 "Common
//! Commands", `*ESE`, page unverified), fresh values each
//! time — and every other line is a late reply, discarded. Replies leave an instrument in order,
//! so nothing sent before a marker can come after its answer; the second marker covers a stale
//! line that happened to equal the first. Each marker is read before the next is sent because
//! an instrument that speaks only when asked (USB-TMC, GPIB) discards unread output when a new
//! message comes (IEEE 488.2 §6.3.2.3). Then `*ESE 0`, the register's
//! power-on value (nanoecr enables no status events), and `:SYST:ERR?` until `0`: such an
//! instrument logged −410 "Query INTERRUPTED" for the late reply the first marker interrupted,
//! an error nanoecr caused, which is drained and logged; any other entry is kept for the next
//! [`ScpiClient::drain_errors`]. A connection the instrument closed is not retried either: an instrument
//! that ends the session (power cycle, another controller, a cable pulled) has lost its trigger
//! model and buffer, and continuing would silently shift readings.

use std::time::{Duration, Instant};

use crate::transport::ByteLink;
use crate::{DeviceInfo, HwError};

/// Error-queue entries read at most in one drain (the 2450's queue holds more, but a setup that
/// produced this many has one cause worth reporting, and the loop must end).
const MAX_ERRORS_DRAINED: usize = 32;
/// Largest block accepted, bytes (the B2900's 100 000 readings × 3 × 8 bytes fit).
const MAX_BLOCK_BYTES: usize = 4 << 20;

/// Counters for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScpiStats {
    /// Program messages sent (commands and queries, retries included).
    pub messages: u64,
    /// Queries repeated after a timeout or a garbled reply.
    pub retries: u64,
    /// Query errors (−4xx: −410 "Query INTERRUPTED" above all) that a resynchronisation found
    /// in the instrument's error queue and drained: the out-of-step exchange caused them.
    pub resync_query_errors: u64,
}

/// One SCPI conversation with one instrument.
pub struct ScpiClient {
    device: String,
    link: Box<dyn ByteLink>,
    terminator: &'static str,
    timeout: Duration,
    retries: u32,
    /// Received bytes not yet consumed.
    rx: Vec<u8>,
    /// The last reply: a line without its terminator, or a block's payload.
    reply: Vec<u8>,
    /// Outgoing message scratch (reused: no allocation per query).
    out: Vec<u8>,
    stats: ScpiStats,
    /// Whether the byte stream is known to be in step (see the module documentation).
    sync: Step,
    /// The last marker written to `*ESE` by [`resync`](ScpiClient::resync).
    marker: u8,
    /// Entries a resynchronisation drained from the error queue that it did not cause (not
    /// query errors): the next [`drain_errors`](ScpiClient::drain_errors) or
    /// [`carried_errors`](ScpiClient::carried_errors) reports them, oldest first.
    carried: Vec<(i32, String)>,
}

/// How far the conversation is from being in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Every reply asked for has been read: the next line answers the next query.
    In,
    /// An exchange failed: a reply may still come, and the link itself may be broken.
    Lost,
    /// The link was restarted since ([`ByteLink::restart`]): commands go through, but on a
    /// serial or USB-TMC link a late reply may still come before the next query's.
    Restarted,
}

impl std::fmt::Debug for ScpiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScpiClient").field("device", &self.device).field("stats", &self.stats).finish_non_exhaustive()
    }
}

/// What kind of reply a query expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    Line,
    Block,
}

impl ScpiClient {
    /// A client for `link`, reporting errors as `device` (e.g. `SMU0 (keithley-2450 tcp 10.0.0.5:5025)`).
    pub fn new(
        device: String,
        link: Box<dyn ByteLink>,
        terminator: &'static str,
        timeout: Duration,
        retries: u32,
    ) -> Self {
        Self {
            device,
            link,
            terminator,
            timeout,
            retries,
            rx: Vec::with_capacity(64 * 1024),
            reply: Vec::with_capacity(64 * 1024),
            out: Vec::with_capacity(256),
            stats: ScpiStats::default(),
            sync: Step::In,
            // The first resynchronisation uses 2 and 3: never 0 or 1, the commonest replies.
            marker: 1,
            carried: Vec::new(),
        }
    }

    /// The name used in errors.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Counters.
    pub fn stats(&self) -> ScpiStats {
        self.stats
    }

    /// The last reply line (after [`query`](Self::query)); empty after a block.
    pub fn reply(&self) -> &str {
        // Lines are checked to be printable ASCII when read.
        std::str::from_utf8(&self.reply).unwrap_or("")
    }

    /// The last block's payload (after [`query_block`](Self::query_block)).
    pub fn block(&self) -> &[u8] {
        &self.reply
    }

    /// A [`HwError::Protocol`] for this device.
    pub fn protocol(&self, operation: &str, message: impl Into<String>) -> HwError {
        HwError::Protocol { device: self.device.clone(), operation: operation.into(), message: message.into() }
    }

    fn transport(&self, operation: &str, source: std::io::Error) -> HwError {
        HwError::Transport { device: self.device.clone(), operation: operation.into(), source }
    }

    /// Whether the conversation is known to be in step (no reply outstanding or lost since the
    /// last resynchronisation).
    pub fn in_step(&self) -> bool {
        self.sync == Step::In
    }

    /// Declare the conversation out of step: a driver that finds a reply answering another query
    /// (the in-house dialect's tagged readings can tell) makes the next query resynchronise.
    pub fn mark_out_of_step(&mut self) {
        self.sync = Step::Lost;
    }

    /// Send one program message (a command, or a query whose reply the caller reads). After a
    /// failed exchange the link is restarted first, so a command reaches the instrument even
    /// when the failure broke the connection (the shut-down's `:OUTP OFF` above all).
    pub fn send(&mut self, operation: &str, message: &str) -> Result<(), HwError> {
        if self.sync == Step::Lost {
            self.restart(operation)?;
        }
        self.write(operation, message)
    }

    /// Write one program message as it is.
    fn write(&mut self, operation: &str, message: &str) -> Result<(), HwError> {
        self.out.clear();
        self.out.extend_from_slice(message.as_bytes());
        self.out.extend_from_slice(self.terminator.as_bytes());
        self.stats.messages += 1;
        tracing::trace!(device = %self.device, message, "scpi >");
        let out = std::mem::take(&mut self.out);
        let r = self.link.write_all(&out);
        self.out = out;
        if r.is_err() {
            self.sync = Step::Lost;
        }
        r.map_err(|e| self.transport(operation, e))
    }

    /// Drop buffered input and restart the link ([`ByteLink::restart`]).
    fn restart(&mut self, operation: &str) -> Result<(), HwError> {
        self.rx.clear();
        match self.link.restart() {
            Ok(()) => {
                self.sync = Step::Restarted;
                Ok(())
            }
            Err(e) => {
                tracing::warn!(device = %self.device, error = %e, "could not restart the link");
                Err(self.transport(operation, e))
            }
        }
    }

    /// Read more bytes into `rx`, or fail with a timeout at `deadline`.
    fn fill(&mut self, operation: &str, deadline: Instant) -> Result<(), HwError> {
        let now = Instant::now();
        if now >= deadline {
            return Err(HwError::Timeout {
                device: self.device.clone(),
                operation: operation.into(),
                after: self.timeout,
            });
        }
        let mut buf = [0u8; 8192];
        match self.link.read_some(&mut buf, deadline - now) {
            Ok(n) => {
                self.rx.extend_from_slice(&buf[..n]);
                Ok(())
            }
            Err(e) => Err(self.transport(operation, e)),
        }
    }

    /// Read one reply line into `reply` (terminator stripped; a trailing `\r` too).
    fn read_line(&mut self, operation: &str, deadline: Instant) -> Result<(), HwError> {
        let last = *self.terminator.as_bytes().last().unwrap_or(&b'\n');
        loop {
            if let Some(pos) = self.rx.iter().position(|&b| b == last) {
                self.reply.clear();
                self.reply.extend_from_slice(&self.rx[..pos]);
                self.rx.drain(..=pos);
                if self.reply.last() == Some(&b'\r') {
                    self.reply.pop();
                }
                // Replies are printable ASCII; anything else is line noise or a confused device.
                if self.reply.iter().any(|&b| !(0x20..0x7f).contains(&b)) {
                    let shown = String::from_utf8_lossy(&self.reply[..self.reply.len().min(64)]).into_owned();
                    self.reply.clear();
                    return Err(self.protocol(operation, format!("non-ASCII reply {shown:?}")));
                }
                return Ok(());
            }
            self.fill(operation, deadline)?;
        }
    }

    /// Read one IEEE 488.2 definite-length arbitrary block (`#<n><len><len bytes>`, then the
    /// terminator) into `reply`. IEEE 488.2-1992 §8.7.9 (definite length arbitrary block response
    /// data); B2900 SCPI Command Reference, chapter 1 "Data Output Format", p. 1-12 (`#<number of digits for byte
    /// length><byte length><byte>…<byte><terminator>`).
    fn read_block(&mut self, operation: &str, deadline: Instant) -> Result<(), HwError> {
        while self.rx.len() < 2 {
            self.fill(operation, deadline)?;
        }
        if self.rx[0] != b'#' {
            let shown = String::from_utf8_lossy(&self.rx[..self.rx.len().min(40)]).into_owned();
            self.rx.clear();
            return Err(self.protocol(operation, format!("expected a #-block, got {shown:?}")));
        }
        let digits = match self.rx[1] {
            d @ b'1'..=b'9' => usize::from(d - b'0'),
            b'0' => {
                self.rx.clear();
                return Err(self.protocol(
                    operation,
                    "indefinite-length block (#0) is not accepted: its end cannot be told from data",
                ));
            }
            other => {
                self.rx.clear();
                return Err(self.protocol(operation, format!("block header #{:?} has no length digit", other as char)));
            }
        };
        while self.rx.len() < 2 + digits {
            self.fill(operation, deadline)?;
        }
        let mut len = 0usize;
        for &b in &self.rx[2..2 + digits] {
            if !b.is_ascii_digit() {
                let shown = String::from_utf8_lossy(&self.rx[..2 + digits]).into_owned();
                self.rx.clear();
                return Err(self.protocol(operation, format!("block header {shown:?} is not a length")));
            }
            len = len * 10 + usize::from(b - b'0');
        }
        if len > MAX_BLOCK_BYTES {
            self.rx.clear();
            return Err(self.protocol(operation, format!("block of {len} bytes announced (at most {MAX_BLOCK_BYTES})")));
        }
        let start = 2 + digits;
        while self.rx.len() < start + len {
            self.fill(operation, deadline)?;
        }
        self.reply.clear();
        self.reply.extend_from_slice(&self.rx[start..start + len]);
        self.rx.drain(..start + len);
        // The response message terminator follows the block.
        let term = self.terminator.as_bytes();
        let last = *term.last().unwrap_or(&b'\n');
        loop {
            match self.rx.first() {
                Some(b'\r') if term.len() == 2 => {
                    self.rx.remove(0);
                }
                Some(&b) if b == last => {
                    self.rx.remove(0);
                    return Ok(());
                }
                Some(&b) => {
                    self.rx.clear();
                    return Err(self.protocol(
                        operation,
                        format!("{len}-byte block not followed by the terminator (byte 0x{b:02x}): length wrong?"),
                    ));
                }
                None => self.fill(operation, deadline)?,
            }
        }
    }

    fn query_as(&mut self, operation: &str, message: &str, kind: Reply) -> Result<(), HwError> {
        let mut last = None;
        for attempt in 0..=self.retries {
            if attempt > 0 {
                self.stats.retries += 1;
                tracing::warn!(device = %self.device, operation, attempt, error = ?last, "retrying");
            }
            // The previous attempt (or an earlier query) failed: its reply may still come.
            if self.sync != Step::In {
                match self.resync(operation) {
                    Ok(()) => {}
                    Err(e) if retryable(&e) => {
                        last = Some(e);
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            self.write(operation, message)?;
            let deadline = Instant::now() + self.timeout;
            let r = match kind {
                Reply::Line => self.read_line(operation, deadline),
                Reply::Block => self.read_block(operation, deadline),
            };
            match r {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.sync = Step::Lost;
                    if !retryable(&e) {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| self.protocol(operation, "no attempt made")))
    }

    /// An idempotent query answered by one line; retried per config. The line is in
    /// [`reply`](Self::reply).
    pub fn query(&mut self, operation: &str, message: &str) -> Result<&str, HwError> {
        self.query_as(operation, message, Reply::Line)?;
        Ok(self.reply())
    }

    /// An idempotent query answered by a definite-length block; retried per config. The payload
    /// is in [`block`](Self::block).
    pub fn query_block(&mut self, operation: &str, message: &str) -> Result<&[u8], HwError> {
        self.query_as(operation, message, Reply::Block)?;
        Ok(&self.reply)
    }

    /// Read the error queue with `:SYSTem:ERRor:NEXT?` until it reports `0` (2450 Reference
    /// Manual 2450-901-01, section 6, `:SYSTem:ERRor[:NEXT]?`; B2900 SCPI Command Reference,
    /// chapter 4, `:SYSTem:ERRor[:NEXT]?`, and chapter 5 "Error Messages": each entry is
    /// `<code>,"<message>"`, `0,"No error"` / `+0,"No error"` when empty). Entries a
    /// resynchronisation carried over come first (they are older). The first entry becomes
    /// [`HwError::Device`] with the instrument's own code and text; later ones are appended to
    /// the text.
    pub fn drain_errors(&mut self, operation: &str) -> Result<(), HwError> {
        let mut found = Vec::new();
        for _ in 0..MAX_ERRORS_DRAINED {
            let reply = self.query(operation, ":SYST:ERR:NEXT?")?.to_string();
            let (code, message) = parse_error_entry(&reply).ok_or_else(|| {
                self.protocol(operation, format!("error queue entry {reply:?} is not <code>,\"<text>\""))
            })?;
            if code == 0 {
                break;
            }
            tracing::error!(device = %self.device, code, message = %message, "instrument error queue");
            found.push((code, message));
        }
        // Taken after the queries: one of them may have resynchronised and carried entries over.
        let mut all = std::mem::take(&mut self.carried);
        all.extend(found);
        self.device_error(operation, all)
    }

    /// Report the entries a resynchronisation carried over from the error queue (see
    /// [`resync`](Self::resync)) as [`HwError::Device`], without a query: for a driver that
    /// reads the queue its own way (the in-house dialect's single `:SYST:ERR?`).
    pub fn carried_errors(&mut self, operation: &str) -> Result<(), HwError> {
        let all = std::mem::take(&mut self.carried);
        self.device_error(operation, all)
    }

    fn device_error(&self, operation: &str, entries: Vec<(i32, String)>) -> Result<(), HwError> {
        let mut it = entries.into_iter();
        let Some((code, mut message)) = it.next() else { return Ok(()) };
        let more: Vec<String> = it.map(|(c, m)| format!("{c} {m:?}")).collect();
        if !more.is_empty() {
            message = format!("{message} (then: {})", more.join(", "));
        }
        Err(HwError::Device { device: self.device.clone(), operation: operation.into(), code, message })
    }

    /// `*IDN?` (IEEE 488.2 §10.14): `<manufacturer>,<model>,<serial>,<firmware>`.
    pub fn identify(&mut self) -> Result<DeviceInfo, HwError> {
        let reply = self.query("identify", "*IDN?")?.to_string();
        let fields: Vec<&str> = reply.split(',').map(str::trim).collect();
        if fields.len() != 4 {
            return Err(self.protocol("identify", format!("*IDN? reply {reply:?} (expected 4 comma-separated fields)")));
        }
        Ok(DeviceInfo {
            name: self.device.clone(),
            vendor: fields[0].into(),
            model: fields[1].into(),
            serial: fields[2].into(),
            firmware: fields[3].into(),
        })
    }

    /// Bring the conversation back in step after a failed exchange (see the module
    /// documentation): restart the link, then write a fresh marker to `*ESE`, query it and discard
    /// every line until its answer; the same with a second marker; then `*ESE 0` and empty the
    /// error queue of the query errors the exchange caused (`drain_after_resync`). Queries do this
    /// on their own when needed; a no-op when the conversation is in step. On failure the
    /// conversation stays out of step and the next query tries again.
    pub fn resync(&mut self, operation: &str) -> Result<(), HwError> {
        if self.sync == Step::Lost {
            self.restart(operation)?;
        }
        if self.sync == Step::In {
            return Ok(());
        }
        let a = self.next_marker();
        let b = self.next_marker();
        let r = self.exchange_markers(operation, a, b);
        if r.is_err() {
            self.sync = Step::Lost;
        }
        r
    }

    /// The next marker value: 2…255 in turn, so a late answer to an earlier resynchronisation
    /// (`*ESE?` of a marker that timed out) is not taken for this one's.
    fn next_marker(&mut self) -> u8 {
        self.marker = if self.marker == u8::MAX { 2 } else { self.marker + 1 };
        self.marker
    }

    fn exchange_markers(&mut self, operation: &str, a: u8, b: u8) -> Result<(), HwError> {
        // One marker at a time, each read before the next is sent: an instrument that speaks
        // only when asked (USB-TMC, GPIB) discards unread output when a new message comes (IEEE
        // 488.2 §6.3.2.3, "query interrupted"), so `*ESE b` sent before `a` was read would
        // throw `a` away and the two would never come in a row.
        let mut discarded = self.await_marker(operation, a)?;
        // Everything sent before `*ESE a` has been read by now unless a stale line happened to
        // equal `a`; then the real `a` comes before `b` and is discarded with the rest.
        discarded += self.await_marker(operation, b)?;
        if discarded > 0 {
            tracing::warn!(device = %self.device, operation, discarded, "late replies discarded");
        }
        self.sync = Step::In;
        // Leave the register as nanoecr found it at power-on.
        self.write(operation, "*ESE 0")?;
        self.drain_after_resync(operation)
    }

    /// Empty the error queue after the markers, one `:SYST:ERR?` at a time until `0`. An
    /// instrument that speaks only when asked logged −410 "Query INTERRUPTED" when the first
    /// marker found the late reply unread (IEEE 488.2-1992 §6.3.2.3; SCPI-99 query errors −4xx
    /// set the QYE bit, IEEE 488.2 §11.5.1.1.7): nanoecr caused it, and left in the queue it
    /// would show in the operator's next `:SYST:ERR?` and be reported by our own next error
    /// check as the instrument's fault. Query errors are logged and counted
    /// ([`ScpiStats::resync_query_errors`]); any other entry is the instrument's own (a command
    /// sent while out of step, say) and is carried to the next [`drain_errors`](Self::drain_errors).
    ///
    /// Not `*CLS`, though both instruments document that it empties the queue (2450 Reference
    /// Manual 2450-901-01 appendix B, `*CLS`, p. B-2; B2900 SCPI Command Reference chapter 5,
    /// "Error Messages"): it would throw away those other entries unseen, and under the 2450's
    /// TSP command set it also clears enable registers. `:SYST:ERR?` — `:SYSTem:ERRor[:NEXT]?`
    /// with its optional node left out — is the form all three dialects take (the in-house one
    /// documents no `:NEXT`). Sent as one exchange each, without retries: a failure leaves the
    /// conversation out of step and the next query resynchronises again.
    fn drain_after_resync(&mut self, operation: &str) -> Result<(), HwError> {
        for _ in 0..MAX_ERRORS_DRAINED {
            self.write(operation, ":SYST:ERR?")?;
            let deadline = Instant::now() + self.timeout;
            self.read_line(operation, deadline)?;
            let Some((code, message)) = parse_error_entry(self.reply()) else {
                let shown = self.reply().to_string();
                return Err(self.protocol(operation, format!("error queue entry {shown:?} is not <code>,\"<text>\"")));
            };
            match code {
                0 => return Ok(()),
                -499..=-400 => {
                    self.stats.resync_query_errors += 1;
                    tracing::warn!(device = %self.device, operation, code, message = %message,
                        "query error left by the out-of-step exchange: drained from the error queue");
                }
                _ => {
                    tracing::error!(device = %self.device, operation, code, message = %message,
                        "instrument error queue (read while resynchronising; reported at the next error check)");
                    self.carried.push((code, message));
                }
            }
        }
        Ok(())
    }

    /// Write `*ESE m`, `*ESE?` and read lines until one answers `m` (within one timeout);
    /// returns how many lines came before it.
    fn await_marker(&mut self, operation: &str, m: u8) -> Result<usize, HwError> {
        self.write(operation, &format!("*ESE {m}"))?;
        self.write(operation, "*ESE?")?;
        let deadline = Instant::now() + self.timeout;
        let mut discarded = 0usize;
        loop {
            let line = self.next_raw_line(operation, deadline)?;
            // The value is the last word: NR1 with or without a sign (the B2900 family writes
            // `+16`), and after a header should an instrument echo one (`*ESE 186`).
            let value = std::str::from_utf8(&line)
                .ok()
                .and_then(|t| t.split_whitespace().last())
                .and_then(|w| w.trim_start_matches('+').parse::<u8>().ok());
            if value == Some(m) {
                return Ok(discarded);
            }
            // A late reply: not ours.
            discarded += 1;
        }
    }

    /// The next terminator-delimited line, as bytes (a late binary block may hold anything).
    fn next_raw_line(&mut self, operation: &str, deadline: Instant) -> Result<Vec<u8>, HwError> {
        let last = *self.terminator.as_bytes().last().unwrap_or(&b'\n');
        loop {
            if let Some(pos) = self.rx.iter().position(|&b| b == last) {
                let mut line: Vec<u8> = self.rx.drain(..=pos).collect();
                line.pop();
                return Ok(line);
            }
            self.fill(operation, deadline)?;
        }
    }

    /// The shut-down both real meter models share: `:ABOR` (stop the trigger model / the
    /// acquisition), `:OUTP OFF`, then `:OUTP?` must read 0 (2450 reference manual, section 6,
    /// `:OUTPut[:STATe]`; B2900 SCPI command reference, `:OUTPut[:STATe]`, which may answer `+0`).
    /// The output is switched off even when `:ABOR` fails; that failure is reported after it.
    pub fn abort_and_output_off(&mut self) -> Result<(), HwError> {
        // After an error these go out over a restarted link; `:OUTP?` resynchronises first.
        let abort = self.send("shut-down", ":ABOR");
        self.send("shut-down", ":OUTP OFF")?;
        abort?;
        let state = self.query("shut-down", ":OUTP?")?.trim().trim_start_matches('+').to_string();
        if !(state == "0" || state.eq_ignore_ascii_case("OFF")) {
            return Err(self.protocol("shut-down", format!("output reads {state:?} after :OUTP OFF")));
        }
        Ok(())
    }

    /// Best-effort output off for `Drop`: nothing to report to, so errors are ignored.
    pub fn output_off_on_drop(&mut self) {
        let _ = self.send("drop", ":ABOR");
        let _ = self.send("drop", ":OUTP OFF");
    }
}

/// Whether a failed attempt may be retried: a timeout, a garbled reply, a transport error that
/// is not the instrument ending the session.
fn retryable(e: &HwError) -> bool {
    match e {
        HwError::Timeout { .. } | HwError::Protocol { .. } => true,
        HwError::Transport { source, .. } => !session_ended(source),
        _ => false,
    }
}

/// The instrument ended the session (closed or reset the connection, device gone): not retried.
fn session_ended(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, NotConnected, UnexpectedEof};
    matches!(e.kind(), ConnectionAborted | ConnectionReset | BrokenPipe | NotConnected | UnexpectedEof)
}

/// Parse `<code>,"<message>"` (code with optional sign; message quoted, maybe unquoted).
pub fn parse_error_entry(reply: &str) -> Option<(i32, String)> {
    let (code, message) = reply.split_once(',')?;
    let code: i32 = code.trim().trim_start_matches('+').parse().ok()?;
    Some((code, message.trim().trim_matches('"').to_string()))
}

/// What a buffered meter needs to know about the run before it is armed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunPlan {
    /// Sample rate of the frame (trigger pulses or timer period), Hz.
    pub rate_hz: f64,
    /// Readings the buffer and trigger count are sized for
    /// ([`nanoecr_core::RunConfig::smu_readings_needed`]).
    pub readings: u64,
}

/// The smallest entry of `ranges` (ascending) that is ≥ `value`, else the largest.
pub fn range_for(ranges: &[f64], value: f64) -> f64 {
    let v = value.abs();
    ranges.iter().copied().find(|&r| r >= v * (1.0 - 1e-9)).unwrap_or_else(|| ranges.last().copied().unwrap_or(v))
}

/// How often a buffered meter is polled at `rate_hz`: every 100 samples' worth of time, between
/// 1 ms and 20 ms (see docs/hardware.md, "Per-tick cost"). Two queries per poll instead of two
/// per tick: at 1 kHz a poll every 20 ms moves 20 readings per fetch and costs 100 round trips a
/// second instead of 2000.
pub fn poll_interval(rate_hz: f64) -> Duration {
    let s = (100.0 / rate_hz).clamp(0.001, 0.020);
    Duration::from_secs_f64(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_entries_parse_with_or_without_sign() {
        assert_eq!(parse_error_entry("0,\"No error\""), Some((0, "No error".into())));
        assert_eq!(parse_error_entry("+0,\"No error\""), Some((0, "No error".into())));
        assert_eq!(parse_error_entry("-113,\"Undefined header\""), Some((-113, "Undefined header".into())));
        assert_eq!(parse_error_entry("garbage"), None);
    }

    #[test]
    fn ranges_pick_the_smallest_that_holds_the_limit() {
        let r = [1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3];
        assert_eq!(range_for(&r, 1e-4), 1e-4);
        assert_eq!(range_for(&r, 1.01e-4), 1e-3);
        assert_eq!(range_for(&r, 5e-9), 1e-8);
        assert_eq!(range_for(&r, 5.0), 1e-3);
    }

    #[test]
    fn poll_interval_bounds() {
        assert_eq!(poll_interval(1000.0), Duration::from_millis(20));
        assert_eq!(poll_interval(10_000.0), Duration::from_millis(10));
        assert_eq!(poll_interval(100_000.0), Duration::from_millis(1));
    }
}
