//! Byte transports for SCPI instruments: a raw TCP socket (LAN, port 5025), the Linux USB-TMC
//! character device (`/dev/usbtmcN`, no VISA library) and a serial line. [`crate::scpi`] speaks
//! SCPI over any of them through the [`ByteLink`] trait.
//!
//! All three are blocking with a bounded wait: the control thread issues one short query at a
//! time and waits for its reply, as the Modbus frame backend does.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use nanoecr_core::config::hardware::{Parity, SmuConfig, SmuTransport};
use serialport::{ClearBuffer, SerialPort, TTYPort};

/// A byte stream to an instrument.
pub trait ByteLink: Send {
    /// Write all of `bytes` (one complete message).
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    /// Read what has arrived, waiting at most `timeout` for the first byte. `Ok(0)`: nothing
    /// arrived in time. A link the peer closed is an error (`ConnectionAborted`), never `Ok(0)`.
    fn read_some(&mut self, buf: &mut [u8], timeout: Duration) -> std::io::Result<usize>;
    /// Start afresh after a timeout or a garbled reply, so a late answer cannot pair with the
    /// next query: TCP reconnects, USB-TMC reopens the device, serial discards its input.
    fn restart(&mut self) -> std::io::Result<()>;
    /// `tcp 10.0.0.5:5025`, `usbtmc /dev/usbtmc0`, `serial /dev/ttyUSB1`: for error messages.
    fn describe(&self) -> &str;
}

/// Open the link `cfg` describes (connected; nothing sent yet).
pub fn open(cfg: &SmuConfig) -> std::io::Result<Box<dyn ByteLink>> {
    let timeout = Duration::from_millis(cfg.timeout_ms);
    Ok(match cfg.transport {
        SmuTransport::Tcp => Box::new(TcpLink::connect(cfg.address.as_deref().unwrap_or_default(), cfg.port, timeout)?),
        SmuTransport::Usbtmc => Box::new(UsbtmcLink::open(cfg.device_path().unwrap_or_default())?),
        SmuTransport::Serial => {
            Box::new(SerialLink::open(cfg.device_path().unwrap_or_default(), cfg.baud, cfg.parity)?)
        }
    })
}

fn closed(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, format!("{what} closed by the instrument"))
}

/// Raw SCPI over TCP ("LAN socket", port 5025 on the 2450 and the B2900).
#[derive(Debug)]
pub struct TcpLink {
    host: String,
    port: u16,
    connect_timeout: Duration,
    stream: TcpStream,
    read_timeout: Option<Duration>,
    label: String,
}

impl TcpLink {
    /// Connect to `host:port` within `connect_timeout`, with `TCP_NODELAY`.
    pub fn connect(host: &str, port: u16, connect_timeout: Duration) -> std::io::Result<Self> {
        let stream = Self::dial(host, port, connect_timeout)?;
        Ok(Self {
            host: host.to_string(),
            port,
            connect_timeout,
            stream,
            read_timeout: None,
            label: format!("tcp {host}:{port}"),
        })
    }

    fn dial(host: &str, port: u16, timeout: Duration) -> std::io::Result<TcpStream> {
        let mut last = None;
        for addr in (host, port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    // One short query per poll: Nagle's algorithm would hold it for up to 40 ms.
                    s.set_nodelay(true)?;
                    return Ok(s);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address")))
    }
}

impl ByteLink for TcpLink {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    fn read_some(&mut self, buf: &mut [u8], timeout: Duration) -> std::io::Result<usize> {
        let t = timeout.max(Duration::from_micros(1));
        // Only touch the socket option when it changes: one syscall saved per read.
        if self.read_timeout != Some(t) {
            self.stream.set_read_timeout(Some(t))?;
            self.read_timeout = Some(t);
        }
        match self.stream.read(buf) {
            Ok(0) => Err(closed("connection")),
            Ok(n) => Ok(n),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => Ok(0),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }

    fn restart(&mut self) -> std::io::Result<()> {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        self.stream = Self::dial(&self.host, self.port, self.connect_timeout)?;
        self.read_timeout = None;
        Ok(())
    }

    fn describe(&self) -> &str {
        &self.label
    }
}

/// USB-TMC through the Linux `usbtmc` kernel driver: `/dev/usbtmcN` is a character device on
/// which one `write` sends one message (the driver adds the USBTMC header and EOM) and one `read`
/// asks the instrument for its answer (REQUEST_DEV_DEP_MSG_IN) and waits for it.
///
/// The read blocks in the driver: `poll(2)` cannot be used to bound it, because the driver's
/// poll reports readable data only for its asynchronous read API, never for a plain `read`
/// (drivers/usb/class/usbtmc.c, `usbtmc_poll`). A silent instrument is therefore reported after
/// the driver's USB timeout (5 s by default) rather than `timeout_ms`: setting it takes the
/// `USBTMC_IOCTL_SET_TIMEOUT` ioctl, i.e. unsafe code, which this workspace denies.
#[derive(Debug)]
pub struct UsbtmcLink {
    path: String,
    file: std::fs::File,
    label: String,
}

impl UsbtmcLink {
    /// Open the character device read-write.
    pub fn open(path: &str) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Self { path: path.to_string(), file, label: format!("usbtmc {path}") })
    }
}

impl ByteLink for UsbtmcLink {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all(bytes)
    }

    fn read_some(&mut self, buf: &mut [u8], _timeout: Duration) -> std::io::Result<usize> {
        match self.file.read(buf) {
            Ok(0) => Err(closed("device")),
            Ok(n) => Ok(n),
            // The driver's own USB timeout (ETIMEDOUT): nothing arrived, as for our timeout.
            Err(e) if e.raw_os_error() == Some(nix::libc::ETIMEDOUT) => Ok(0),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }

    fn restart(&mut self) -> std::io::Result<()> {
        self.file = std::fs::OpenOptions::new().read(true).write(true).open(&self.path)?;
        Ok(())
    }

    fn describe(&self) -> &str {
        &self.label
    }
}

/// A serial line (`serialport`, 8 data bits, 1 stop bit, no flow control, exclusive).
pub struct SerialLink {
    port: TTYPort,
    label: String,
}

impl std::fmt::Debug for SerialLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialLink").field("label", &self.label).finish_non_exhaustive()
    }
}

impl SerialLink {
    /// Open `path` at `baud` with `parity`.
    pub fn open(path: &str, baud: u32, parity: Parity) -> std::io::Result<Self> {
        let parity = match parity {
            Parity::None => serialport::Parity::None,
            Parity::Even => serialport::Parity::Even,
            Parity::Odd => serialport::Parity::Odd,
        };
        let port = serialport::new(path, baud)
            .parity(parity)
            .data_bits(serialport::DataBits::Eight)
            .stop_bits(serialport::StopBits::One)
            .flow_control(serialport::FlowControl::None)
            .timeout(Duration::from_millis(100))
            .open_native()?;
        Ok(Self { port, label: format!("serial {path}") })
    }
}

impl ByteLink for SerialLink {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.port.write_all(bytes)?;
        self.port.flush()
    }

    fn read_some(&mut self, buf: &mut [u8], timeout: Duration) -> std::io::Result<usize> {
        self.port.set_timeout(timeout.max(Duration::from_millis(1)))?;
        match self.port.read(buf) {
            Ok(n) => Ok(n),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted) => Ok(0),
            Err(e) => Err(e),
        }
    }

    fn restart(&mut self) -> std::io::Result<()> {
        self.port.clear(ClearBuffer::Input).map_err(std::io::Error::from)
    }

    fn describe(&self) -> &str {
        &self.label
    }
}
