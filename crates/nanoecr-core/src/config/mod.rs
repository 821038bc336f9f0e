//! The run configuration: a TOML file an operator writes, parsed into raw serde structs
//! (`deny_unknown_fields`) and validated into [`RunConfig`], whose invariants every other crate
//! may rely on. Every key carries its unit in its name. docs/config.md documents each key.
//!
//! Errors ([`ConfigError`]) carry file, line, dotted key, the value as written and the expected
//! range with unit; [`parse`] finds the line of a key with `toml_edit`'s spans.

mod check;
pub mod detection;
mod error;
pub mod hardware;
pub mod limits;
pub mod read;
mod rig;
pub mod simulation;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use check::{non_negative, positive, strictly_within, with_unit, within};
pub use detection::DetectionConfig;
pub use error::{unit_of_key, ConfigError, ConfigErrorKind};
pub use hardware::HardwareConfig;
pub use limits::LimitsConfig;
pub use read::{read_config_file, read_config_file_within, read_config_text, ReadConfigError, MAX_CONFIG_BYTES};
pub use rig::{check_rig_name, DEFAULT_RIG};
pub use simulation::{SimulationConfig, SpikeShape};

use crate::load_function::LoadFunction;
use crate::sample::Segment;
use crate::units::Pillar;

/// Highest sampling rate accepted, Hz.
pub const MAX_RATE_HZ: f64 = 100_000.0;

/// Longest program accepted (settle included), s: 24 h. Longer is a typo (`load_s = 1e9`), not
/// a test.
pub const MAX_PROGRAM_S: f64 = 86_400.0;

/// Most samples one run may take (program length × rate): 4 × 10⁸, ≈ 10 GB of closed run file
/// at ≈ 24 B a sample (docs/performance.md) — 24 h at 1 kHz, 1 h at 100 kHz. This is the bound
/// on a run file's size.
pub const MAX_SAMPLES: u64 = 400_000_000;

/// Most explicit segments in `[[load_function.segments]]`.
pub const MAX_SEGMENTS: usize = 10_000;

// ---------------------------------------------------------------------------------------------
// Raw (as written) sections.

/// `[sample]`: the pillar under test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleConfig {
    /// Material name, free text (e.g. `Zr55Cu30Ni5Al10`).
    pub material: String,
    /// Top diameter, µm.
    pub diameter_um: f64,
    /// Initial height H0, µm.
    pub height_um: f64,
    /// Poisson's ratio ν.
    #[serde(default = "default_poisson")]
    pub poisson_ratio: f64,
    /// Young's modulus, GPa.
    #[serde(default = "default_modulus")]
    pub youngs_modulus_gpa: f64,
}

fn default_poisson() -> f64 {
    1.0 / 3.0
}
fn default_modulus() -> f64 {
    88.0
}

/// One explicit segment in `[[load_function.segments]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSegment {
    /// `load`, `hold` or `unload`.
    pub kind: SegmentKind,
    /// Duration, s.
    pub duration_s: f64,
    /// Load at the end of the segment, µN (for `hold`, defaults to the previous target).
    #[serde(default)]
    pub target_load_un: Option<f64>,
}

/// The segment kinds an operator may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentKind {
    /// Load rises (or changes) linearly to `target_load_un`.
    Load,
    /// Load held.
    Hold,
    /// Load falls linearly to `target_load_un` (default 0).
    Unload,
}

/// `[load_function]`: either the trapezoid keys or `segments`, not both.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLoadFunction {
    /// Trapezoid: peak load, µN.
    pub peak_load_un: Option<f64>,
    /// Trapezoid: loading time, s.
    pub load_s: Option<f64>,
    /// Trapezoid: holding time, s.
    pub hold_s: Option<f64>,
    /// Trapezoid: unloading time, s.
    pub unload_s: Option<f64>,
    /// Contact load held during settle, µN (default 0).
    #[serde(default)]
    pub preload_un: f64,
    /// Explicit segments (instead of the trapezoid keys).
    pub segments: Option<Vec<RawSegment>>,
}

/// `[bias]`: the constant voltage superimposed for the whole test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BiasConfig {
    /// Bias voltage, V.
    pub voltage_v: f64,
    /// Current compliance (limit) of the source-measure unit, A.
    #[serde(default = "default_compliance")]
    pub compliance_a: f64,
}

fn default_compliance() -> f64 {
    1e-3
}

/// `[acquisition]`: sampling and buffering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcquisitionConfig {
    /// Control and sampling rate, Hz (1 to 100 000).
    #[serde(default = "default_rate")]
    pub rate_hz: f64,
    /// Settle window at the start, excluded from resistivity analysis, s.
    #[serde(default = "default_settle")]
    pub settle_s: f64,
    /// Capacity of the ring between the control loop and the consumer, in samples
    /// (default: 4 s of samples, at least 16 384).
    #[serde(default)]
    pub ring_capacity_samples: Option<u64>,
    /// Longest time between two flushes of the run file, ms (1 to 100).
    #[serde(default = "default_flush")]
    pub flush_interval_ms: f64,
    /// Pin the control thread to this CPU (0-based, below the number of online CPUs), and keep
    /// the consumer off it. Unset: the scheduler places both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<usize>,
    /// Above 10 kHz, where a paced loop wakes once for a batch of ticks, the time between two
    /// wake-ups, µs ([`MIN_WAKEUP_PERIOD_US`] to [`MAX_WAKEUP_PERIOD_US`]): each wake-up runs
    /// ⌈wakeup_period_us / sample period⌉ ticks back to back. Ignored at 10 kHz and below (one
    /// tick per wake-up).
    #[serde(default = "default_wakeup_period")]
    pub wakeup_period_us: f64,
    /// How long before each wake-up's deadline a paced loop stops sleeping and spins, µs (0 to
    /// [`MAX_SPIN_FRACTION`] of the wake-up period, at most [`MAX_SPIN_US`]). A wake-up that
    /// comes later than this from its sleep makes ticks late; a longer spin absorbs more of the
    /// host's wake-up tail but keeps the thread on its CPU longer. Unset: the loop's own
    /// choice for the rate (docs/performance.md, "What the loop does to keep time").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spin_us: Option<f64>,
}

impl Default for AcquisitionConfig {
    fn default() -> Self {
        Self {
            rate_hz: default_rate(),
            settle_s: default_settle(),
            ring_capacity_samples: None,
            flush_interval_ms: default_flush(),
            cpu: None,
            wakeup_period_us: default_wakeup_period(),
            spin_us: None,
        }
    }
}

fn default_rate() -> f64 {
    1000.0
}
fn default_settle() -> f64 {
    2.0
}
fn default_flush() -> f64 {
    100.0
}
fn default_wakeup_period() -> f64 {
    DEFAULT_WAKEUP_PERIOD_US
}

/// Default of `acquisition.wakeup_period_us`, µs: 40 ticks per wake-up at 100 kHz. Measured
/// against 100 and 200 µs in docs/performance.md (issue 15, fourth pass): fewest missed ticks,
/// and almost none lost while spinning.
pub const DEFAULT_WAKEUP_PERIOD_US: f64 = 400.0;
/// Shortest `acquisition.wakeup_period_us`, µs: the 10 kHz period. A paced loop spins 60 µs
/// before each wake-up at this period; with shorter wake-up periods it would hardly sleep and would run
/// into the kernel's real-time budget (docs/performance.md, "Why: 100 kHz timing").
pub const MIN_WAKEUP_PERIOD_US: f64 = 100.0;
/// Longest `acquisition.spin_us`, µs, whatever the wake-up period.
pub const MAX_SPIN_US: f64 = 500.0;
/// Largest share of a wake-up period `acquisition.spin_us` may take: the real-time thread must
/// sleep part of every wake-up period, or it runs into the kernel's real-time budget
/// (`sched_rt_runtime_us`, 95 % of each second by default) and is stopped for the rest.
pub const MAX_SPIN_FRACTION: f64 = 0.75;

/// The time between two wake-ups of a paced loop at `rate_hz` with `acquisition.wakeup_period_us`
/// = `wakeup_period_us`, µs: one sample period up to 10 kHz, the wake-up period (at least
/// [`MIN_WAKEUP_PERIOD_US`]) above. The loop rounds a batch up to whole ticks; this is the
/// configured figure, which bounds `acquisition.spin_us`.
pub fn wake_period_us(rate_hz: f64, wakeup_period_us: f64) -> f64 {
    let dt_us = 1e6 / rate_hz;
    if dt_us >= MIN_WAKEUP_PERIOD_US * (1.0 - 1e-9) {
        dt_us
    } else {
        wakeup_period_us.max(MIN_WAKEUP_PERIOD_US)
    }
}

/// Longest `acquisition.wakeup_period_us`, µs. A stop request or an interlock trip acts at the
/// next tick, but the frame gets no command between two batches: this bounds that interval
/// far below the command-gap and tracking-error interlocks (milliseconds).
pub const MAX_WAKEUP_PERIOD_US: f64 = 1000.0;

/// `[control]`: the load feedback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Proportional gain on the load error (dimensionless, µN command per µN error).
    #[serde(default = "default_kp")]
    pub kp: f64,
    /// Integral gain, 1/s.
    #[serde(default = "default_ki")]
    pub ki_per_s: f64,
    /// Ramp rate of a safe unload, µN/s.
    #[serde(default = "default_safe_rate")]
    pub safe_unload_rate_un_per_s: f64,
    /// Try SCHED_FIFO for the loop thread (falls back, loudly, when not permitted).
    #[serde(default = "default_true")]
    pub realtime: bool,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            kp: default_kp(),
            ki_per_s: default_ki(),
            safe_unload_rate_un_per_s: default_safe_rate(),
            realtime: true,
        }
    }
}

fn default_kp() -> f64 {
    0.5
}
fn default_ki() -> f64 {
    200.0
}
fn default_safe_rate() -> f64 {
    2000.0
}
fn default_true() -> bool {
    true
}

/// `[output]`: where run files go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Directory for run files (created if absent).
    #[serde(default = "default_dir")]
    pub directory: String,
    /// File name template; placeholders: `{timestamp}`, `{material}`, `{peak_load_un}`, `{seed}`,
    /// `{rate_hz}`. Must end in `.h5`.
    #[serde(default = "default_template")]
    pub file_template: String,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self { directory: default_dir(), file_template: default_template() }
    }
}

fn default_dir() -> String {
    "runs".into()
}
fn default_template() -> String {
    "{timestamp}_{material}_{peak_load_un}uN_seed{seed}.h5".into()
}

/// Placeholders accepted in `output.file_template`.
pub const TEMPLATE_PLACEHOLDERS: &[&str] = &["timestamp", "material", "peak_load_un", "seed", "rate_hz"];

/// The file exactly as written (after serde, before validation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[sample]`
    pub sample: SampleConfig,
    /// `[load_function]`
    pub load_function: RawLoadFunction,
    /// `[bias]`
    pub bias: BiasConfig,
    /// `[acquisition]`
    #[serde(default)]
    pub acquisition: AcquisitionConfig,
    /// `[limits]`
    pub limits: LimitsConfig,
    /// `[control]`
    #[serde(default)]
    pub control: ControlConfig,
    /// `[simulation]`
    #[serde(default)]
    pub simulation: SimulationConfig,
    /// `[detection]`
    #[serde(default)]
    pub detection: DetectionConfig,
    /// `[hardware]`
    #[serde(default)]
    pub hardware: HardwareConfig,
    /// `[output]`
    #[serde(default)]
    pub output: OutputConfig,
}

// ---------------------------------------------------------------------------------------------
// Validated.

/// A validated run configuration. Only [`parse`] / [`load`] / [`RunConfig::validate`] build one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunConfig {
    /// The sections as written (with defaults filled in).
    pub raw: RawConfig,
    /// The config text it came from, stored verbatim in every run file.
    pub source_toml: String,
    /// Pillar geometry.
    pub pillar: Pillar,
    /// The load program, settle included.
    pub load_function: LoadFunction,
    /// Ring capacity in samples (resolved default).
    pub ring_capacity_samples: usize,
}

impl RunConfig {
    /// Sampling rate, Hz.
    pub fn rate_hz(&self) -> f64 {
        self.raw.acquisition.rate_hz
    }

    /// Sampling interval, s.
    pub fn dt_s(&self) -> f64 {
        1.0 / self.raw.acquisition.rate_hz
    }

    /// Number of samples in the full program (settle included).
    pub fn expected_samples(&self) -> u64 {
        program_ticks(self.load_function.total_s(), self.dt_s())
    }

    /// Readings a buffered source-measure unit must be able to take for this run: every sample
    /// of the program plus the longest safe unload from the load limit and its rest, plus 1 s.
    pub fn smu_readings_needed(&self) -> u64 {
        smu_readings_needed(&self.raw, &self.load_function)
    }

    /// Validate raw sections. `source_toml` is kept for the run file.
    pub fn validate(raw: RawConfig, source_toml: String) -> Result<Self, ConfigError> {
        let s = &raw.sample;
        if s.material.trim().is_empty() {
            return Err(ConfigError::new(ConfigErrorKind::OutOfRange, "sample.material", "material must not be empty")
                .value("\"\"")
                .expected("a material name such as \"Zr55Cu30Ni5Al10\""));
        }
        positive("sample.diameter_um", s.diameter_um, "pillar diameter")?;
        within("sample.diameter_um", s.diameter_um, 0.01, 1000.0, "pillar diameter")?;
        positive("sample.height_um", s.height_um, "pillar height")?;
        within("sample.height_um", s.height_um, 0.01, 10_000.0, "pillar height")?;
        strictly_within("sample.poisson_ratio", s.poisson_ratio, -1.0, 0.5, "Poisson's ratio")?;
        within("sample.youngs_modulus_gpa", s.youngs_modulus_gpa, 0.1, 2000.0, "Young's modulus")?;
        let pillar = Pillar {
            diameter_um: s.diameter_um,
            height_um: s.height_um,
            poisson_ratio: s.poisson_ratio,
            youngs_modulus_gpa: s.youngs_modulus_gpa,
        };

        let a = &raw.acquisition;
        if !(a.rate_hz.is_finite() && a.rate_hz >= 1.0 && a.rate_hz <= MAX_RATE_HZ) {
            return Err(ConfigError::new(
                ConfigErrorKind::OutOfRange,
                "acquisition.rate_hz",
                "sampling rate is out of range",
            )
            .value(a.rate_hz)
            .expected(format!("1 to {MAX_RATE_HZ} Hz")));
        }
        non_negative("acquisition.settle_s", a.settle_s, "settle window")?;
        within("acquisition.settle_s", a.settle_s, 0.0, 600.0, "settle window")?;
        within("acquisition.flush_interval_ms", a.flush_interval_ms, 1.0, 100.0, "flush interval")?;
        within(
            "acquisition.wakeup_period_us",
            a.wakeup_period_us,
            MIN_WAKEUP_PERIOD_US,
            MAX_WAKEUP_PERIOD_US,
            "wake-up period of a batching loop",
        )?;
        if let Some(spin_us) = a.spin_us {
            let max_us = (MAX_SPIN_FRACTION * wake_period_us(a.rate_hz, a.wakeup_period_us)).min(MAX_SPIN_US);
            within("acquisition.spin_us", spin_us, 0.0, max_us, "spin window before a wake-up's deadline")?;
        }
        if let Some(cpu) = a.cpu {
            let online = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
            if cpu >= online {
                return Err(ConfigError::new(
                    ConfigErrorKind::OutOfRange,
                    "acquisition.cpu",
                    format!("this machine lets nanoecr use {online} CPU(s)"),
                )
                .value(cpu)
                .expected(format!("a CPU number from 0 to {}", online - 1)));
            }
        }
        let ring_capacity_samples = match a.ring_capacity_samples {
            Some(n) if !(64..=1 << 26).contains(&n) => {
                return Err(ConfigError::new(
                    ConfigErrorKind::OutOfRange,
                    "acquisition.ring_capacity_samples",
                    "ring capacity is out of range",
                )
                .value(n)
                .expected("64 to 67108864 samples"));
            }
            Some(n) => n as usize,
            None => ((a.rate_hz * 4.0) as usize).max(16_384),
        };

        let load_function = validate_load_function(&raw.load_function, a.settle_s)?;
        check_program_size(&raw, load_function.total_s())?;

        let b = &raw.bias;
        within("bias.voltage_v", b.voltage_v, -210.0, 210.0, "bias voltage")?;
        positive("bias.compliance_a", b.compliance_a, "current compliance")?;
        within("bias.compliance_a", b.compliance_a, 1e-12, 1.0, "current compliance")?;

        raw.limits.validate()?;
        let peak = load_function.peak_load_un();
        if peak > raw.limits.max_load_un {
            let key = if raw.load_function.segments.is_some() {
                "load_function.segments"
            } else {
                "load_function.peak_load_un"
            };
            return Err(ConfigError::new(
                ConfigErrorKind::Inconsistent,
                key,
                format!(
                    "the load function reaches {peak} µN, above limits.max_load_un = {} µN",
                    raw.limits.max_load_un
                ),
            )
            .value(peak)
            .expected(format!("a peak load ≤ {} µN (or raise limits.max_load_un)", raw.limits.max_load_un)));
        }

        let c = &raw.control;
        non_negative("control.kp", c.kp, "proportional gain")?;
        within("control.kp", c.kp, 0.0, 100.0, "proportional gain")?;
        within("control.ki_per_s", c.ki_per_s, 0.0, 1e6, "integral gain")?;
        positive("control.safe_unload_rate_un_per_s", c.safe_unload_rate_un_per_s, "safe unload rate")?;

        raw.simulation.validate(a.rate_hz)?;
        raw.detection.validate(a.rate_hz)?;
        raw.hardware.validate()?;
        if let Some(name) = &raw.hardware.rig {
            check_rig_name(name)?;
        }
        raw.hardware.validate_for_run(a.rate_hz, smu_readings_needed(&raw, &load_function))?;

        let o = &raw.output;
        if o.directory.trim().is_empty() {
            return Err(ConfigError::new(
                ConfigErrorKind::OutOfRange,
                "output.directory",
                "output directory must not be empty",
            )
            .value("\"\"")
            .expected("a directory path"));
        }
        validate_template(&o.file_template)?;

        Ok(Self { raw, source_toml, pillar, load_function, ring_capacity_samples })
    }

    /// The run-file name from the template, for a timestamp like `20261125T101500Z`.
    pub fn file_name(&self, timestamp: &str) -> String {
        let material: String = self
            .raw
            .sample
            .material
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' })
            .collect();
        self.raw
            .output
            .file_template
            .replace("{timestamp}", timestamp)
            .replace("{material}", &material)
            .replace("{peak_load_un}", &format!("{}", self.load_function.peak_load_un().round() as i64))
            .replace("{seed}", &self.raw.simulation.seed.to_string())
            .replace("{rate_hz}", &format!("{}", self.rate_hz().round() as i64))
    }

    /// Replace the simulation seed (the CLI's `--seed`), in the validated values and in the
    /// stored source text, so the run file records the seed that was actually used.
    pub fn set_seed(&mut self, seed: u64) {
        self.raw.simulation.seed = seed;
        if let Ok(mut doc) = self.source_toml.parse::<toml_edit::DocumentMut>() {
            let sim = doc.entry("simulation").or_insert(toml_edit::table());
            if let Some(t) = sim.as_table_like_mut() {
                // TOML integers are i64; seeds above i64::MAX are stored wrapped, as the parser reads them.
                t.insert("seed", toml_edit::value(seed as i64));
            }
            self.source_toml = doc.to_string();
        }
    }
}

/// The program length and the samples it takes are bounded ([`MAX_PROGRAM_S`], [`MAX_SAMPLES`]):
/// a typo must not start a run that fills the disk. The error names the duration key that
/// contributes most, where the operator will look for the typo.
fn check_program_size(raw: &RawConfig, total_s: f64) -> Result<(), ConfigError> {
    let lf = &raw.load_function;
    let mut parts: Vec<(String, f64)> = vec![("acquisition.settle_s".into(), raw.acquisition.settle_s)];
    match &lf.segments {
        Some(segs) => parts.extend(
            segs.iter().enumerate().map(|(i, s)| (format!("load_function.segments[{i}].duration_s"), s.duration_s)),
        ),
        None => parts.extend(
            [("load_s", lf.load_s), ("hold_s", lf.hold_s), ("unload_s", lf.unload_s)]
                .into_iter()
                .map(|(k, v)| (format!("load_function.{k}"), v.unwrap_or(0.0))),
        ),
    }
    let (key, longest_s) =
        parts.into_iter().fold((String::new(), f64::NEG_INFINITY), |best, p| if p.1 > best.1 { p } else { best });
    if total_s.is_nan() || total_s > MAX_PROGRAM_S {
        return Err(ConfigError::new(
            ConfigErrorKind::OutOfRange,
            key,
            format!("the program (settle included) would last {total_s} s, above the {MAX_PROGRAM_S} s (24 h) limit"),
        )
        .value(longest_s)
        .expected(format!("durations that add up to at most {MAX_PROGRAM_S} s")));
    }
    let rate_hz = raw.acquisition.rate_hz;
    let samples = total_s * rate_hz;
    if samples > MAX_SAMPLES as f64 {
        return Err(ConfigError::new(
            ConfigErrorKind::OutOfRange,
            "acquisition.rate_hz",
            format!(
                "{total_s} s at {rate_hz} Hz is {samples:.0} samples, above the limit of {MAX_SAMPLES} samples a run \
                 (≈ 10 GB of run file)"
            ),
        )
        .value(rate_hz)
        .expected(format!(
            "at most {:.0} Hz for this program, or a shorter program",
            (MAX_SAMPLES as f64 / total_s).floor()
        )));
    }
    Ok(())
}

/// See [`RunConfig::smu_readings_needed`]. An abort may start a safe unload at any load up to the
/// limit, after which the loop keeps sampling for the ramp and a short rest.
fn smu_readings_needed(raw: &RawConfig, lf: &LoadFunction) -> u64 {
    let rate = raw.acquisition.rate_hz;
    let unload_s = raw.limits.max_load_un / raw.control.safe_unload_rate_un_per_s.max(f64::MIN_POSITIVE);
    let s = lf.total_s() + unload_s.min(3600.0) + 1.0;
    (s * rate).ceil() as u64
}

fn validate_template(t: &str) -> Result<(), ConfigError> {
    let key = "output.file_template";
    if !t.ends_with(".h5") {
        return Err(ConfigError::new(ConfigErrorKind::OutOfRange, key, "run files are HDF5 and must end in .h5")
            .value(format!("{t:?}"))
            .expected("a template ending in \".h5\""));
    }
    if t.contains('/') || t.contains('\\') {
        return Err(ConfigError::new(
            ConfigErrorKind::OutOfRange,
            key,
            "the template is a file name, not a path (use output.directory)",
        )
        .value(format!("{t:?}"))
        .expected("a file name without '/'"));
    }
    let mut rest = t;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        let Some(j) = after.find('}') else {
            return Err(ConfigError::new(ConfigErrorKind::OutOfRange, key, "unclosed '{' in template")
                .value(format!("{t:?}"))
                .expected(format!("placeholders among {{{}}}", TEMPLATE_PLACEHOLDERS.join("}, {"))));
        };
        let name = &after[..j];
        if !TEMPLATE_PLACEHOLDERS.contains(&name) {
            return Err(ConfigError::new(ConfigErrorKind::OutOfRange, key, format!("unknown placeholder {{{name}}}"))
                .value(format!("{t:?}"))
                .expected(format!("placeholders among {{{}}}", TEMPLATE_PLACEHOLDERS.join("}, {"))));
        }
        rest = &after[j + 1..];
    }
    Ok(())
}

fn validate_load_function(lf: &RawLoadFunction, settle_s: f64) -> Result<LoadFunction, ConfigError> {
    non_negative("load_function.preload_un", lf.preload_un, "preload")?;
    let trapezoid = [lf.peak_load_un, lf.load_s, lf.hold_s, lf.unload_s];
    let any_trapezoid = trapezoid.iter().any(Option::is_some);
    match (&lf.segments, any_trapezoid) {
        (Some(_), true) => Err(ConfigError::new(
            ConfigErrorKind::Inconsistent,
            "load_function",
            "give either the trapezoid keys (peak_load_un, load_s, hold_s, unload_s) or segments, not both",
        )
        .expected("one form of load function")),
        (None, false) => Err(ConfigError::new(
            ConfigErrorKind::Missing,
            "load_function.peak_load_un",
            "no load function: give peak_load_un, load_s, hold_s and unload_s, or [[load_function.segments]]",
        )
        .expected("a peak load in µN and three durations in s")),
        (None, true) => {
            let get = |v: Option<f64>, key: &str, what: &str| {
                v.ok_or_else(|| {
                    ConfigError::new(
                        ConfigErrorKind::Missing,
                        format!("load_function.{key}"),
                        format!("missing {what}"),
                    )
                    .expected(with_unit(key, "a value > 0"))
                })
            };
            let peak = positive(
                "load_function.peak_load_un",
                get(lf.peak_load_un, "peak_load_un", "the peak load")?,
                "peak load",
            )?;
            let load_s =
                positive("load_function.load_s", get(lf.load_s, "load_s", "the loading time")?, "loading time")?;
            let hold_s =
                non_negative("load_function.hold_s", get(lf.hold_s, "hold_s", "the holding time")?, "holding time")?;
            let unload_s = positive(
                "load_function.unload_s",
                get(lf.unload_s, "unload_s", "the unloading time")?,
                "unloading time",
            )?;
            if peak <= lf.preload_un {
                return Err(ConfigError::new(
                    ConfigErrorKind::Inconsistent,
                    "load_function.peak_load_un",
                    "peak load must exceed the preload",
                )
                .value(peak)
                .expected(format!("a load > preload_un = {} µN", lf.preload_un)));
            }
            let mut spec = vec![(Segment::Load, load_s, peak)];
            if hold_s > 0.0 {
                spec.push((Segment::Hold, hold_s, peak));
            }
            spec.push((Segment::Unload, unload_s, 0.0));
            Ok(LoadFunction::from_targets(settle_s, lf.preload_un, &spec))
        }
        (Some(segs), false) => {
            if segs.is_empty() {
                return Err(ConfigError::new(
                    ConfigErrorKind::Missing,
                    "load_function.segments",
                    "the segment list is empty",
                )
                .expected("at least one segment"));
            }
            if segs.len() > MAX_SEGMENTS {
                return Err(ConfigError::new(
                    ConfigErrorKind::OutOfRange,
                    "load_function.segments",
                    "too many segments",
                )
                .value(segs.len())
                .expected(format!("at most {MAX_SEGMENTS} segments")));
            }
            let mut spec = Vec::with_capacity(segs.len());
            let mut prev = lf.preload_un;
            for (i, s) in segs.iter().enumerate() {
                let k = |f: &str| format!("load_function.segments[{i}].{f}");
                positive(&k("duration_s"), s.duration_s, "segment duration")?;
                let target = match (s.kind, s.target_load_un) {
                    (SegmentKind::Hold, None) => prev,
                    (SegmentKind::Unload, None) => 0.0,
                    (SegmentKind::Load, None) => {
                        return Err(ConfigError::new(
                            ConfigErrorKind::Missing,
                            k("target_load_un"),
                            "a load segment needs a target load",
                        )
                        .expected("a load ≥ 0 µN"))
                    }
                    (_, Some(t)) => non_negative(&k("target_load_un"), t, "target load")?,
                };
                match s.kind {
                    SegmentKind::Hold if (target - prev).abs() > 1e-9 => {
                        return Err(ConfigError::new(
                            ConfigErrorKind::Inconsistent,
                            k("target_load_un"),
                            "a hold keeps the previous load",
                        )
                        .value(target)
                        .expected(format!("{prev} µN or no target_load_un")))
                    }
                    SegmentKind::Unload if target > prev => {
                        return Err(ConfigError::new(
                            ConfigErrorKind::Inconsistent,
                            k("target_load_un"),
                            "an unload segment must not raise the load",
                        )
                        .value(target)
                        .expected(format!("a load ≤ {prev} µN")))
                    }
                    _ => {}
                }
                let kind = match s.kind {
                    SegmentKind::Load => Segment::Load,
                    SegmentKind::Hold => Segment::Hold,
                    SegmentKind::Unload => Segment::Unload,
                };
                spec.push((kind, s.duration_s, target));
                prev = target;
            }
            Ok(LoadFunction::from_targets(settle_s, lf.preload_un, &spec))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing with located errors.

/// Parse and validate config text. `file` is only used in error messages. Text longer than
/// [`MAX_CONFIG_BYTES`] is refused before parsing, as a file would be.
pub fn parse(text: &str, file: Option<&Path>) -> Result<RunConfig, ConfigError> {
    if text.len() as u64 > MAX_CONFIG_BYTES {
        let mut err = ConfigError::new(
            ConfigErrorKind::Io,
            "",
            format!("config text is {} bytes, above the {MAX_CONFIG_BYTES}-byte limit", text.len()),
        );
        err.file = file.map(Path::to_path_buf);
        return Err(err);
    }
    let locate = |mut e: ConfigError| {
        e.file = file.map(Path::to_path_buf);
        if e.line.is_none() {
            e.line = line_of_key(text, &e.key);
        }
        e
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| locate(from_toml_error(text, &e)))?;
    RunConfig::validate(raw, text.to_string()).map_err(locate)
}

/// Ticks of a program of `total_s` (settle included) at `dt_s` a tick: every k ≥ 0 with
/// k · dt_s < total_s, the rule the control loop ends the program by. A sum of durations that
/// floats a hair above a whole number of ticks (0.2 + 0.4 + 0.2 + 0.4 s = 1.2000000000000002 s)
/// has its last tick at 1.2 s: rounding total_s / dt_s would count one sample fewer than a
/// complete run writes.
pub fn program_ticks(total_s: f64, dt_s: f64) -> u64 {
    let mut k = (total_s / dt_s).ceil() as u64;
    while k > 0 && k as f64 * dt_s >= total_s {
        k -= 1;
    }
    k + 1
}

/// Read, parse and validate a config file (a regular file of at most [`MAX_CONFIG_BYTES`]; see
/// [`read_config_file`]).
pub fn load(path: &Path) -> Result<RunConfig, ConfigError> {
    load_within(path, None)
}

/// [`load`], confined to a directory (the daemon's `run_configs.directory` for client paths).
pub fn load_within(path: &Path, within: Option<&Path>) -> Result<RunConfig, ConfigError> {
    let text = read_config_file_within(path, within).map_err(|e| {
        let mut err = ConfigError::new(ConfigErrorKind::Io, "", format!("cannot read config: {e}"));
        err.file = Some(path.to_path_buf());
        err
    })?;
    parse(&text, Some(path))
}

fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// 1-based line on which a dotted key (e.g. `load_function.segments[1].duration_s`) is written;
/// falls back to its nearest written parent.
pub fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let doc = toml_edit::ImDocument::parse(text.to_string()).ok()?;
    let mut best: Option<usize> = None;
    let mut note = |span: Option<std::ops::Range<usize>>| {
        if let Some(s) = span {
            best = Some(s.start);
        }
    };
    // Walk the path through tables, arrays of tables and inline tables, remembering the deepest
    // span found so a missing leaf still points at its section.
    let mut current: Option<&dyn toml_edit::TableLike> = doc.as_item().as_table_like();
    for part in key.split('.').filter(|p| !p.is_empty()) {
        let (name, index) = match part.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let Some(table) = current else { break };
        let Some((k, v)) = table.get_key_value(name) else { break };
        note(k.span().or_else(|| v.span()));
        current = match (v, index) {
            (toml_edit::Item::ArrayOfTables(a), Some(i)) => a.get(i).map(|t| {
                note(t.span());
                t as &dyn toml_edit::TableLike
            }),
            (toml_edit::Item::Value(toml_edit::Value::Array(arr)), Some(i)) => arr.get(i).and_then(|e| {
                note(e.span());
                e.as_inline_table().map(|t| t as &dyn toml_edit::TableLike)
            }),
            (item, None) => item.as_table_like(),
            _ => None,
        };
    }
    best.map(|o| line_at(text, o))
}

/// Classify a serde/TOML error and name its key.
fn from_toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    // toml's messages may span lines ("invalid string\nexpected `"`"); an error is one line.
    let msg = e.message().trim().replace('\n', "; ");
    let line = e.span().map(|s| opening_line(text, line_at(text, s.start), &msg));
    let quoted = msg.split('`').nth(1).unwrap_or("").to_string();
    let (kind, key, message, expected) = if msg.starts_with("unknown field") {
        // toml says "…, expected one of `a`, `b`" or "…, expected `a`": keep what follows.
        let expected = msg.split_once(", expected").map(|(_, r)| r.trim().to_string()).unwrap_or_default();
        let expected = match expected.strip_prefix("one of ") {
            Some(list) => format!("one of {list}"),
            None if expected.is_empty() => expected,
            None => format!("one of {expected}"),
        };
        let expected = without_refused_fields(&expected);
        (ConfigErrorKind::UnknownKey, quoted.clone(), format!("unknown key `{quoted}`"), expected)
    } else if msg.starts_with("missing field") {
        let unit = unit_of_key(&quoted);
        let expected = if unit.is_empty() { "this key to be set".to_string() } else { format!("a value in {unit}") };
        (ConfigErrorKind::Missing, quoted.clone(), format!("missing required key `{quoted}`"), expected)
    } else if msg.starts_with("invalid type") || msg.starts_with("invalid value") || msg.starts_with("unknown variant")
    {
        let key = line.and_then(|l| key_on_line(text, l)).unwrap_or_default();
        let unit = unit_of_key(&key);
        let expected = msg.split_once("expected ").map(|(_, r)| plain_type(r)).unwrap_or_default();
        let expected = if unit.is_empty() { expected } else { format!("{expected} in {unit}") };
        (ConfigErrorKind::WrongType, key, msg.split(", expected").next().unwrap_or(&msg).to_string(), expected)
    } else {
        (
            ConfigErrorKind::Syntax,
            line.and_then(|l| key_on_line(text, l)).unwrap_or_default(),
            format!("invalid TOML: {msg}"),
            String::new(),
        )
    };
    let value = if kind == ConfigErrorKind::WrongType {
        line.and_then(|l| text.lines().nth(l - 1)).and_then(|s| s.split_once('=')).map(|(_, v)| v.trim().to_string())
    } else {
        None
    };
    let section = line.and_then(|l| section_of_line(text, l));
    // An unknown table is reported on its own header (`[biass]`, `[hardware.smuu]`): the key is
    // the header's path, not the header's path with the key appended again.
    let header = line.and_then(|l| text.lines().nth(l - 1)).and_then(header_path);
    let key = match (section, key.is_empty()) {
        (_, false) if header.as_deref().is_some_and(|h| h == key || h.ends_with(&format!(".{key}"))) => {
            header.unwrap_or(key)
        }
        (Some(s), false) if !key.contains('.') => format!("{s}.{key}"),
        _ => key,
    };
    // A unit typo (`peak_load_mn`, `voltage_mv`) is the likeliest unknown key: name the key
    // with the same stem and its unit.
    let expected = match kind {
        ConfigErrorKind::UnknownKey => match same_stem(&quoted, &expected) {
            Some(k) => format!("{expected}; did you mean `{k}` (in {})?", unit_of_key(&k)),
            None => expected,
        },
        _ => expected,
    };
    let (message, expected) = match REMOVED_KEYS.iter().find(|(k, _, _)| *k == key) {
        Some((_, why, instead)) if kind == ConfigErrorKind::UnknownKey => {
            (format!("`{key}` was removed: {why}"), (*instead).to_string())
        }
        _ => (message, expected),
    };
    ConfigError { kind, file: None, line, key, value, message, expected }
}

/// Removed keys that live on as fields only to be refused with directions (their old values must
/// still be checked, see limits.rs): never offered among the keys to write.
const REFUSED_FIELDS: &[&str] = &["missed_deadline_fraction"];

/// toml's list of accepted keys (`` `a`, `b` ``, after any "one of ") without [`REFUSED_FIELDS`],
/// wherever in the list they stand.
fn without_refused_fields(expected: &str) -> String {
    let (prefix, list) = match expected.strip_prefix("one of ") {
        Some(list) => ("one of ", list),
        None => ("", expected),
    };
    let kept: Vec<&str> =
        list.split(", ").filter(|k| !REFUSED_FIELDS.iter().any(|r| k.trim_matches('`') == *r)).collect();
    format!("{prefix}{}", kept.join(", "))
}

/// Keys earlier versions accepted, with why they went and what to write instead, so an old
/// config fails with directions rather than a bare "unknown key". (Removed keys whose old value
/// must be checked live on as fields, e.g. `limits.missed_deadline_fraction`.)
const REMOVED_KEYS: &[(&str, &str, &str)] = &[
    (
        "simulation.p_fraction_load",
        "the p-type probability now follows the stress rate",
        "simulation.p_fraction_bias_max and simulation.p_fraction_stress_rate_mpa_per_s (docs/simulator.md)",
    ),
    (
        "simulation.p_fraction_hold",
        "the p-type probability now follows the stress rate (½ in a hold)",
        "simulation.p_fraction_bias_max and simulation.p_fraction_stress_rate_mpa_per_s (docs/simulator.md)",
    ),
    (
        "simulation.p_fraction_unload",
        "the p-type probability now follows the stress rate",
        "simulation.p_fraction_bias_max and simulation.p_fraction_stress_rate_mpa_per_s (docs/simulator.md)",
    ),
];

/// serde's names for Rust types ("f64", "struct LimitsConfig") in an operator's words.
fn plain_type(expected: &str) -> String {
    let e = expected.trim();
    if e.starts_with("struct ") || e.starts_with("a map") {
        return "a table".into();
    }
    if e.starts_with("enum ") {
        return "one of the values listed in docs/config.md".into();
    }
    match e {
        "f64" | "f32" => "a number".into(),
        "u64" | "u32" | "u16" | "u8" | "usize" => "a whole number ≥ 0".into(),
        "i64" | "i32" | "i16" | "i8" | "isize" => "a whole number".into(),
        other => other.to_string(),
    }
}

/// The line an unclosed array, inline table or multi-line string was opened on: toml reports
/// where it gave up (the next line, or the end of the file), but the typo is at the opening.
fn opening_line(text: &str, line: usize, msg: &str) -> usize {
    let opens: fn(&str) -> bool = if msg.starts_with("invalid array") {
        |l| l.split_once('=').is_some_and(|(_, v)| v.trim_start().starts_with('['))
    } else if msg.starts_with("invalid inline table") {
        |l| l.split_once('=').is_some_and(|(_, v)| v.trim_start().starts_with('{'))
    } else if msg.starts_with("invalid multiline basic string") {
        |l| l.contains("\"\"\"")
    } else if msg.starts_with("invalid multiline literal string") {
        |l| l.contains("'''")
    } else {
        return line;
    };
    let lines: Vec<&str> = text.lines().take(line).collect();
    lines.iter().rposition(|l| opens(l)).map_or(line, |i| i + 1)
}

fn key_on_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let (k, _) = l.split_once('=')?;
    let k = k.trim().trim_matches('"');
    (!k.is_empty() && !k.starts_with('[')).then(|| k.to_string())
}

/// The dotted path of a table header line (`[a.b]`, `[[a.b]]`, a trailing comment allowed).
fn header_path(line: &str) -> Option<String> {
    let t = line.split('#').next().unwrap_or("").trim();
    t.strip_prefix("[[")
        .and_then(|r| r.strip_suffix("]]"))
        .or_else(|| t.strip_prefix('[').and_then(|r| r.strip_suffix(']')))
        .map(|s| s.split('.').map(str::trim).collect::<Vec<_>>().join("."))
}

/// The one accepted key (from toml's "one of `a`, `b`" list) that differs from `unknown` only in
/// its unit suffix: `peak_load_mn` → `peak_load_un`, `voltage_mv` → `voltage_v`.
fn same_stem(unknown: &str, accepted: &str) -> Option<String> {
    let stem = |k: &str| -> Option<String> { k.rsplit_once('_').map(|(s, _)| s.to_string()) };
    let want = stem(unknown)?;
    let mut hits = accepted
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|k| *k != unknown && !unit_of_key(k).is_empty() && stem(k).as_deref() == Some(want.as_str()));
    match (hits.next(), hits.next()) {
        (Some(k), None) => Some(k.to_string()),
        _ => None,
    }
}

fn section_of_line(text: &str, line: usize) -> Option<String> {
    text.lines()
        .take(line)
        .filter_map(|l| {
            let t = l.trim();
            t.strip_prefix("[[")
                .and_then(|r| r.strip_suffix("]]"))
                .or_else(|| t.strip_prefix('[').and_then(|r| r.strip_suffix(']')))
        })
        .last()
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests;
