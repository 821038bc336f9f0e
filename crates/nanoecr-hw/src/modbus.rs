//! The Modbus load-frame backend ([`ModbusLoadFrame`]), over TCP or RTU, speaking the register
//! map of docs/register-map.md (protocol version 1). Written from that page, independently of
//! the firmware shim that implements the device side.
//!
//! The [`LoadFrame`] trait is synchronous and called from the real-time control thread, so the
//! backend owns a current-thread tokio runtime and `block_on`s one request at a time under a
//! per-request timeout. Nothing runs on that runtime between calls: no background task competes
//! with the control thread.
//!
//! Error policy (the fault table in docs/hardware.md):
//! - a Modbus exception is the device's final word → [`HwError::Device`] with the exception code,
//!   never retried;
//! - a timeout, a transport error or an undecodable, short or mismatched reply drops the
//!   connection (the byte stream may be out of step) and is retried up to `retries` times over a
//!   fresh connection; after that it surfaces as [`HwError::Timeout`], [`HwError::Transport`] or
//!   [`HwError::Protocol`];
//! - FIFO reads are idempotent (the acknowledgement travels with the read), so a retry never
//!   loses samples, and a sequence gap can only be a FIFO overflow → [`HwError::Stream`];
//! - no new sample for longer than the stall window while armed → [`HwError::Stream`]
//!   ("sample counter frozen").
//!
//! Out of step (docs/hardware.md, "Out of step, Modbus"). A reply that comes after its timeout is still
//! on its way when the host retries. Over TCP the retry goes over a new connection, so the late
//! reply reaches the old one, and tokio-modbus also checks the MBAP transaction id. Modbus RTU
//! frames carry no transaction id (Modbus over Serial Line V1.02 §2.5.1), tokio-modbus matches
//! an RTU reply by unit id and function code only, and reopening a serial port cannot refuse
//! bytes still on the wire: the late reply would be read as the retry's, and the retry's as the
//! next request's — a late echo of one write taken for the echo of the next, hiding that
//! write's exception. So, over RTU, the first attempt after a failed exchange first waits until
//! the line has been silent for the reply timeout (at least t3.5, §2.5.1.1), or until the one
//! reply the device owed has come whole and t3.5 has passed after it, discarding every byte that
//! arrives meanwhile ([`LinkStats::discarded_bytes`]); every new RTU connection, the first
//! included, waits the same way (a line can hold stale bytes when it is opened); and every
//! reply is checked against its request on both transports: a write echo must carry the
//! request's address and value or quantity (Modbus Application Protocol V1.1b3 §6.6, §6.12), a
//! read its register count (§6.4, §6.17), and a FIFO read must start at the sequence number it
//! acknowledged. A mismatch is a [`HwError::Protocol`], retried the same way.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use nanoecr_core::config::hardware::{LoadFrameConfig, Parity, Transport};
use nanoecr_core::Segment;
use tokio_modbus::client::{Client, Context};
use tokio_modbus::{Request, Response, Slave};

use crate::{DeviceInfo, FrameLimits, FrameReading, HwError, LoadFrame};

/// Register addresses of protocol version 1 (docs/register-map.md).
pub mod regs {
    /// Input: identification block (vendor, model, serial, firmware as 8-register ASCII;
    /// protocol version; FIFO capacity; samples per block; registers per sample).
    pub const IDENT: u16 = 0;
    /// Length of the identification block, registers.
    pub const IDENT_LEN: u16 = 36;
    /// Input: status register (bits `ST_*`).
    pub const STATUS: u16 = 100;
    /// Input/holding: start of the FIFO window.
    pub const FIFO_WINDOW: u16 = 200;
    /// Window header: count, fill, status, faults.
    pub const WINDOW_HEADER: u16 = 4;
    /// Registers per sample: seq u32, time µs u32, load f32, displacement f32.
    pub const WORDS_PER_SAMPLE: u16 = 8;
    /// Samples per window read: (125 − 4) / 8 rounded down.
    pub const MAX_BLOCK: u16 = 15;
    /// Holding: mode (0 idle, 1 load control, 2 displacement hold, 3 safe unload).
    pub const MODE: u16 = 0;
    /// Holding: enable.
    pub const ENABLE: u16 = 1;
    /// Holding: load command f32 (µN) + segment u16.
    pub const COMMAND: u16 = 2;
    /// Holding: max load f32 (µN), then max displacement f32 (nm).
    pub const LIMITS: u16 = 5;
    /// Holding: sample rate u32, Hz.
    pub const RATE: u16 = 9;
    /// Holding: control (write 1 = reset FIFO, counter, faults).
    pub const CONTROL: u16 = 12;
    /// Holding: FIFO acknowledgement u32 (next sequence number wanted).
    pub const FIFO_ACK: u16 = 40;
    /// The protocol version this backend speaks.
    pub const PROTOCOL_VERSION: u16 = 1;
    /// Mode values.
    pub const MODE_IDLE: u16 = 0;
    /// Load control.
    pub const MODE_LOAD: u16 = 1;
    /// Safe unload.
    pub const MODE_SAFE_UNLOAD: u16 = 3;
    /// Status bit: safe unload in progress.
    pub const ST_SAFE_UNLOAD: u16 = 4;
    /// Fault bits.
    pub const F_OVERLOAD: u16 = 1;
    /// Over-displacement.
    pub const F_OVER_DISP: u16 = 2;
    /// Actuator fault.
    pub const F_ACTUATOR: u16 = 4;
    /// FIFO overflow.
    pub const F_FIFO_OVERFLOW: u16 = 8;
}

/// FIFO blocks read per `acquire` at most, so one call stays bounded in time.
const MAX_BLOCKS_PER_ACQUIRE: usize = 8;
/// How long `make_safe` waits for the controller's safe unload to finish.
const SAFE_UNLOAD_WAIT: Duration = Duration::from_secs(2);

/// Counters a test or an operator may want to see.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Requests sent (retries included).
    pub requests: u64,
    /// Requests repeated after a transient failure.
    pub retries: u64,
    /// Connections opened (the first included).
    pub connects: u64,
    /// RTU: waits for a silent line before a retry (see the module documentation).
    pub resyncs: u64,
    /// RTU: those of them that ended on the late reply itself (one complete frame, then t3.5
    /// of silence) rather than after a whole quiet window.
    pub waits_ended_by_frame: u64,
    /// RTU: bytes discarded before the first request over a new connection: stale bytes found
    /// on opening the line, late replies, or the rest of a garbled one.
    pub discarded_bytes: u64,
}

/// How a wait for a silent RTU line ended.
struct Silence {
    discarded: u64,
    /// False if the line never went quiet within the wait's bound.
    quiet_reached: bool,
    /// The wait after a failed exchange ended on one complete frame (the reply owed).
    owed_reply_came: bool,
}

/// CRC-16 of an RTU frame (Modbus over Serial Line V1.02 §6.2.2: polynomial 0xA001 reflected,
/// initial value 0xFFFF; sent low byte first).
fn rtu_crc(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0xFFFF, |crc, &b| {
        (0..8).fold(crc ^ u16::from(b), |c, _| if c & 1 != 0 { (c >> 1) ^ 0xA001 } else { c >> 1 })
    })
}

/// Whether `bytes` are exactly one RTU frame from `unit`: its address first, a CRC over the rest
/// that checks (§2.5.1, §6.2.2), and at least 5 bytes, the shortest reply (an exception: address,
/// function, exception code, CRC).
fn is_one_rtu_frame(bytes: &[u8], unit: u8) -> bool {
    let Some((body, crc)) = bytes.split_last_chunk::<2>() else { return false };
    bytes.len() >= 5 && body[0] == unit && rtu_crc(body) == u16::from_le_bytes(*crc)
}

/// One request, owned, so it can be re-sent on a retry.
#[derive(Debug, Clone)]
enum Op {
    ReadInput(u16, u16),
    WriteSingle(u16, u16),
    WriteMultiple(u16, [u16; 4], usize),
    ReadWrite(u16, u16, u16, [u16; 2]),
}

impl Op {
    fn request(&self) -> Request<'_> {
        match self {
            Self::ReadInput(a, n) => Request::ReadInputRegisters(*a, *n),
            Self::WriteSingle(a, v) => Request::WriteSingleRegister(*a, *v),
            Self::WriteMultiple(a, w, n) => Request::WriteMultipleRegisters(*a, Cow::Borrowed(&w[..*n])),
            Self::ReadWrite(ra, rn, wa, w) => Request::ReadWriteMultipleRegisters(*ra, *rn, *wa, Cow::Borrowed(&w[..])),
        }
    }

    /// Words a correct reply carries (reads) — checked, because a short reply must be an
    /// error, not a panic or a misparse.
    fn expected_words(&self) -> usize {
        match self {
            Self::ReadInput(_, n) | Self::ReadWrite(_, n, _, _) => usize::from(*n),
            _ => 0,
        }
    }
}

/// The registers of a reply, once it is shown to answer `op`: a reply to another request — a
/// late one — must never pass for this one's (see the module documentation).
fn reply_words(op: &Op, response: Response) -> Result<Vec<u16>, String> {
    let mismatch = |what: String| format!("reply answers another request: {what}");
    let words = match (op, response) {
        (Op::ReadInput(..), Response::ReadInputRegisters(w))
        | (Op::ReadWrite(..), Response::ReadWriteMultipleRegisters(w)) => w,
        // Function 06's reply echoes the request (Modbus Application Protocol V1.1b3 §6.6).
        (&Op::WriteSingle(a, v), Response::WriteSingleRegister(ra, rv)) => {
            if (ra, rv) != (a, v) {
                return Err(mismatch(format!("echo of {rv} at {ra}, {v} was written at {a}")));
            }
            Vec::new()
        }
        // Function 16's reply echoes the starting address and the quantity (§6.12).
        (&Op::WriteMultiple(a, _, n), Response::WriteMultipleRegisters(ra, rn)) => {
            if (ra, usize::from(rn)) != (a, n) {
                return Err(mismatch(format!("echo of {rn} registers at {ra}, {n} were written at {a}")));
            }
            Vec::new()
        }
        (_, other) => return Err(format!("unexpected response {other:?}")),
    };
    // A read's byte count is 2 × the quantity asked for (§6.4, §6.17).
    if words.len() != op.expected_words() {
        return Err(format!("{} registers instead of {}", words.len(), op.expected_words()));
    }
    // A FIFO read acknowledges every sample before `ack`, so a window with samples starts at
    // `ack` (or after it if the FIFO overflowed: a gap `acquire` reports). One that starts before
    // answers an earlier read, whose acknowledgement was smaller.
    if let Op::ReadWrite(regs::FIFO_WINDOW, _, regs::FIFO_ACK, ack) = op {
        let (ack, o) = (u32_of(ack), usize::from(regs::WINDOW_HEADER));
        if words.first().is_some_and(|&k| k > 0) && words.len() >= o + 2 {
            let first = u32_of(&words[o..o + 2]);
            if (first.wrapping_sub(ack) as i32) < 0 {
                return Err(mismatch(format!("window starts at sample {first}, before the ack {ack}")));
            }
        }
    }
    Ok(words)
}

fn f32_words(v: f32) -> [u16; 2] {
    let b = v.to_bits();
    [(b >> 16) as u16, b as u16]
}

fn u32_of(w: &[u16]) -> u32 {
    (u32::from(w[0]) << 16) | u32::from(w[1])
}

fn ascii_of(words: &[u16]) -> String {
    let bytes: Vec<u8> = words.iter().flat_map(|w| [(w >> 8) as u8, *w as u8]).take_while(|&b| b != 0).collect();
    String::from_utf8_lossy(&bytes).trim().to_string()
}

fn fault_names(bits: u16) -> String {
    let names = [
        (regs::F_OVERLOAD, "overload"),
        (regs::F_OVER_DISP, "over-displacement"),
        (regs::F_ACTUATOR, "actuator fault"),
        (regs::F_FIFO_OVERFLOW, "FIFO overflow"),
    ];
    let v: Vec<&str> = names.iter().filter(|(b, _)| bits & b != 0).map(|(_, n)| *n).collect();
    v.join(", ")
}

/// A load-frame controller over Modbus TCP or RTU.
pub struct ModbusLoadFrame {
    /// Logical name plus endpoint, used in every error.
    device: String,
    cfg: LoadFrameConfig,
    rt: tokio::runtime::Runtime,
    ctx: Option<Context>,
    timeout: Duration,
    /// Whether an exchange failed since the line was last known quiet: over RTU, a late reply
    /// may still come, so the next connection's wait for silence may end on it.
    resync: bool,
    rate_hz: f64,
    armed: bool,
    prepared: bool,
    next_seq: u64,
    last_time_us32: u32,
    time_epochs: u64,
    last_sample_at: Instant,
    stall_after: Duration,
    stats: LinkStats,
}

impl std::fmt::Debug for ModbusLoadFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModbusLoadFrame")
            .field("device", &self.device)
            .field("armed", &self.armed)
            .field("next_seq", &self.next_seq)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl ModbusLoadFrame {
    /// Connect to the controller described by `cfg` under the logical name `name`, for a run at
    /// `rate_hz`. Fails if the first connection cannot be made (after the configured retries).
    pub fn connect(name: &str, cfg: &LoadFrameConfig, rate_hz: f64) -> Result<Self, HwError> {
        let endpoint = match cfg.transport {
            Transport::Tcp => format!("modbus tcp {}:{}", cfg.address, cfg.port),
            Transport::Rtu => format!("modbus rtu {}", cfg.serial_path.as_deref().unwrap_or("?")),
        };
        let device = format!("{name} ({endpoint})");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|source| {
            HwError::Transport { device: device.clone(), operation: "starting the I/O runtime".into(), source }
        })?;
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let mut me = Self {
            device,
            cfg: cfg.clone(),
            rt,
            ctx: None,
            timeout,
            resync: false,
            rate_hz,
            armed: false,
            prepared: false,
            next_seq: 0,
            last_time_us32: 0,
            time_epochs: 0,
            last_sample_at: Instant::now(),
            // A stalled counter shows as no sample for this long: long enough for scheduling
            // noise and a few retried requests, short enough to stop a run within half a second.
            stall_after: (timeout * 4).max(Duration::from_millis(250)),
            stats: LinkStats::default(),
        };
        let mut last = None;
        for _ in 0..=cfg.retries {
            match me.open() {
                Ok(()) => return Ok(me),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| me.protocol("connecting", "no attempt made")))
    }

    /// Link counters (requests, retries, connections).
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// The logical name and endpoint this backend reports in errors.
    pub fn device(&self) -> &str {
        &self.device
    }

    fn protocol(&self, operation: &str, message: impl Into<String>) -> HwError {
        HwError::Protocol { device: self.device.clone(), operation: operation.into(), message: message.into() }
    }

    fn open(&mut self) -> Result<(), HwError> {
        let slave = Slave(self.cfg.unit_id);
        let device = self.device.clone();
        let timeout = self.timeout;
        let transport = |source: std::io::Error| HwError::Transport {
            device: device.clone(),
            operation: "connecting".into(),
            source,
        };
        let ctx = match self.cfg.transport {
            Transport::Tcp => {
                let target = (self.cfg.address.clone(), self.cfg.port);
                let connect = async move {
                    let stream = tokio::net::TcpStream::connect(target).await?;
                    // One small request per tick: Nagle's algorithm would add up to 40 ms.
                    stream.set_nodelay(true)?;
                    Ok::<_, std::io::Error>(tokio_modbus::client::tcp::attach_slave(stream, slave))
                };
                match self.rt.block_on(async move { tokio::time::timeout(timeout, connect).await }) {
                    Ok(r) => r.map_err(transport)?,
                    Err(_) => {
                        return Err(HwError::Timeout {
                            device: self.device.clone(),
                            operation: "connecting".into(),
                            after: timeout,
                        })
                    }
                }
            }
            Transport::Rtu => {
                let path = self.cfg.serial_path.clone().unwrap_or_default();
                let parity = match self.cfg.parity {
                    Parity::None => tokio_serial::Parity::None,
                    Parity::Even => tokio_serial::Parity::Even,
                    Parity::Odd => tokio_serial::Parity::Odd,
                };
                let builder = tokio_serial::new(path, self.cfg.baud)
                    .parity(parity)
                    .data_bits(tokio_serial::DataBits::Eight)
                    .stop_bits(tokio_serial::StopBits::One);
                let mut stream = {
                    // Opening registers the fd with the reactor, so it must happen inside the runtime.
                    let _enter = self.rt.enter();
                    tokio_serial::SerialStream::open(&builder).map_err(|e| transport(e.into()))?
                };
                self.wait_for_silence(&mut stream)?;
                tokio_modbus::client::rtu::attach_slave(stream, slave)
            }
        };
        self.resync = false;
        self.stats.connects += 1;
        self.ctx = Some(ctx);
        Ok(())
    }

    /// t3.5, the silence that ends an RTU frame (Modbus over Serial Line V1.02 §2.5.1.1: 3.5
    /// characters of 11 bits, fixed at 1.75 ms above 19 200 baud).
    fn t3_5(&self) -> Duration {
        if self.cfg.baud > 19_200 {
            Duration::from_micros(1750)
        } else {
            Duration::from_secs_f64(3.5 * 11.0 / f64::from(self.cfg.baud.max(1)))
        }
    }

    /// How long an RTU line must stay silent, with nothing received, before the first request
    /// over a new connection: the reply timeout, the longest a device is expected to take, so a
    /// reply up to one timeout later than that is caught; never less than t3.5.
    fn quiet_window(&self) -> Duration {
        self.timeout.max(self.t3_5())
    }

    /// Read and discard until the line is quiet, before the first request over a new RTU
    /// connection. A serial line may hold bytes when it is opened (a session that died
    /// mid-reply, a controller's power-up chatter, a USB adapter's buffer; Linux keeps a tty's
    /// pending input across opens), and after a failed exchange whatever arrives answers a
    /// request the host has given up on: either would otherwise be parsed as the next reply.
    /// Reading rather than `tcflush(TCIFLUSH)` discards the same pending bytes, and also the
    /// tail of a frame still on the wire, and counts them ([`LinkStats::discarded_bytes`]).
    ///
    /// Quiet means [`Self::quiet_window`] of silence — except after a failed exchange once the
    /// bytes discarded form exactly one complete frame from our unit (CRC-valid) followed by
    /// t3.5 of silence: that is the one reply the device owed (a Modbus slave answers one
    /// request at a time, and the host had one outstanding), so nothing more is due and the
    /// wait ends there instead of a whole window later ([`LinkStats::waits_ended_by_frame`]).
    /// Silence alone, however long in units of t3.5, cannot end the wait early: a device still
    /// working on the request it timed out says nothing until it answers, and that late answer
    /// is what the wait exists to catch; only the reply timeout bounds how long it may take.
    /// A line that does not go quiet within four windows (one late reply and its silence fit
    /// in two) is a [`HwError::Protocol`] (noise, or another master on the bus).
    fn wait_for_silence(&mut self, stream: &mut tokio_serial::SerialStream) -> Result<(), HwError> {
        use tokio::io::AsyncReadExt;
        let quiet = self.quiet_window();
        let gap = self.t3_5();
        let after_failure = self.resync;
        let unit = self.cfg.unit_id;
        let give_up = quiet * 4;
        let started = Instant::now();
        let read = self.rt.block_on(async {
            let mut buf = [0u8; 256];
            // The bytes discarded so far, while they may still be one frame (256 bytes at most,
            // §2.5.1); `None` once they cannot.
            let mut frame = [0u8; 256];
            let mut frame_len = Some(0usize);
            let mut discarded = 0u64;
            loop {
                let owed_reply_came = after_failure && frame_len.is_some_and(|n| is_one_rtu_frame(&frame[..n], unit));
                let wait = if owed_reply_came { gap } else { quiet };
                let n = match tokio::time::timeout(wait, stream.read(&mut buf)).await {
                    Err(_) => return Ok(Silence { discarded, quiet_reached: true, owed_reply_came }),
                    // A serial port does not end; a closed pseudo-terminal would spin here.
                    Ok(Ok(0)) => return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
                    Ok(Ok(n)) => n,
                    Ok(Err(e)) => return Err(e),
                };
                discarded += n as u64;
                frame_len = frame_len.and_then(|len| {
                    let end = len + n;
                    frame.get_mut(len..end)?.copy_from_slice(&buf[..n]);
                    Some(end)
                });
                if started.elapsed() > give_up {
                    return Ok(Silence { discarded, quiet_reached: false, owed_reply_came: false });
                }
            }
        });
        let silence = read.map_err(|source| HwError::Transport {
            device: self.device.clone(),
            operation: "waiting for a silent line".into(),
            source,
        })?;
        let discarded = silence.discarded;
        if after_failure {
            self.stats.resyncs += 1;
            self.stats.waits_ended_by_frame += u64::from(silence.owed_reply_came);
        }
        self.stats.discarded_bytes += discarded;
        if discarded > 0 {
            let why = if after_failure { "a late reply before retrying" } else { "stale bytes on opening the line" };
            tracing::warn!(device = %self.device, discarded, "discarded {why}");
        }
        if !silence.quiet_reached {
            return Err(self.protocol(
                "waiting for a silent line",
                format!("{discarded} bytes in {:?} and no {quiet:?} of silence", started.elapsed()),
            ));
        }
        Ok(())
    }

    /// One request with timeout, reconnection and retries per config.
    fn call(&mut self, operation: &str, op: Op) -> Result<Vec<u16>, HwError> {
        let mut last: Option<HwError> = None;
        for attempt in 0..=self.cfg.retries {
            if attempt > 0 {
                self.stats.retries += 1;
                tracing::warn!(device = %self.device, operation, attempt, error = ?last, "retrying");
            }
            if self.ctx.is_none() {
                if let Err(e) = self.open() {
                    last = Some(e);
                    continue;
                }
            }
            let Some(ctx) = self.ctx.as_mut() else { continue };
            self.stats.requests += 1;
            let timeout = self.timeout;
            // The timer must be created inside the runtime, hence the async block.
            let outcome = self.rt.block_on(async { tokio::time::timeout(timeout, ctx.call(op.request())).await });
            let err = match outcome {
                Ok(Ok(Ok(response))) => match self.words_of(operation, &op, response) {
                    Ok(w) => return Ok(w),
                    Err(e) => e,
                },
                Ok(Ok(Err(exception))) => {
                    return Err(HwError::Device {
                        device: self.device.clone(),
                        operation: operation.into(),
                        code: i32::from(u8::from(exception)),
                        message: format!("Modbus exception {exception}"),
                    })
                }
                Ok(Err(tokio_modbus::Error::Protocol(p))) => self.protocol(operation, p.to_string()),
                Ok(Err(tokio_modbus::Error::Transport(io))) => self.classify_io(operation, io),
                Err(_) => {
                    HwError::Timeout { device: self.device.clone(), operation: operation.into(), after: self.timeout }
                }
            };
            // The byte stream may be out of step (half a reply, or a late one, still in flight):
            // start afresh, over RTU after a silent line.
            self.ctx = None;
            self.resync = true;
            last = Some(err);
        }
        Err(last.unwrap_or_else(|| self.protocol(operation, "no attempt made")))
    }

    fn classify_io(&self, operation: &str, io: std::io::Error) -> HwError {
        use std::io::ErrorKind;
        // tokio-modbus reports undecodable frames as InvalidData, and a stream that ends inside a
        // frame as "bytes remaining on stream": both are bad replies, not link failures.
        let garbled = io.kind() == ErrorKind::InvalidData || io.to_string().contains("bytes remaining");
        if garbled {
            self.protocol(operation, format!("undecodable or truncated reply: {io}"))
        } else {
            HwError::Transport { device: self.device.clone(), operation: operation.into(), source: io }
        }
    }

    /// The reply's registers, once it is shown to answer `op` ([`reply_words`]).
    fn words_of(&self, operation: &str, op: &Op, response: Response) -> Result<Vec<u16>, HwError> {
        reply_words(op, response).map_err(|message| self.protocol(operation, message))
    }

    fn write_multiple(&mut self, operation: &str, addr: u16, words: &[u16]) -> Result<(), HwError> {
        let mut buf = [0u16; 4];
        buf[..words.len()].copy_from_slice(words);
        self.call(operation, Op::WriteMultiple(addr, buf, words.len())).map(drop)
    }

    fn write_single(&mut self, operation: &str, addr: u16, value: u16) -> Result<(), HwError> {
        self.call(operation, Op::WriteSingle(addr, value)).map(drop)
    }

    /// Extend a 32-bit sequence number to 64 bits around the expected one.
    fn extend_seq(&self, seq32: u32) -> u64 {
        let delta = i64::from(seq32.wrapping_sub(self.next_seq as u32) as i32);
        (self.next_seq as i64 + delta).max(0) as u64
    }

    fn time_s(&mut self, time_us32: u32) -> f64 {
        if time_us32 < self.last_time_us32 {
            self.time_epochs += 1;
        }
        self.last_time_us32 = time_us32;
        ((self.time_epochs << 32) + u64::from(time_us32)) as f64 * 1e-6
    }
}

impl LoadFrame for ModbusLoadFrame {
    fn identify(&mut self) -> Result<DeviceInfo, HwError> {
        let w = self.call("identify", Op::ReadInput(regs::IDENT, regs::IDENT_LEN))?;
        if w[32] != regs::PROTOCOL_VERSION {
            return Err(self.protocol("identify", format!("protocol version {} (this host speaks 1)", w[32])));
        }
        if w[34] == 0 || w[35] != regs::WORDS_PER_SAMPLE {
            return Err(self.protocol("identify", format!("FIFO layout {} samples × {} registers", w[34], w[35])));
        }
        Ok(DeviceInfo {
            name: self.device.clone(),
            vendor: ascii_of(&w[0..8]),
            model: ascii_of(&w[8..16]),
            serial: ascii_of(&w[16..24]),
            firmware: ascii_of(&w[24..32]),
        })
    }

    fn prepare(&mut self, limits: &FrameLimits) -> Result<(), HwError> {
        let rate = self.rate_hz.round();
        if !(1.0..=100_000.0).contains(&rate) {
            return Err(self.protocol("arm", format!("sample rate {} Hz is not representable", self.rate_hz)));
        }
        let rate = rate as u32;
        self.write_single("arm: idle", regs::MODE, regs::MODE_IDLE)?;
        self.write_multiple("arm: sample rate", regs::RATE, &[(rate >> 16) as u16, rate as u16])?;
        let [a, b] = f32_words(limits.max_load_un as f32);
        let [c, d] = f32_words(limits.max_displacement_nm as f32);
        self.write_multiple("arm: limits", regs::LIMITS, &[a, b, c, d])?;
        self.prepared = true;
        Ok(())
    }

    fn arm(&mut self, limits: &FrameLimits) -> Result<(), HwError> {
        // Prepared just before (the meter was armed in between): the reset is the next request,
        // so no sample-clock pulse reaches the meter between its arming and sample 0 but for
        // one request's latency.
        if !std::mem::take(&mut self.prepared) {
            self.prepare(limits)?;
            self.prepared = false;
        }
        self.write_single("arm: reset", regs::CONTROL, 1)?;
        self.next_seq = 0;
        self.last_time_us32 = 0;
        self.time_epochs = 0;
        self.write_multiple("arm: zero command", regs::COMMAND, &[0, 0, u16::from(Segment::Settle.code())])?;
        self.write_multiple("arm: load control", regs::MODE, &[regs::MODE_LOAD, 1])?;
        self.armed = true;
        self.last_sample_at = Instant::now();
        Ok(())
    }

    fn command(&mut self, command_un: f64, segment: Segment) -> Result<(), HwError> {
        let [hi, lo] = f32_words(command_un as f32);
        self.write_multiple("command", regs::COMMAND, &[hi, lo, u16::from(segment.code())])
    }

    fn acquire(&mut self, out: &mut [FrameReading]) -> Result<usize, HwError> {
        let mut n = 0;
        for _ in 0..MAX_BLOCKS_PER_ACQUIRE {
            let room = (out.len() - n).min(usize::from(regs::MAX_BLOCK));
            if room == 0 {
                break;
            }
            let quantity = regs::WINDOW_HEADER + regs::WORDS_PER_SAMPLE * room as u16;
            let ack = self.next_seq as u32;
            let op = Op::ReadWrite(regs::FIFO_WINDOW, quantity, regs::FIFO_ACK, [(ack >> 16) as u16, ack as u16]);
            let w = self.call("FIFO read", op)?;
            let (k, fill, faults) = (usize::from(w[0]), usize::from(w[1]), w[3]);
            if k > room {
                return Err(self.protocol("FIFO read", format!("{k} samples announced, {room} requested")));
            }
            let hard = faults & (regs::F_OVERLOAD | regs::F_OVER_DISP | regs::F_ACTUATOR);
            if hard != 0 {
                return Err(HwError::Device {
                    device: self.device.clone(),
                    operation: "FIFO read".into(),
                    code: i32::from(faults),
                    message: format!("controller fault: {}", fault_names(faults)),
                });
            }
            for i in 0..k {
                let o = usize::from(regs::WINDOW_HEADER) + i * usize::from(regs::WORDS_PER_SAMPLE);
                let s = &w[o..o + usize::from(regs::WORDS_PER_SAMPLE)];
                let seq = self.extend_seq(u32_of(&s[0..2]));
                if seq < self.next_seq {
                    continue; // already delivered (cannot happen with the ack, harmless if it does)
                }
                if seq > self.next_seq {
                    return Err(HwError::Stream {
                        device: self.device.clone(),
                        message: format!(
                            "sample sequence gap: expected {}, got {seq} ({} lost; faults: {})",
                            self.next_seq,
                            seq - self.next_seq,
                            fault_names(faults)
                        ),
                    });
                }
                let time_s = self.time_s(u32_of(&s[2..4]));
                let load = f32::from_bits(u32_of(&s[4..6]));
                let disp = f32::from_bits(u32_of(&s[6..8]));
                if !(load.is_finite() && disp.is_finite()) {
                    return Err(self.protocol("FIFO read", format!("non-finite sample at seq {seq}")));
                }
                out[n] = FrameReading { seq, time_s, load_un: f64::from(load), disp_nm: f64::from(disp) };
                n += 1;
                self.next_seq += 1;
            }
            if fill <= k {
                break;
            }
        }
        if n > 0 {
            self.last_sample_at = Instant::now();
        } else if self.armed && self.last_sample_at.elapsed() > self.stall_after {
            return Err(HwError::Stream {
                device: self.device.clone(),
                message: format!(
                    "sample counter frozen: no new sample for {:?} (next expected seq {})",
                    self.last_sample_at.elapsed(),
                    self.next_seq
                ),
            });
        }
        Ok(n)
    }

    fn make_safe(&mut self) -> Result<(), HwError> {
        self.armed = false;
        // Single-register writes only: a device refusing function 16 must still be made safe.
        let first = self.write_single("make safe: safe unload", regs::MODE, regs::MODE_SAFE_UNLOAD).err();
        if first.is_none() {
            let deadline = Instant::now() + SAFE_UNLOAD_WAIT;
            // Bounded poll: the controller ramps down by itself and clears the bit when done.
            while Instant::now() < deadline {
                match self.call("make safe: status", Op::ReadInput(regs::STATUS, 1)) {
                    Ok(w) if w[0] & regs::ST_SAFE_UNLOAD == 0 => break,
                    Ok(_) => std::thread::sleep(Duration::from_millis(5)),
                    Err(_) => break,
                }
            }
        }
        let second = self.write_single("make safe: disable", regs::ENABLE, 0).err();
        let third = self.write_single("make safe: idle", regs::MODE, regs::MODE_IDLE).err();
        match first.or(second).or(third) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rtu_frame_is_told_by_its_unit_and_crc() {
        // CRC-16/MODBUS check value of "123456789" (the catalogued parameters of §6.2.2's CRC).
        assert_eq!(rtu_crc(b"123456789"), 0x4B37);
        // Function 16's echo of 2 registers at 9 from unit 1, as hil-tests/python/late_reply.py
        // builds it from the specifications (docs/hardware.md: `01 10 00 09 00 02 91 ca`).
        let echo = [0x01, 0x10, 0x00, 0x09, 0x00, 0x02, 0x91, 0xCA];
        assert!(is_one_rtu_frame(&echo, 1));
        assert!(!is_one_rtu_frame(&echo, 2), "another unit's frame");
        assert!(!is_one_rtu_frame(&echo[..7], 1), "a frame cut short");
        assert!(!is_one_rtu_frame(&echo[1..], 1), "a frame's tail");
        let mut two = echo.to_vec();
        two.extend_from_slice(&echo);
        assert!(!is_one_rtu_frame(&two, 1), "two frames");
        let mut bad = echo;
        bad[3] = 0x0A;
        assert!(!is_one_rtu_frame(&bad, 1), "a corrupted frame");
        assert!(!is_one_rtu_frame(&[], 1));
    }

    /// A FIFO read of one sample (header + 8 registers) acknowledging `ack`, and a reply whose
    /// window holds `k` samples from `first` on.
    fn fifo(ack: u32, k: u16, first: u32) -> (Op, Response) {
        let quantity = regs::WINDOW_HEADER + regs::WORDS_PER_SAMPLE;
        let op = Op::ReadWrite(regs::FIFO_WINDOW, quantity, regs::FIFO_ACK, [(ack >> 16) as u16, ack as u16]);
        let mut w = vec![0u16; usize::from(quantity)];
        w[0] = k;
        w[4] = (first >> 16) as u16;
        w[5] = first as u16;
        (op, Response::ReadWriteMultipleRegisters(w))
    }

    #[test]
    fn a_write_echo_must_carry_the_written_address_and_value() {
        let op = Op::WriteSingle(regs::MODE, regs::MODE_SAFE_UNLOAD);
        assert_eq!(reply_words(&op, Response::WriteSingleRegister(0, 3)), Ok(Vec::new()));
        // The echo of the write before (enable ← 0) or of another value at the same address.
        assert!(reply_words(&op, Response::WriteSingleRegister(1, 0)).is_err());
        assert!(reply_words(&op, Response::WriteSingleRegister(0, 0)).is_err());
        // A reply of another function altogether.
        assert!(reply_words(&op, Response::WriteMultipleRegisters(0, 1)).is_err());
    }

    #[test]
    fn a_write_multiple_echo_must_carry_the_written_address_and_quantity() {
        let op = Op::WriteMultiple(regs::LIMITS, [1, 2, 3, 4], 4);
        assert_eq!(reply_words(&op, Response::WriteMultipleRegisters(5, 4)), Ok(Vec::new()));
        // The sample rate's echo (2 registers at 9), as a late reply brought it before the fix.
        assert!(reply_words(&op, Response::WriteMultipleRegisters(9, 2)).is_err());
        assert!(reply_words(&op, Response::WriteMultipleRegisters(5, 2)).is_err());
    }

    #[test]
    fn a_read_must_carry_the_quantity_asked_for() {
        let op = Op::ReadInput(regs::STATUS, 1);
        assert_eq!(reply_words(&op, Response::ReadInputRegisters(vec![4])), Ok(vec![4]));
        assert!(reply_words(&op, Response::ReadInputRegisters(vec![4, 0])).is_err());
        assert!(reply_words(&op, Response::ReadHoldingRegisters(vec![4])).is_err());
    }

    #[test]
    fn a_fifo_window_starting_before_its_ack_answers_an_earlier_read() {
        let (op, r) = fifo(300, 1, 300);
        assert!(reply_words(&op, r).is_ok());
        // Overflowed past the ack: accepted here, reported as a gap by `acquire`.
        let (op, r) = fifo(300, 1, 310);
        assert!(reply_words(&op, r).is_ok());
        // Empty windows carry no sample to tell by.
        let (op, r) = fifo(300, 0, 0);
        assert!(reply_words(&op, r).is_ok());
        let (op, r) = fifo(300, 1, 299);
        let e = reply_words(&op, r).expect_err("a window from before the ack is stale");
        assert!(e.contains("before the ack 300"), "{e}");
        // Across the 32-bit wrap of the sequence number.
        let (op, r) = fifo(2, 1, u32::MAX);
        assert!(reply_words(&op, r).is_err());
        let (op, r) = fifo(u32::MAX, 1, 0);
        assert!(reply_words(&op, r).is_ok());
    }
}
