//! The Modbus side: a tokio-modbus server [`Service`] over the `Frame` registers, plus the
//! fault injection that has to happen on the wire ([`FaultyStream`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_modbus::server::Service;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};

use crate::frame::{lock, SharedFrame};

/// Faults injected into the Modbus dialogue.
#[derive(Debug, Clone, Default)]
pub struct BusFaults {
    /// Delay before every reply.
    pub latency: Duration,
    /// Close the connection instead of answering request N+1 (once).
    pub drop_after: Option<u64>,
    /// Answer function `.0` with exception code `.1` from request `.2` on (1-based count).
    pub exception: Option<(u8, u8, u64)>,
    /// Replace the reply to request N with garbage of the same length (TCP only).
    pub garbage_after: Option<u64>,
    /// Send only half of the reply to request N, then close (TCP only).
    pub truncate_after: Option<u64>,
    /// `(FC, N, delay)`: the reply to the first function-FC request from request N on leaves
    /// `delay` late (once). The request takes effect at once, only its reply waits, and the bus
    /// answers nothing else meanwhile on that connection (a serial line: requests queue behind it).
    pub delay_reply: Option<(u8, u64, Duration)>,
}

/// What the wire wrapper must do to the next reply it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WireFault {
    Drop,
    Garbage,
    Truncate,
}

/// State shared by every connection of one server.
#[derive(Debug)]
pub struct Bus {
    frame: SharedFrame,
    faults: BusFaults,
    requests: AtomicU64,
    pending: Mutex<Option<WireFault>>,
    /// RTU: answer only this unit id (Modbus RTU slaves ignore frames for others). TCP: None.
    unit_id: Option<u8>,
    /// Whether `faults.delay_reply` has fired.
    delay_fired: AtomicBool,
    /// The requests whose replies `faults.delay_reply` held back (ground truth).
    delayed: Mutex<Vec<String>>,
}

impl Bus {
    /// A bus over `frame`.
    pub fn new(frame: SharedFrame, faults: BusFaults, unit_id: Option<u8>) -> Arc<Self> {
        Arc::new(Self {
            frame,
            faults,
            requests: AtomicU64::new(0),
            pending: Mutex::new(None),
            unit_id,
            delay_fired: AtomicBool::new(false),
            delayed: Mutex::new(Vec::new()),
        })
    }

    /// The requests whose replies `--delay-reply` held back, as `request N: <request>`.
    pub fn delayed_requests(&self) -> Vec<String> {
        self.delayed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The delay to apply to request `n` of function `fc`, recording it (once).
    fn take_delay(&self, n: u64, fc: u8, req: &Request<'_>) -> Option<Duration> {
        let (f, from, delay) = self.faults.delay_reply?;
        if f != fc || n < from || self.delay_fired.swap(true, Ordering::Relaxed) {
            return None;
        }
        self.delayed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(format!("request {n}: {req:?}"));
        Some(delay)
    }

    fn take_pending(&self) -> Option<WireFault> {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }

    fn set_pending(&self, f: WireFault) {
        *self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(f);
    }

    fn answer(&self, req: Request<'_>) -> Result<Response, ExceptionCode> {
        let mut f = lock(&self.frame);
        match req {
            Request::ReadInputRegisters(a, n) => f.read_input(a, n).map(Response::ReadInputRegisters),
            Request::ReadHoldingRegisters(a, n) => f.read_holding(a, n).map(Response::ReadHoldingRegisters),
            Request::WriteSingleRegister(a, v) => {
                f.write_holding(a, &[v]).map(|()| Response::WriteSingleRegister(a, v))
            }
            Request::WriteMultipleRegisters(a, words) => {
                let n = words.len() as u16;
                f.write_holding(a, &words).map(|()| Response::WriteMultipleRegisters(a, n))
            }
            Request::ReadWriteMultipleRegisters(ra, rn, wa, words) => {
                // Function 23: the write happens first, then the read (Modbus spec 6.17).
                f.write_holding(wa, &words)?;
                f.read_holding(ra, rn).map(Response::ReadWriteMultipleRegisters)
            }
            _ => Err(ExceptionCode::IllegalFunction),
        }
    }
}

/// The per-connection service handed to tokio-modbus.
#[derive(Debug, Clone)]
pub struct FrameService(pub Arc<Bus>);

type Reply = Result<Option<Response>, ExceptionCode>;

impl Service for FrameService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Reply> + Send>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let bus = self.0.clone();
        Box::pin(async move {
            if bus.unit_id.is_some_and(|u| u != req.slave) {
                return Ok(None);
            }
            let n = bus.requests.fetch_add(1, Ordering::Relaxed) + 1;
            let fc = req.request.function_code().value();
            let faults = &bus.faults;
            if faults.drop_after.is_some_and(|d| n == d + 1) {
                bus.set_pending(WireFault::Drop);
            }
            if faults.garbage_after == Some(n) {
                bus.set_pending(WireFault::Garbage);
            }
            if faults.truncate_after == Some(n) {
                bus.set_pending(WireFault::Truncate);
            }
            let late = bus.take_delay(n, fc, &req.request);
            let result = match faults.exception {
                Some((f, code, from)) if f == fc && n >= from => Err(ExceptionCode::new(code)),
                _ => bus.answer(req.request),
            };
            if !faults.latency.is_zero() {
                tokio::time::sleep(faults.latency).await;
            }
            if let Some(late) = late {
                tokio::time::sleep(late).await;
            }
            result.map(Some)
        })
    }
}

/// A TCP stream that applies pending wire faults to the next reply it writes.
#[derive(Debug)]
pub struct FaultyStream<T> {
    inner: T,
    bus: Arc<Bus>,
    broken: bool,
}

impl<T> FaultyStream<T> {
    /// Wrap a connection.
    pub fn new(inner: T, bus: Arc<Bus>) -> Self {
        Self { inner, bus, broken: false }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FaultyStream<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FaultyStream<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.broken {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionAborted, "fault injection: closed")));
        }
        match self.bus.take_pending() {
            None => Pin::new(&mut self.inner).poll_write(cx, buf),
            Some(WireFault::Drop) => {
                self.broken = true;
                Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionAborted, "fault injection: drop")))
            }
            Some(WireFault::Garbage) => {
                // Same length and an intact MBAP length field, so the client reads exactly one
                // frame — with a bad protocol id and a scrambled PDU: undecodable, not short.
                let mut junk = buf.to_vec();
                if junk.len() >= 7 {
                    junk[2] = 0xBE;
                    junk[3] = 0xEF;
                    junk[7..].iter_mut().for_each(|b| *b ^= 0x5A);
                } else {
                    junk.iter_mut().for_each(|b| *b ^= 0x5A);
                }
                Pin::new(&mut self.inner).poll_write(cx, &junk)
            }
            Some(WireFault::Truncate) => {
                self.broken = true;
                let half = (buf.len() / 2).max(1);
                Pin::new(&mut self.inner).poll_write(cx, &buf[..half])
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
