//! The run-file writer and crash recovery.

use std::path::{Path, PathBuf};

use hdf5::types::VarLenUnicode;
use hdf5::{Dataset, File, Group, H5Type, Location};
use nanoecr_core::{Diagnostics, EndReason, Event, RunConfig, RunStatus, Sample};

use crate::names::{DATA_COLUMNS, DEFLATE_LEVEL, EVENT_CHUNK, EVENT_COLUMNS, SAMPLE_CHUNK};
use crate::{RecoverOutcome, StoreError};

/// Free-text descriptions of the instruments, recorded under `/entry/instrument`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstrumentInfo {
    /// `sim` or `devices`.
    pub backend: String,
    /// The load frame (logical name, vendor, model, serial, firmware).
    pub frame: String,
    /// The source-measure unit.
    pub smu: String,
}

/// Writes one run file. See the crate docs for the life cycle.
pub struct RunWriter {
    path: PathBuf,
    file: File,
    entry: Group,
    data: Vec<Dataset>,
    events: Vec<Dataset>,
    // Column buffers, reused: appends never allocate once they reached block size.
    seq: Vec<u64>,
    time: Vec<f64>,
    load: Vec<f64>,
    setpoint: Vec<f64>,
    disp: Vec<f64>,
    current: Vec<f64>,
    voltage: Vec<f64>,
    segment: Vec<u8>,
    rho: Vec<f64>,
    rows: u64,
    pending_events: Vec<Event>,
    event_rows: u64,
    finished: bool,
}

impl std::fmt::Debug for RunWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunWriter").field("path", &self.path).field("rows", &self.rows).finish_non_exhaustive()
    }
}

fn h5err(path: &Path, during: impl Into<String>) -> impl FnOnce(hdf5::Error) -> StoreError + '_ {
    let during = during.into();
    move |source| StoreError::Hdf5 { path: path.to_path_buf(), during, source }
}

fn vlu(s: &str) -> VarLenUnicode {
    // Interior NULs cannot be stored in an HDF5 string; replace them rather than fail a run.
    s.replace('\0', " ").parse().unwrap_or_default()
}

/// Create or overwrite a scalar string attribute.
pub(crate) fn set_str_attr(loc: &Location, name: &str, value: &str) -> hdf5::Result<()> {
    let attr = match loc.attr(name) {
        Ok(a) => a,
        Err(_) => loc.new_attr::<VarLenUnicode>().shape(()).create(name)?,
    };
    attr.write_scalar(&vlu(value))
}

fn scalar<T: H5Type>(g: &Group, name: &str, value: T, units: Option<&str>) -> hdf5::Result<()> {
    let ds = g.new_dataset::<T>().shape(()).create(name)?;
    ds.write_scalar(&value)?;
    if let Some(u) = units {
        set_str_attr(&ds, "units", u)?;
    }
    Ok(())
}

fn scalar_str(g: &Group, name: &str, value: &str) -> hdf5::Result<()> {
    let ds = g.new_dataset::<VarLenUnicode>().shape(()).create(name)?;
    ds.write_scalar(&vlu(value))
}

fn group(parent: &Group, name: &str, class: &str) -> hdf5::Result<Group> {
    let g = parent.create_group(name)?;
    set_str_attr(&g, "NX_class", class)?;
    Ok(g)
}

fn extendible<T: H5Type>(g: &Group, name: &str, chunk: usize, units: &str) -> hdf5::Result<Dataset> {
    let ds = g.new_dataset::<T>().shape(0..).chunk(chunk).shuffle().deflate(DEFLATE_LEVEL).create(name)?;
    set_str_attr(&ds, "units", units)?;
    Ok(ds)
}

fn extend<T: H5Type>(ds: &Dataset, at: usize, values: &[T]) -> hdf5::Result<()> {
    if values.is_empty() {
        return Ok(());
    }
    let end = at + values.len();
    ds.resize(end)?;
    ds.write_slice(values, at..end)
}

fn event_columns(g: &Group) -> hdf5::Result<Vec<Dataset>> {
    EVENT_COLUMNS
        .iter()
        .map(|&(name, units)| match name {
            "kind" | "sign" | "segment" => extendible::<u8>(g, name, EVENT_CHUNK, units),
            _ => extendible::<f64>(g, name, EVENT_CHUNK, units),
        })
        .collect()
}

fn write_events(cols: &[Dataset], at: usize, events: &[Event]) -> hdf5::Result<()> {
    let u8s = |f: &dyn Fn(&Event) -> u8| events.iter().map(f).collect::<Vec<u8>>();
    let f64s = |f: &dyn Fn(&Event) -> f64| events.iter().map(f).collect::<Vec<f64>>();
    extend(&cols[0], at, &u8s(&|e| e.kind as u8))?;
    extend(&cols[1], at, &u8s(&|e| e.sign as u8))?;
    extend(&cols[2], at, &f64s(&|e| e.onset_time_s))?;
    extend(&cols[3], at, &f64s(&|e| e.peak_time_s))?;
    extend(&cols[4], at, &f64s(&|e| e.duration_s))?;
    extend(&cols[5], at, &f64s(&|e| e.magnitude))?;
    extend(&cols[6], at, &f64s(&|e| e.linked_delta_rho))?;
    extend(&cols[7], at, &u8s(&|e| e.segment.code()))?;
    extend(&cols[8], at, &f64s(&|e| e.stress_mpa))
}

fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl RunWriter {
    /// Create the file (refusing to overwrite one) with its metadata, status `running`.
    pub fn create(path: &Path, cfg: &RunConfig, instrument: &InstrumentInfo) -> Result<Self, StoreError> {
        let file = File::create_excl(path).map_err(h5err(path, "creating the run file"))?;
        let built = Self::layout(&file, cfg, instrument).map_err(h5err(path, "writing the file layout"))?;
        let (entry, data, events) = built;
        file.flush().map_err(h5err(path, "flushing the new file"))?;
        let cap = SAMPLE_CHUNK;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            entry,
            data,
            events,
            seq: Vec::with_capacity(cap),
            time: Vec::with_capacity(cap),
            load: Vec::with_capacity(cap),
            setpoint: Vec::with_capacity(cap),
            disp: Vec::with_capacity(cap),
            current: Vec::with_capacity(cap),
            voltage: Vec::with_capacity(cap),
            segment: Vec::with_capacity(cap),
            rho: Vec::with_capacity(cap),
            rows: 0,
            pending_events: Vec::with_capacity(256),
            event_rows: 0,
            finished: false,
        })
    }

    #[allow(clippy::type_complexity)]
    fn layout(file: &File, cfg: &RunConfig, ins: &InstrumentInfo) -> hdf5::Result<(Group, Vec<Dataset>, Vec<Dataset>)> {
        set_str_attr(file, "default", "entry")?;
        set_str_attr(file, "creator", &format!("nanoecr {}", nanoecr_core::SOFTWARE_VERSION))?;
        let root = file.group("/")?;
        let entry = group(&root, "entry", "NXentry")?;
        set_str_attr(&entry, "default", "data")?;
        set_str_attr(&entry, "start_time", &now_iso())?;
        set_str_attr(&entry, "status", RunStatus::Running.name())?;
        set_str_attr(&entry, "config_toml", &cfg.source_toml)?;
        set_str_attr(&entry, "software_version", nanoecr_core::SOFTWARE_VERSION)?;
        scalar_str(
            &entry,
            "title",
            &format!("NanoECR micro-compression, {} µN peak", cfg.load_function.peak_load_un()),
        )?;
        scalar_str(&entry, "start_time", &now_iso())?;

        let s = &cfg.raw.sample;
        let sample = group(&entry, "sample", "NXsample")?;
        scalar_str(&sample, "name", &s.material)?;
        scalar_str(&sample, "material", &s.material)?;
        scalar(&sample, "diameter_um", s.diameter_um, Some("um"))?;
        scalar(&sample, "height_um", s.height_um, Some("um"))?;
        scalar(&sample, "poisson_ratio", s.poisson_ratio, Some("1"))?;
        scalar(&sample, "youngs_modulus_gpa", s.youngs_modulus_gpa, Some("GPa"))?;

        let inst = group(&entry, "instrument", "NXinstrument")?;
        scalar_str(&inst, "name", "nanoindenter with NanoECR module")?;
        scalar_str(&inst, "backend", &ins.backend)?;
        scalar_str(&inst, "frame", &ins.frame)?;
        scalar_str(&inst, "smu", &ins.smu)?;
        scalar(&inst, "voltage_v", cfg.raw.bias.voltage_v, Some("V"))?;
        scalar(&inst, "compliance_a", cfg.raw.bias.compliance_a, Some("A"))?;
        scalar(&inst, "rate_hz", cfg.rate_hz(), Some("Hz"))?;
        scalar(&inst, "settle_s", cfg.raw.acquisition.settle_s, Some("s"))?;
        scalar(&inst, "max_load_un", cfg.raw.limits.max_load_un, Some("uN"))?;
        scalar(&inst, "max_displacement_nm", cfg.raw.limits.max_displacement_nm, Some("nm"))?;
        scalar(&inst, "peak_load_un", cfg.load_function.peak_load_un(), Some("uN"))?;

        let data = group(&entry, "data", "NXdata")?;
        set_str_attr(&data, "signal", "resistivity_change")?;
        set_str_attr(&data, "axes", "time")?;
        set_str_attr(&data, "time_indices", "0")?;
        let mut cols = Vec::with_capacity(DATA_COLUMNS.len());
        for &(name, units) in DATA_COLUMNS.iter() {
            cols.push(match name {
                "sequence" => extendible::<u64>(&data, name, SAMPLE_CHUNK, units)?,
                "segment" => extendible::<u8>(&data, name, SAMPLE_CHUNK, units)?,
                _ => extendible::<f64>(&data, name, SAMPLE_CHUNK, units)?,
            });
        }
        let rc = &cols[DATA_COLUMNS.len() - 1];
        set_str_attr(rc, "long_name", "relative resistivity change Δρ/ρ (NaN before the reference state)")?;
        let ev = group(&entry, "events", "NXcollection")?;
        let events = event_columns(&ev)?;
        Ok((entry, cols, events))
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows appended so far (written or buffered).
    pub fn samples_written(&self) -> u64 {
        self.rows + self.seq.len() as u64
    }

    /// Append samples with their Δρ/ρ (same length). Buffered; whole blocks go to disk.
    pub fn append(&mut self, samples: &[Sample], delta_rho: &[f64]) -> Result<(), StoreError> {
        if samples.len() != delta_rho.len() {
            return Err(StoreError::Other(format!(
                "append: {} samples but {} Δρ/ρ values",
                samples.len(),
                delta_rho.len()
            )));
        }
        for (s, r) in samples.iter().zip(delta_rho) {
            self.seq.push(s.seq);
            self.time.push(s.time_s);
            self.load.push(s.load_un);
            self.setpoint.push(s.setpoint_un);
            self.disp.push(s.disp_nm);
            self.current.push(s.current_a);
            self.voltage.push(s.voltage_v);
            self.segment.push(s.segment.code());
            self.rho.push(*r);
            if self.seq.len() >= SAMPLE_CHUNK {
                self.write_block()?;
            }
        }
        Ok(())
    }

    /// Queue events for `/entry/events` (written at the next flush).
    pub fn append_events(&mut self, events: &[Event]) -> Result<(), StoreError> {
        self.pending_events.extend_from_slice(events);
        Ok(())
    }

    fn write_block(&mut self) -> Result<(), StoreError> {
        if self.seq.is_empty() {
            return Ok(());
        }
        let at = self.rows as usize;
        let r = (|| {
            extend(&self.data[0], at, &self.seq)?;
            extend(&self.data[1], at, &self.time)?;
            extend(&self.data[2], at, &self.load)?;
            extend(&self.data[3], at, &self.setpoint)?;
            extend(&self.data[4], at, &self.disp)?;
            extend(&self.data[5], at, &self.current)?;
            extend(&self.data[6], at, &self.voltage)?;
            extend(&self.data[7], at, &self.segment)?;
            extend(&self.data[8], at, &self.rho)
        })();
        r.map_err(h5err(&self.path, format!("writing samples {at}..{}", at + self.seq.len())))?;
        self.rows += self.seq.len() as u64;
        for v in [
            &mut self.time,
            &mut self.load,
            &mut self.setpoint,
            &mut self.disp,
            &mut self.current,
            &mut self.voltage,
            &mut self.rho,
        ] {
            v.clear();
        }
        self.seq.clear();
        self.segment.clear();
        Ok(())
    }

    fn write_pending_events(&mut self) -> Result<(), StoreError> {
        if self.pending_events.is_empty() {
            return Ok(());
        }
        write_events(&self.events, self.event_rows as usize, &self.pending_events)
            .map_err(h5err(&self.path, "writing events"))?;
        self.event_rows += self.pending_events.len() as u64;
        self.pending_events.clear();
        Ok(())
    }

    /// Write everything buffered and flush the file to disk. After this, a crash loses nothing
    /// appended so far.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.write_block()?;
        self.write_pending_events()?;
        self.file.flush().map_err(h5err(&self.path, "flushing"))
    }

    /// Close the run: remaining rows, diagnostics, ground truth, end time, status and reason.
    pub fn finish(
        mut self,
        end: &EndReason,
        diagnostics: &Diagnostics,
        ground_truth: Option<&[Event]>,
    ) -> Result<PathBuf, StoreError> {
        self.flush()?;
        let path = self.path.clone();
        let r = (|| -> hdf5::Result<()> {
            let diag = group(&self.entry, "diagnostics", "NXcollection")?;
            write_diagnostics(&diag, diagnostics)?;
            if let Some(gt) = ground_truth {
                let g = group(&self.entry, "ground_truth", "NXcollection")?;
                scalar_str(&g, "description", "events injected by the simulated rig (nanoecr-sim)")?;
                let ev = group(&g, "events", "NXcollection")?;
                let cols = event_columns(&ev)?;
                write_events(&cols, 0, gt)?;
            }
            set_str_attr(&self.entry, "end_time", &now_iso())?;
            scalar_str(&self.entry, "end_time", &now_iso())?;
            set_str_attr(&self.entry, "end_reason", &end.describe())?;
            // The status goes last: a file that says `complete` has everything else.
            self.file.flush()?;
            set_str_attr(&self.entry, "status", end.status().name())?;
            self.file.flush()
        })();
        r.map_err(h5err(&path, "closing the run"))?;
        self.finished = true;
        Ok(path)
    }
}

fn write_diagnostics(g: &Group, d: &Diagnostics) -> hdf5::Result<()> {
    let edges: Vec<f64> =
        (0..nanoecr_core::diagnostics::LATENCY_BINS).map(nanoecr_core::LatencyHistogram::bin_lower_us).collect();
    let arr = |name: &str, v: &[u64], units: &str| -> hdf5::Result<()> {
        let ds = g.new_dataset::<u64>().shape(v.len()).create(name)?;
        ds.write(v)?;
        set_str_attr(&ds, "units", units)
    };
    arr("loop_lateness_counts", &d.loop_lateness.counts, "1")?;
    let e = g.new_dataset::<f64>().shape(edges.len()).create("latency_bin_lower_us")?;
    e.write(&edges[..])?;
    set_str_attr(&e, "units", "us")?;
    scalar(g, "loop_lateness_max_us", d.loop_lateness.max_us, Some("us"))?;
    scalar(g, "loop_lateness_p50_us", d.loop_lateness.quantile_us(0.5).unwrap_or(f64::NAN), Some("us"))?;
    scalar(g, "loop_lateness_p99_us", d.loop_lateness.quantile_us(0.99).unwrap_or(f64::NAN), Some("us"))?;
    scalar(g, "missed_deadlines", d.missed_deadlines, Some("1"))?;
    scalar(g, "ticks", d.ticks, Some("1"))?;
    scalar(g, "ring_high_water", d.ring_high_water, Some("1"))?;
    scalar(g, "ring_capacity", d.ring_capacity, Some("1"))?;
    scalar(g, "dropped_samples", d.dropped_samples, Some("1"))?;
    arr("detection_latency_counts", &d.detection_latency.counts, "1")?;
    scalar(g, "detection_latency_max_us", d.detection_latency.max_us, Some("us"))?;
    scalar(g, "realtime_scheduling", u8::from(d.realtime_scheduling), Some("1"))?;
    scalar(g, "paced", u8::from(d.paced), Some("1"))?;
    scalar(g, "rate_hz", d.rate_hz, Some("Hz"))?;
    scalar(g, "load_tracking_rms_un", d.load_tracking_rms_un, Some("uN"))?;
    // The exact record, for our own reader.
    set_str_attr(g, "json", &serde_json::to_string(d).unwrap_or_default())
}

impl Drop for RunWriter {
    fn drop(&mut self) {
        if !self.finished {
            // Keep what we have; the status stays `running`, which is what a crash looks like.
            if let Err(e) = self.flush() {
                tracing::error!(error = %e, "flushing an unfinished run file failed");
            }
        }
    }
}

/// See [`crate::recover`].
pub(crate) fn recover(path: &Path) -> Result<RecoverOutcome, StoreError> {
    if !path.exists() {
        return Err(StoreError::Io {
            path: path.to_path_buf(),
            during: "recovering".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    let mut cleared_flag = false;
    let file = match File::open_rw(path) {
        Ok(f) => f,
        Err(first) => {
            // Files in the newest format (or SWMR) keep a "file open for writing" flag in the
            // superblock after a crash; h5clear (hdf5-tools) resets it.
            let out = std::process::Command::new("h5clear").arg("-s").arg(path).output();
            match out {
                Ok(o) if o.status.success() => cleared_flag = true,
                _ => {
                    return Err(StoreError::Hdf5 {
                        path: path.to_path_buf(),
                        during: "opening for recovery".into(),
                        source: first,
                    })
                }
            }
            File::open_rw(path).map_err(h5err(path, "opening for recovery after h5clear"))?
        }
    };
    let entry = file
        .group("entry")
        .map_err(|_| StoreError::Invalid { path: path.to_path_buf(), what: "no /entry group".into() })?;
    let status_before = crate::reader::read_str_attr(&entry, "status")
        .and_then(|s| RunStatus::from_name(&s))
        .unwrap_or(RunStatus::Running);
    let rows = file.dataset("entry/data/time").map(|d| d.size() as u64).unwrap_or(0);
    let changed = status_before == RunStatus::Running;
    if changed {
        let r = (|| -> hdf5::Result<()> {
            set_str_attr(&entry, "end_reason", "ended without closing (recovered)")?;
            set_str_attr(&entry, "recovered_time", &now_iso())?;
            set_str_attr(&entry, "status", RunStatus::Failed.name())?;
            file.flush()
        })();
        r.map_err(h5err(path, "marking the file failed"))?;
    }
    Ok(RecoverOutcome { status_before, changed, cleared_flag, rows })
}
