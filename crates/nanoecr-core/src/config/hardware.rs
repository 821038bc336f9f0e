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

/// `[hardware.smu]`: the SCPI source-measure unit on a serial port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmuConfig {
    /// Serial device path (e.g. `/dev/ttyUSB1`); required for `backend = "devices"`.
    #[serde(default)]
    pub serial_path: Option<String>,
    /// Baud rate, bit/s.
    #[serde(default = "default_smu_baud")]
    pub baud: u32,
    /// Parity.
    #[serde(default)]
    pub parity: Parity,
    /// Line terminator: `lf`, `crlf` or `cr`.
    #[serde(default)]
    pub terminator: Terminator,
    /// Timeout of one query, ms.
    #[serde(default = "default_smu_timeout_ms")]
    pub timeout_ms: u64,
    /// Retries of a buffered read after a timeout or a garbled reply (0 = none).
    #[serde(default = "default_retries")]
    pub retries: u32,
}

impl Default for SmuConfig {
    fn default() -> Self {
        Self {
            serial_path: None,
            baud: default_smu_baud(),
            parity: Parity::None,
            terminator: Terminator::Lf,
            timeout_ms: default_smu_timeout_ms(),
            retries: default_retries(),
        }
    }
}

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
            required_path("hardware.smu.serial_path", &smu.serial_path, "the source-measure unit's serial path")?;
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
    fn devices_need_the_smu_path() {
        let e = devices("").expect_err("smu path missing");
        assert!(e.contains("hardware.smu.serial_path"), "{e}");
    }

    #[test]
    fn rtu_needs_a_serial_path_and_a_known_baud() {
        let e = devices("[loadframe]\ntransport = \"rtu\"\n[smu]\nserial_path = \"/dev/x\"").expect_err("rtu path");
        assert!(e.contains("hardware.loadframe.serial_path"), "{e}");
        let e = devices(
            "[loadframe]\ntransport = \"rtu\"\nserial_path = \"/dev/y\"\nbaud = 12345\n[smu]\nserial_path = \"/dev/x\"",
        )
        .expect_err("baud");
        assert!(e.contains("hardware.loadframe.baud") && e.contains("921600"), "{e}");
    }

    #[test]
    fn ranges_are_named() {
        let e = devices("[loadframe]\nunit_id = 0\n[smu]\nserial_path = \"/dev/x\"").expect_err("unit id");
        assert!(e.contains("hardware.loadframe.unit_id"), "{e}");
        let e = devices("[loadframe]\ntimeout_ms = 0\n[smu]\nserial_path = \"/dev/x\"").expect_err("timeout");
        assert!(e.contains("timeout_ms"), "{e}");
        let e = devices("[smu]\nserial_path = \"/dev/x\"\nterminator = \"semicolon\"").expect_err("terminator");
        assert!(e.contains("semicolon"), "{e}");
        let ok = devices(
            "[loadframe]\naddress = \"10.0.0.5\"\nport = 1502\n[smu]\nserial_path = \"/dev/x\"\nparity = \"even\"",
        )
        .expect("valid");
        assert_eq!(ok.smu.parity, Parity::Even);
    }
}
