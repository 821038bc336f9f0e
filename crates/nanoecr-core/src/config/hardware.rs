//! `[hardware]`: which rig the control loop drives. `sim` (default) is the simulated rig;
//! `devices` talks to a load-frame controller over Modbus (`[hardware.loadframe]`) and a
//! source-measure unit over a serial port (`[hardware.smu]`); see docs/hardware.md and
//! docs/register-map.md.
//!
//! Both device sections have defaults so a `sim` config never needs them; their addresses are
//! only required (and checked) when `backend = "devices"`.

use serde::{Deserialize, Serialize};

use super::error::{ConfigError, ConfigErrorKind};

/// Which backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// The simulated rig (nanoecr-sim physics in-process).
    #[default]
    Sim,
    /// Real device protocols (Modbus load frame + SCPI source-measure unit).
    Devices,
}

/// How the load-frame controller is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// Modbus TCP (`address` + `port`).
    #[default]
    Tcp,
    /// Modbus RTU over a serial line (`serial_path` + `baud`).
    Rtu,
}

/// Serial parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parity {
    /// No parity bit.
    #[default]
    None,
    /// Even parity.
    Even,
    /// Odd parity.
    Odd,
}

/// Line terminator of the SCPI dialogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Terminator {
    /// `\n` (the SCPI/IEEE 488.2 default).
    #[default]
    Lf,
    /// `\r\n`.
    Crlf,
    /// `\r`.
    Cr,
}

impl Terminator {
    /// The bytes sent after each command (and expected after each reply).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lf => "\n",
            Self::Crlf => "\r\n",
            Self::Cr => "\r",
        }
    }
}

/// `[hardware.loadframe]`: the Modbus load-frame controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadFrameConfig {
    /// `tcp` or `rtu`.
    #[serde(default)]
    pub transport: Transport,
    /// TCP: host name or IP address.
    #[serde(default = "default_address")]
    pub address: String,
    /// TCP: port (502 is Modbus's registered port).
    #[serde(default = "default_port")]
    pub port: u16,
    /// RTU: serial device path (e.g. `/dev/ttyUSB0`).
    #[serde(default)]
    pub serial_path: Option<String>,
    /// RTU: baud rate, bit/s.
    #[serde(default = "default_rtu_baud")]
    pub baud: u32,
    /// RTU: parity.
    #[serde(default)]
    pub parity: Parity,
    /// Modbus unit (slave) id, 1 to 247.
    #[serde(default = "default_unit_id")]
    pub unit_id: u8,
    /// Timeout of one request, ms.
    #[serde(default = "default_frame_timeout_ms")]
    pub timeout_ms: u64,
    /// Retries of a request after a timeout, a transport error or a garbled reply (0 = none).
    #[serde(default = "default_retries")]
    pub retries: u32,
}

impl Default for LoadFrameConfig {
    fn default() -> Self {
        Self {
            transport: Transport::Tcp,
            address: default_address(),
            port: default_port(),
            serial_path: None,
            baud: default_rtu_baud(),
            parity: Parity::None,
            unit_id: default_unit_id(),
            timeout_ms: default_frame_timeout_ms(),
            retries: default_retries(),
        }
    }
}

/// Which source-measure unit (and so which SCPI dialect) is on the other end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SmuModel {
    /// Keithley 2450 in its native SCPI command set (reference manual 2450-901-01).
    #[serde(rename = "keithley-2450")]
    Keithley2450,
    /// Keysight (Agilent) B2900 series: B2901A/B2902A/B2911A/B2912A and the B-models.
    #[serde(rename = "keysight-b2900")]
    KeysightB2900,
    /// The in-house dialect of the repository's own firmware shim (docs/hardware.md).
    #[serde(rename = "nanoecr-scpi")]
    NanoecrScpi,
}

impl SmuModel {
    /// The name as written in a config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keithley2450 => "keithley-2450",
            Self::KeysightB2900 => "keysight-b2900",
            Self::NanoecrScpi => "nanoecr-scpi",
        }
    }

    /// Highest number of readings the instrument's buffer holds for one run (`None`: the
    /// dialect streams and has no run-length limit).
    pub fn max_readings(self) -> Option<u64> {
        match self {
            // Reference manual 2450-901-01, "Reading buffers": defbuffer1 holds up to
            // 1 000 000 standard readings.
            Self::Keithley2450 => Some(1_000_000),
            // B2900 SCPI Command Reference, :TRACe:POINts and :TRIGger:COUNt: 1 to 100 000.
            Self::KeysightB2900 => Some(100_000),
            Self::NanoecrScpi => None,
        }
    }
}

/// How the source-measure unit is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmuTransport {
    /// Raw SCPI socket over LAN (`address` + `port`, 5025 by default).
    #[default]
    Tcp,
    /// USB-TMC through the Linux kernel driver's character device (`device = "/dev/usbtmc0"`).
    Usbtmc,
    /// Serial line (`device` or `serial_path`, `baud`, `parity`).
    Serial,
}

impl SmuTransport {
    /// The name as written in a config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Usbtmc => "usbtmc",
            Self::Serial => "serial",
        }
    }
}

/// What paces the source-measure unit's readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmuTrigger {
    /// The load frame's sample clock on the meter's trigger input (2450 rear digital I/O line 1,
    /// B2900 EXT1): one reading per frame sample.
    #[default]
    External,
    /// The meter's own timer at the sample period (fallback when no trigger wire is fitted;
    /// the run file records it and the worst timestamp misalignment).
    Timer,
}

impl SmuTrigger {
    /// The name as written in a config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::External => "external",
            Self::Timer => "timer",
        }
    }
}

/// `[hardware.smu]`: the source-measure unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmuConfig {
    /// `keithley-2450`, `keysight-b2900` or `nanoecr-scpi`; required for `backend = "devices"`.
    #[serde(default)]
    pub model: Option<SmuModel>,
    /// `tcp` (default), `usbtmc` or `serial`.
    #[serde(default)]
    pub transport: SmuTransport,
    /// TCP: host name or IP address; required for `transport = "tcp"`.
    #[serde(default)]
    pub address: Option<String>,
    /// TCP: port (5025 is the raw SCPI socket of both the 2450 and the B2900).
    #[serde(default = "default_smu_port")]
    pub port: u16,
    /// USB-TMC: the character device (`/dev/usbtmc0`); serial: the tty (same as `serial_path`).
    #[serde(default)]
    pub device: Option<String>,
    /// Serial: the tty path (e.g. `/dev/ttyUSB1`), accepted as before; `device` is the same.
    #[serde(default)]
    pub serial_path: Option<String>,
    /// Serial: baud rate, bit/s.
    #[serde(default = "default_smu_baud")]
    pub baud: u32,
    /// Serial: parity.
    #[serde(default)]
    pub parity: Parity,
    /// Line terminator: `lf`, `crlf` or `cr`.
    #[serde(default)]
    pub terminator: Terminator,
    /// Timeout of one query, ms.
    #[serde(default = "default_smu_timeout_ms")]
    pub timeout_ms: u64,
    /// Retries of an idempotent query after a timeout or a garbled reply (0 = none).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// What paces the readings: `external` (frame sample clock, default) or `timer`.
    #[serde(default)]
    pub trigger: SmuTrigger,
    /// Integration time of one current reading, power-line cycles (0.01 to 10; default 0.01).
    #[serde(default = "default_nplc")]
    pub nplc: f64,
    /// B2900: fetch readings as IEEE 754 binary blocks (`:FORM REAL,64`, default) or as ASCII.
    #[serde(default = "default_true")]
    pub binary: bool,
}

impl Default for SmuConfig {
    fn default() -> Self {
        Self {
            model: None,
            transport: SmuTransport::Tcp,
            address: None,
            port: default_smu_port(),
            device: None,
            serial_path: None,
            baud: default_smu_baud(),
            parity: Parity::None,
            terminator: Terminator::Lf,
            timeout_ms: default_smu_timeout_ms(),
            retries: default_retries(),
            trigger: SmuTrigger::External,
            nplc: default_nplc(),
            binary: true,
        }
    }
}

impl SmuConfig {
    /// The character device or tty of a `usbtmc` or `serial` link (`device`, else `serial_path`).
    pub fn device_path(&self) -> Option<&str> {
        self.device.as_deref().or(self.serial_path.as_deref())
    }
}

/// Longest power-line period the NPLC check assumes, s (50 Hz mains: one cycle is 20 ms).
pub const LINE_PERIOD_S: f64 = 1.0 / 50.0;

fn default_address() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    502
}
fn default_rtu_baud() -> u32 {
    921_600
}
fn default_smu_baud() -> u32 {
    115_200
}
fn default_unit_id() -> u8 {
    1
}
fn default_frame_timeout_ms() -> u64 {
    100
}
fn default_smu_port() -> u16 {
    5025
}
fn default_nplc() -> f64 {
    0.01
}
fn default_true() -> bool {
    true
}
fn default_smu_timeout_ms() -> u64 {
    250
}
fn default_retries() -> u32 {
    2
}

/// Baud rates accepted (the usual UART set up to 4 Mbit/s).
const BAUDS: &[u32] =
    &[9_600, 19_200, 38_400, 57_600, 115_200, 230_400, 460_800, 500_000, 921_600, 1_000_000, 2_000_000, 4_000_000];

/// The `[hardware]` section.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareConfig {
    /// The rig's name (default `"default"`): one master (a `nanoecr run` or a `nanoecrd` run) at
    /// a time per name; see [`HardwareConfig::rig_name`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rig: Option<String>,
    /// `sim` or `devices`.
    #[serde(default)]
    pub backend: Backend,
    /// `[hardware.loadframe]` (used by `devices`).
    #[serde(default)]
    pub loadframe: LoadFrameConfig,
    /// `[hardware.smu]` (used by `devices`).
    #[serde(default)]
    pub smu: SmuConfig,
}

fn out_of_range(key: &str, message: &str, value: impl std::fmt::Display, expected: &str) -> ConfigError {
    ConfigError::new(ConfigErrorKind::OutOfRange, key, message).value(value).expected(expected)
}

fn check_baud(key: &str, baud: u32) -> Result<(), ConfigError> {
    if BAUDS.contains(&baud) {
        Ok(())
    } else {
        let list: Vec<String> = BAUDS.iter().map(u32::to_string).collect();
        Err(out_of_range(key, "unsupported baud rate", baud, &format!("one of {}", list.join(", "))))
    }
}

fn check_timeout(key: &str, ms: u64) -> Result<(), ConfigError> {
    if (1..=60_000).contains(&ms) {
        Ok(())
    } else {
        Err(out_of_range(key, "timeout is out of range", ms, "1 to 60000 ms"))
    }
}

fn check_retries(key: &str, n: u32) -> Result<(), ConfigError> {
    if n <= 10 {
        Ok(())
    } else {
        Err(out_of_range(key, "too many retries", n, "0 to 10"))
    }
}

fn required_path(key: &str, path: &Option<String>, what: &str) -> Result<(), ConfigError> {
    match path {
        Some(p) if !p.trim().is_empty() => Ok(()),
        Some(_) => {
            Err(out_of_range(key, &format!("{what} must not be empty"), "\"\"", "a device path such as /dev/ttyUSB0"))
        }
        None => Err(ConfigError::new(
            ConfigErrorKind::Missing,
            key,
            format!("{what} is required with backend = \"devices\""),
        )
        .expected("a device path such as /dev/ttyUSB0")),
    }
}

impl HardwareConfig {
    /// Check the section. The value ranges are always checked; addresses and paths only when
    /// `backend = "devices"`, so simulated configs need no device sections at all.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let lf = &self.loadframe;
        if !(1..=247).contains(&lf.unit_id) {
            return Err(out_of_range(
                "hardware.loadframe.unit_id",
                "Modbus unit id is out of range",
                lf.unit_id,
                "1 to 247",
            ));
        }
        check_timeout("hardware.loadframe.timeout_ms", lf.timeout_ms)?;
        check_retries("hardware.loadframe.retries", lf.retries)?;
        check_baud("hardware.loadframe.baud", lf.baud)?;
        let smu = &self.smu;
        check_timeout("hardware.smu.timeout_ms", smu.timeout_ms)?;
        check_retries("hardware.smu.retries", smu.retries)?;
        check_baud("hardware.smu.baud", smu.baud)?;
        if self.backend == Backend::Devices {
            match lf.transport {
                Transport::Tcp => {
                    if lf.address.trim().is_empty() {
                        return Err(out_of_range(
                            "hardware.loadframe.address",
                            "address must not be empty",
                            "\"\"",
                            "a host name or IP address",
                        ));
                    }
                    if lf.port == 0 {
                        return Err(out_of_range(
                            "hardware.loadframe.port",
                            "port 0 is not a device port",
                            0,
                            "1 to 65535",
                        ));
                    }
                }
                Transport::Rtu => {
                    required_path("hardware.loadframe.serial_path", &lf.serial_path, "the RTU serial path")?
                }
            }
            self.validate_smu_link()?;
        }
        Ok(())
    }

    fn validate_smu_link(&self) -> Result<(), ConfigError> {
        let smu = &self.smu;
        if smu.model.is_none() {
            return Err(ConfigError::new(
                ConfigErrorKind::Missing,
                "hardware.smu.model",
                "the source-measure unit's model is required with backend = \"devices\"",
            )
            .expected("\"keithley-2450\", \"keysight-b2900\" or \"nanoecr-scpi\""));
        }
        match smu.transport {
            SmuTransport::Tcp => {
                match smu.address.as_deref() {
                    Some(a) if !a.trim().is_empty() => {}
                    Some(_) => {
                        return Err(out_of_range(
                            "hardware.smu.address",
                            "address must not be empty",
                            "\"\"",
                            "a host name or IP address",
                        ))
                    }
                    None => {
                        let hint = if smu.device_path().is_some() {
                            " (a device path is set: add transport = \"serial\" or \"usbtmc\")"
                        } else {
                            ""
                        };
                        return Err(ConfigError::new(
                            ConfigErrorKind::Missing,
                            "hardware.smu.address",
                            format!("the instrument's address is required with transport = \"tcp\"{hint}"),
                        )
                        .expected("a host name or IP address such as 192.168.0.50"));
                    }
                }
                if smu.port == 0 {
                    return Err(out_of_range("hardware.smu.port", "port 0 is not a device port", 0, "1 to 65535"));
                }
            }
            SmuTransport::Usbtmc => required_path("hardware.smu.device", &smu.device, "the USB-TMC device")?,
            SmuTransport::Serial => {
                if let (Some(d), Some(p)) = (&smu.device, &smu.serial_path) {
                    if d != p {
                        return Err(ConfigError::new(
                            ConfigErrorKind::Inconsistent,
                            "hardware.smu.device",
                            format!("device and serial_path name different ttys ({d:?}, {p:?})"),
                        )
                        .expected("one of device or serial_path"));
                    }
                }
                let path = smu.device.clone().or_else(|| smu.serial_path.clone());
                let key = if smu.device.is_some() { "hardware.smu.device" } else { "hardware.smu.serial_path" };
                required_path(key, &path, "the source-measure unit's serial path")?;
            }
        }
        Ok(())
    }

    /// Checks that need the run: the meter's integration time must fit in one sample period
    /// (at 50 Hz mains, the longer cycle) and the run must fit in the meter's reading buffer.
    /// Only for `backend = "devices"` with a real instrument model.
    pub fn validate_for_run(&self, rate_hz: f64, run_samples: u64) -> Result<(), ConfigError> {
        let smu = &self.smu;
        if !(smu.nplc.is_finite() && (0.01..=10.0).contains(&smu.nplc)) {
            return Err(out_of_range(
                "hardware.smu.nplc",
                "integration time is outside the instruments' range",
                smu.nplc,
                "0.01 to 10 PLC",
            ));
        }
        if self.backend != Backend::Devices {
            return Ok(());
        }
        let Some(model) = smu.model.filter(|m| *m != SmuModel::NanoecrScpi) else { return Ok(()) };
        let aperture_s = smu.nplc * LINE_PERIOD_S;
        let period_s = 1.0 / rate_hz;
        if aperture_s > period_s {
            return Err(ConfigError::new(
                ConfigErrorKind::Inconsistent,
                "hardware.smu.nplc",
                format!(
                    "{} PLC integrates for {:.3} ms at 50 Hz mains, longer than the {:.3} ms sample period at \
                     acquisition.rate_hz = {rate_hz} Hz: one reading per sample cannot keep up",
                    smu.nplc,
                    aperture_s * 1e3,
                    period_s * 1e3
                ),
            )
            .value(smu.nplc)
            .expected(format!("at most {:.4} PLC (or a lower rate)", period_s / LINE_PERIOD_S)));
        }
        if let Some(max) = model.max_readings() {
            if run_samples > max {
                return Err(ConfigError::new(
                    ConfigErrorKind::Inconsistent,
                    "hardware.smu.model",
                    format!(
                        "the run needs up to {run_samples} readings at {rate_hz} Hz, more than the {} buffer holds",
                        model.as_str()
                    ),
                )
                .value(format!("\"{}\"", model.as_str()))
                .expected(format!("a run of at most {max} samples (shorter program or lower rate)")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices(extra: &str) -> Result<HardwareConfig, String> {
        let text = format!("backend = \"devices\"\n{extra}");
        let hw: HardwareConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
        hw.validate().map_err(|e| e.to_string())?;
        Ok(hw)
    }

    #[test]
    fn sim_needs_no_device_sections() {
        let hw: HardwareConfig = toml::from_str("backend = \"sim\"").expect("parses");
        hw.validate().expect("valid");
        assert_eq!(hw.loadframe.port, 502);
        assert_eq!(hw.smu.terminator.as_str(), "\n");
    }

    #[test]
    fn devices_need_the_smu_model_and_path() {
        let e = devices("").expect_err("smu model missing");
        assert!(e.contains("hardware.smu.model") && e.contains("keithley-2450"), "{e}");
        let e = devices("[smu]\nmodel = \"nanoecr-scpi\"\ntransport = \"serial\"").expect_err("smu path missing");
        assert!(e.contains("hardware.smu.serial_path"), "{e}");
    }

    #[test]
    fn rtu_needs_a_serial_path_and_a_known_baud() {
        let e = devices("[loadframe]\ntransport = \"rtu\"\n[smu]\nmodel = \"nanoecr-scpi\"\ntransport = \"serial\"\nserial_path = \"/dev/x\"").expect_err("rtu path");
        assert!(e.contains("hardware.loadframe.serial_path"), "{e}");
        let e = devices(
            "[loadframe]\ntransport = \"rtu\"\nserial_path = \"/dev/y\"\nbaud = 12345\n[smu]\nmodel = \"nanoecr-scpi\"\ntransport = \"serial\"\nserial_path = \"/dev/x\"",
        )
        .expect_err("baud");
        assert!(e.contains("hardware.loadframe.baud") && e.contains("921600"), "{e}");
    }

    #[test]
    fn ranges_are_named() {
        let e = devices("[loadframe]\nunit_id = 0\n[smu]\nmodel = \"nanoecr-scpi\"\ntransport = \"serial\"\nserial_path = \"/dev/x\"").expect_err("unit id");
        assert!(e.contains("hardware.loadframe.unit_id"), "{e}");
        let e = devices("[loadframe]\ntimeout_ms = 0\n[smu]\nmodel = \"nanoecr-scpi\"\ntransport = \"serial\"\nserial_path = \"/dev/x\"").expect_err("timeout");
        assert!(e.contains("timeout_ms"), "{e}");
        let e = devices("[smu]\nmodel = \"nanoecr-scpi\"\ntransport = \"serial\"\nserial_path = \"/dev/x\"\nterminator = \"semicolon\"").expect_err("terminator");
        assert!(e.contains("semicolon"), "{e}");
        let ok = devices(
            "[loadframe]\naddress = \"10.0.0.5\"\nport = 1502\n[smu]\nmodel = \"nanoecr-scpi\"\ntransport = \"serial\"\nserial_path = \"/dev/x\"\nparity = \"even\"",
        )
        .expect("valid");
        assert_eq!(ok.smu.parity, Parity::Even);
    }

    #[test]
    fn smu_transports_need_their_keys() {
        let e = devices("[smu]\nmodel = \"keithley-2450\"").expect_err("tcp address missing");
        assert!(e.contains("hardware.smu.address"), "{e}");
        let e = devices("[smu]\nmodel = \"keithley-2450\"\nserial_path = \"/dev/x\"").expect_err("tcp by default");
        assert!(e.contains("hardware.smu.address") && e.contains("transport = \"serial\""), "{e}");
        let e = devices("[smu]\nmodel = \"keithley-2450\"\naddress = \"10.0.0.9\"\nport = 0").expect_err("port 0");
        assert!(e.contains("hardware.smu.port"), "{e}");
        let e = devices("[smu]\nmodel = \"keysight-b2900\"\ntransport = \"usbtmc\"").expect_err("no device");
        assert!(e.contains("hardware.smu.device") && e.contains("USB-TMC"), "{e}");
        let e = devices(
            "[smu]\nmodel = \"keysight-b2900\"\ntransport = \"serial\"\ndevice = \"/dev/a\"\nserial_path = \"/dev/b\"",
        )
        .expect_err("two ttys");
        assert!(e.contains("hardware.smu.device"), "{e}");
        let e = devices("[smu]\nmodel = \"keithley-2400\"").expect_err("unknown model");
        assert!(e.contains("keithley-2400"), "{e}");
        let ok = devices("[smu]\nmodel = \"keithley-2450\"\naddress = \"10.0.0.9\"").expect("valid");
        assert_eq!((ok.smu.port, ok.smu.trigger, ok.smu.nplc, ok.smu.binary), (5025, SmuTrigger::External, 0.01, true));
        let ok = devices("[smu]\nmodel = \"keysight-b2900\"\ntransport = \"usbtmc\"\ndevice = \"/dev/usbtmc0\"")
            .expect("valid");
        assert_eq!(ok.smu.device_path(), Some("/dev/usbtmc0"));
        let ok = devices("[smu]\nmodel = \"nanoecr-scpi\"\ntransport = \"serial\"\nserial_path = \"/dev/x\"")
            .expect("valid");
        assert_eq!(ok.smu.device_path(), Some("/dev/x"));
    }

    #[test]
    fn nplc_must_fit_the_sample_period_and_the_run_the_buffer() {
        let hw = devices("[smu]\nmodel = \"keithley-2450\"\naddress = \"h\"\nnplc = 0.06").expect("valid alone");
        // 0.06 PLC at 50 Hz is 1.2 ms: too long for a 1 ms period, fine for 500 Hz (2 ms).
        let e = hw.validate_for_run(1000.0, 10).expect_err("too slow").to_string();
        assert!(e.contains("hardware.smu.nplc") && e.contains("1.200 ms") && e.contains("0.0500 PLC"), "{e}");
        hw.validate_for_run(500.0, 10).expect("fits 2 ms");
        let hw = devices("[smu]\nmodel = \"keithley-2450\"\naddress = \"h\"\nnplc = 20").expect("valid alone");
        let e = hw.validate_for_run(1.0, 10).expect_err("range").to_string();
        assert!(e.contains("hardware.smu.nplc") && e.contains("0.01 to 10 PLC"), "{e}");
        let hw = devices("[smu]\nmodel = \"keysight-b2900\"\naddress = \"h\"").expect("valid");
        hw.validate_for_run(1000.0, 100_000).expect("fits the trace buffer");
        let e = hw.validate_for_run(1000.0, 100_001).expect_err("buffer").to_string();
        assert!(e.contains("hardware.smu.model") && e.contains("100000 samples"), "{e}");
        // The in-house dialect streams: no buffer or NPLC-vs-period limit.
        let hw = devices("[smu]\nmodel = \"nanoecr-scpi\"\ntransport = \"serial\"\nserial_path = \"/dev/x\"\nnplc = 1")
            .expect("valid");
        hw.validate_for_run(100_000.0, 1 << 40).expect("no limit");
    }
}
