//! The run-file writer.
//!
//! Life cycle of a file (docs/file-format.md, "Live reading"):
//! 1. created in the HDF5 1.10 file format with every group, dataset and attribute the run will
//!    ever have (the values that only exist at the end — `status`, `end_time`, `end_reason`,
//!    diagnostics, ground truth — as placeholders of fixed size);
//! 2. switched to SWMR writing (`H5Fstart_swmr_write`): from here on the writer only extends
//!    datasets and writes values, never creates an object, so SWMR readers can follow;
//! 3. flushed at least every 100 ms by the pipeline;
//! 4. closed by [`RunWriter::finish`] (values written, `status` last) or, without it, by drop
//!    (status stays `running`).
//!
//! While the file is open for writing it holds a shared `flock` of its own so that `recover`
//! refuses to touch a run that is still being written (HDF5 releases its own lock in SWMR mode).

use std::path::{Path, PathBuf};

use hdf5::file::LibraryVersion;
use hdf5::types::{FixedAscii, FixedUnicode, TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::{Attribute, Dataset, File, Group, H5Type, Location};
use nanoecr_core::{Diagnostics, EndReason, Event, RunConfig, RunStatus, Sample};

use crate::chunk_write::{ChunkEncoder, ColumnEncoder, Columns};
use crate::names::{
    DATA_COLUMNS, DEFLATE_LEVEL, DIAG_JSON_LEN, EVENT_CHUNK, EVENT_COLUMNS, REASON_LEN, SAMPLE_CHUNK, STATUS_LEN,
    TIME_LEN,
};
use crate::StoreError;

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
    /// Shuffles, deflates and stores full chunks off this thread. First field, so that it is
    /// dropped (its worker joined, its dataset handles closed) before the file.
    encoder: ChunkEncoder,
    path: PathBuf,
    file: File,
    entry: Group,
    events: Vec<Dataset>,
    /// `/entry/ground_truth/events` columns (simulated runs only).
    gt_events: Option<Vec<Dataset>>,
    diagnostics: Group,
    /// Rows per chunk of the sample columns ([`sample_chunk_rows`]); each full chunk goes to the
    /// compression worker.
    chunk_rows: usize,
    /// The rows of the current (not yet full) chunk, which starts at row `chunk_start`.
    cols: Columns,
    /// Index of the current chunk's first row: always a multiple of `chunk_rows`.
    chunk_start: u64,
    /// Rows of the current chunk already written (through libhdf5) by an earlier flush; the
    /// whole chunk is stored again, encoded by the worker, once it is full.
    flushed: u64,
    pending_events: Vec<Event>,
    event_rows: u64,
    finished: bool,
    /// Shared advisory lock held while the file is open for writing; declared after the HDF5
    /// handles so it is released only after they are closed.
    _writing: Option<nix::fcntl::Flock<std::fs::File>>,
}

impl std::fmt::Debug for RunWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunWriter")
            .field("path", &self.path)
            .field("rows", &self.samples_written())
            .finish_non_exhaustive()
    }
}

pub(crate) fn h5err(path: &Path, during: impl Into<String>) -> impl FnOnce(hdf5::Error) -> StoreError + '_ {
    let during = during.into();
    move |source| StoreError::Hdf5 { path: path.to_path_buf(), during, source }
}

fn clean(s: &str) -> String {
    // Interior NULs cannot be stored in an HDF5 string; replace them rather than fail a run.
    s.replace('\0', " ")
}

fn vlu(s: &str) -> VarLenUnicode {
    clean(s).parse().unwrap_or_default()
}

/// Largest fixed-length string value written or read through the helpers below.
const FIXED_CAP: usize = 16384;

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn fixed_unicode(s: &str, n: usize) -> hdf5::Result<Box<FixedUnicode<FIXED_CAP>>> {
    let v = clean(s);
    let v = cut(&v, n.min(FIXED_CAP));
    v.parse::<FixedUnicode<FIXED_CAP>>().map(Box::new).map_err(|e| hdf5::Error::from(e.to_string()))
}

fn fixed_ascii(s: &str, n: usize) -> hdf5::Result<Box<FixedAscii<FIXED_CAP>>> {
    let v: String = clean(s).chars().map(|c| if c.is_ascii() { c } else { '?' }).collect();
    let v = cut(&v, n.min(FIXED_CAP));
    FixedAscii::<FIXED_CAP>::from_ascii(v.as_bytes()).map(Box::new).map_err(|e| hdf5::Error::from(e.to_string()))
}

/// Write a string into an existing scalar string attribute, in whatever string type it has
/// (fixed-length values are cut to the attribute's size).
fn write_str(attr: &Attribute, value: &str) -> hdf5::Result<()> {
    match attr.dtype()?.to_descriptor()? {
        TypeDescriptor::FixedUnicode(n) => attr.write_scalar(&*fixed_unicode(value, n)?),
        TypeDescriptor::FixedAscii(n) => attr.write_scalar(&*fixed_ascii(value, n)?),
        TypeDescriptor::VarLenAscii => {
            let v: String = clean(value).chars().map(|c| if c.is_ascii() { c } else { '?' }).collect();
            attr.write_scalar(&VarLenAscii::from_ascii(v.as_bytes()).map_err(|e| hdf5::Error::from(e.to_string()))?)
        }
        _ => attr.write_scalar(&vlu(value)),
    }
}

/// Create (as variable-length UTF-8) or overwrite a scalar string attribute. Creates an object:
/// not for use once the file is in SWMR mode.
pub(crate) fn set_str_attr(loc: &Location, name: &str, value: &str) -> hdf5::Result<()> {
    match loc.attr(name) {
        Ok(a) => write_str(&a, value),
        Err(_) => loc.new_attr::<VarLenUnicode>().shape(()).create(name)?.write_scalar(&vlu(value)),
    }
}

/// Overwrite an existing scalar string attribute; an error if it does not exist (SWMR-safe).
pub(crate) fn write_str_attr(loc: &Location, name: &str, value: &str) -> hdf5::Result<()> {
    write_str(&loc.attr(name)?, value)
}

/// Create a fixed-length (`N` bytes, UTF-8, NUL-padded) scalar string attribute, so that its
/// value can be changed later without allocating anything in the file.
fn fixed_attr<const N: usize>(loc: &Location, name: &str, value: &str) -> hdf5::Result<()> {
    let a = loc.new_attr::<FixedUnicode<N>>().shape(()).create(name)?;
    write_str(&a, value)
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

/// Rows per chunk of the ground-truth event columns. Unlike the detected events, which grow at
/// every flush of a live file (small chunks bound what each rewrite costs), the ground truth is
/// written once, when the run closes ([`write_ground_truth`]); with 256-row chunks a 30-minute
/// simulated run's 18 857 events would be ≈ 670 streams, each paying the codec's set-up (zlib-rs
/// clears a 128 KiB hash table per stream).
const GROUND_TRUTH_CHUNK: usize = 8192;

fn event_columns(g: &Group, chunk: usize) -> hdf5::Result<Vec<Dataset>> {
    EVENT_COLUMNS
        .iter()
        .map(|&(name, units)| match name {
            "kind" | "sign" | "segment" => extendible::<u8>(g, name, chunk, units),
            _ => extendible::<f64>(g, name, chunk, units),
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

/// The ground-truth table, written once when the run closes: encoded here with the writer's own
/// codec ([`ColumnEncoder`]) rather than by libhdf5's filter pipeline (system zlib, ≈ 3 % of a
/// 30-minute `--fast` run, on its critical path after the last sample).
fn write_ground_truth(cols: &[Dataset], events: &[Event]) -> hdf5::Result<()> {
    let col = |i: usize| cols.get(i).ok_or_else(|| hdf5::Error::from("missing ground-truth column"));
    let mut enc = ColumnEncoder::new();
    let u8s = |f: &dyn Fn(&Event) -> u8| events.iter().map(f).collect::<Vec<u8>>();
    let f64s = |f: &dyn Fn(&Event) -> f64| events.iter().map(f).collect::<Vec<f64>>();
    let chunk = GROUND_TRUTH_CHUNK;
    enc.write_column(col(0)?, &u8s(&|e| e.kind as u8), u8::to_ne_bytes, chunk)?;
    enc.write_column(col(1)?, &u8s(&|e| e.sign as u8), u8::to_ne_bytes, chunk)?;
    enc.write_column(col(2)?, &f64s(&|e| e.onset_time_s), f64::to_ne_bytes, chunk)?;
    enc.write_column(col(3)?, &f64s(&|e| e.peak_time_s), f64::to_ne_bytes, chunk)?;
    enc.write_column(col(4)?, &f64s(&|e| e.duration_s), f64::to_ne_bytes, chunk)?;
    enc.write_column(col(5)?, &f64s(&|e| e.magnitude), f64::to_ne_bytes, chunk)?;
    enc.write_column(col(6)?, &f64s(&|e| e.linked_delta_rho), f64::to_ne_bytes, chunk)?;
    enc.write_column(col(7)?, &u8s(&|e| e.segment.code()), u8::to_ne_bytes, chunk)?;
    enc.write_column(col(8)?, &f64s(&|e| e.stress_mpa), f64::to_ne_bytes, chunk)
}

fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// What [`RunWriter::layout`] created and the writer keeps open.
struct Layout {
    entry: Group,
    data: Vec<Dataset>,
    events: Vec<Dataset>,
    gt_events: Option<Vec<Dataset>>,
    diagnostics: Group,
}

impl RunWriter {
    /// Create the file (refusing to overwrite one) with its metadata, status `running`, and
    /// switch it to SWMR writing so that readers can follow the run live. For rows that arrive in
    /// real time ([`Pacing::RealTime`]); see [`RunWriter::create_with`].
    pub fn create(path: &Path, cfg: &RunConfig, instrument: &InstrumentInfo) -> Result<Self, StoreError> {
        Self::create_with(path, cfg, instrument, Pacing::RealTime)
    }

    /// [`RunWriter::create`] for rows that arrive as `pacing` says, which sets the chunk size of
    /// the sample columns ([`sample_chunk_rows`]).
    pub fn create_with(
        path: &Path,
        cfg: &RunConfig,
        instrument: &InstrumentInfo,
        pacing: Pacing,
    ) -> Result<Self, StoreError> {
        let cap = sample_chunk_rows(cfg.rate_hz(), pacing);
        // Pinned to the 1.10 format (what SWMR needs) rather than "latest", so that a build
        // against a newer HDF5 still writes files every HDF5 ≥ 1.10 reader opens.
        let file = File::with_options()
            .with_fapl(|p| p.libver_bounds(LibraryVersion::V110, LibraryVersion::V110))
            .create_excl(path)
            .map_err(h5err(path, "creating the run file"))?;
        crate::cloexec::close_on_exec(&file);
        let layout = Self::layout(&file, cfg, instrument, cap).map_err(h5err(path, "writing the file layout"))?;
        file.flush().map_err(h5err(path, "flushing the new file"))?;
        file.start_swmr().map_err(h5err(path, "switching to SWMR writing"))?;
        let writing = match std::fs::File::open(path) {
            Ok(f) => match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockSharedNonblock) {
                Ok(l) => Some(l),
                Err((_, errno)) => {
                    tracing::warn!(file = %path.display(), %errno, "cannot lock the run file against recovery while writing");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot lock the run file against recovery while writing");
                None
            }
        };
        let (encoder, cols) = ChunkEncoder::start(layout.data, cap).map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            during: "starting the compression worker".into(),
            source,
        })?;
        Ok(Self {
            encoder,
            path: path.to_path_buf(),
            file,
            entry: layout.entry,
            events: layout.events,
            gt_events: layout.gt_events,
            diagnostics: layout.diagnostics,
            chunk_rows: cap,
            cols,
            chunk_start: 0,
            flushed: 0,
            pending_events: Vec::with_capacity(256),
            event_rows: 0,
            finished: false,
            _writing: writing,
        })
    }

    /// Everything the file will ever hold, created now: in SWMR mode no object may be created.
    fn layout(file: &File, cfg: &RunConfig, ins: &InstrumentInfo, chunk: usize) -> hdf5::Result<Layout> {
        set_str_attr(file, "default", "entry")?;
        set_str_attr(file, "creator", &format!("nanoecr {}", nanoecr_core::SOFTWARE_VERSION))?;
        let root = file.group("/")?;
        let entry = group(&root, "entry", "NXentry")?;
        set_str_attr(&entry, "default", "data")?;
        let start = now_iso();
        set_str_attr(&entry, "start_time", &start)?;
        fixed_attr::<STATUS_LEN>(&entry, "status", RunStatus::Running.name())?;
        fixed_attr::<TIME_LEN>(&entry, "end_time", "")?;
        fixed_attr::<REASON_LEN>(&entry, "end_reason", "")?;
        set_str_attr(&entry, "config_toml", &cfg.source_toml)?;
        set_str_attr(&entry, "software_version", nanoecr_core::SOFTWARE_VERSION)?;
        scalar_str(
            &entry,
            "title",
            &format!("NanoECR micro-compression, {} µN peak", cfg.load_function.peak_load_un()),
        )?;
        scalar_str(&entry, "start_time", &start)?;
        entry
            .new_dataset::<FixedUnicode<TIME_LEN>>()
            .shape(())
            .create("end_time")?
            .write_scalar(&*fixed_unicode("", TIME_LEN)?)?;

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

        let data_g = group(&entry, "data", "NXdata")?;
        set_str_attr(&data_g, "signal", "resistivity_change")?;
        set_str_attr(&data_g, "axes", "time")?;
        set_str_attr(&data_g, "time_indices", "0")?;
        let mut data = Vec::with_capacity(DATA_COLUMNS.len());
        for &(name, units) in DATA_COLUMNS.iter() {
            data.push(match name {
                "sequence" => extendible::<u64>(&data_g, name, chunk, units)?,
                "segment" => extendible::<u8>(&data_g, name, chunk, units)?,
                _ => extendible::<f64>(&data_g, name, chunk, units)?,
            });
        }
        let rc = &data[DATA_COLUMNS.len() - 1];
        set_str_attr(rc, "long_name", "relative resistivity change Δρ/ρ (NaN before the reference state)")?;
        let ev = group(&entry, "events", "NXcollection")?;
        let events = event_columns(&ev, EVENT_CHUNK)?;

        // Only the simulator knows the truth; it hands it over at the end of the run.
        let gt_events = if ins.backend == "sim" {
            let g = group(&entry, "ground_truth", "NXcollection")?;
            scalar_str(&g, "description", "events injected by the simulated rig (nanoecr-sim)")?;
            let ev = group(&g, "events", "NXcollection")?;
            Some(event_columns(&ev, GROUND_TRUTH_CHUNK)?)
        } else {
            None
        };
        let diagnostics = group(&entry, "diagnostics", "NXcollection")?;
        diagnostics_layout(&diagnostics)?;
        Ok(Layout { entry, data, events, gt_events, diagnostics })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows appended so far (written or buffered).
    pub fn samples_written(&self) -> u64 {
        self.chunk_start + self.cols.len() as u64
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
        let (mut samples, mut delta_rho) = (samples, delta_rho);
        while !samples.is_empty() {
            // Up to the end of the current chunk, column by column: extending from a slice
            // iterator of known length checks capacity once per column, not once per value.
            let n = self.chunk_rows.saturating_sub(self.cols.len()).clamp(1, samples.len());
            let (now, later) = samples.split_at(n);
            let (rho_now, rho_later) = delta_rho.split_at(n);
            let c = &mut self.cols;
            c.seq.extend(now.iter().map(|s| s.seq));
            c.time.extend(now.iter().map(|s| s.time_s));
            c.load.extend(now.iter().map(|s| s.load_un));
            c.setpoint.extend(now.iter().map(|s| s.setpoint_un));
            c.disp.extend(now.iter().map(|s| s.disp_nm));
            c.current.extend(now.iter().map(|s| s.current_a));
            c.voltage.extend(now.iter().map(|s| s.voltage_v));
            c.segment.extend(now.iter().map(|s| s.segment.code()));
            c.rho.extend_from_slice(rho_now);
            if c.len() >= self.chunk_rows {
                self.submit_chunk()?;
            }
            (samples, delta_rho) = (later, rho_later);
        }
        Ok(())
    }

    /// Queue events for `/entry/events` (written at the next flush).
    pub fn append_events(&mut self, events: &[Event]) -> Result<(), StoreError> {
        self.pending_events.extend_from_slice(events);
        Ok(())
    }

    /// Hand the full current chunk to the compression worker and start the next one.
    fn submit_chunk(&mut self) -> Result<(), StoreError> {
        let first = self.chunk_start;
        let full = std::mem::take(&mut self.cols);
        let rows = full.len() as u64;
        self.cols =
            self.encoder.submit(full, first).map_err(|e| StoreError::Other(format!("{}: {e}", self.path.display())))?;
        self.chunk_start += rows;
        self.flushed = self.chunk_start;
        Ok(())
    }

    /// Store the current, partial chunk if it holds rows no flush has stored yet: padded to a
    /// whole chunk and encoded by the worker, exactly as libhdf5 stores an edge chunk (fill value
    /// 0 beyond the extent), so the consumer thread never deflates. Once the chunk is full the
    /// worker stores it again, whole, over this copy. At most one such chunk per flush (every
    /// 100 ms): at 1 kHz that deflates a 512-row chunk for 100 new rows, which costs nothing
    /// measurable at that rate.
    fn write_partial(&mut self) -> Result<(), StoreError> {
        let end = self.samples_written();
        if end <= self.flushed {
            return Ok(());
        }
        self.encoder
            .store_partial(&self.cols, self.chunk_start, self.chunk_rows)
            .map_err(|e| StoreError::Other(format!("{}: {e}", self.path.display())))?;
        self.flushed = end;
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
        self.encoder.drain().map_err(|e| StoreError::Other(format!("{}: {e}", self.path.display())))?;
        self.write_partial()?;
        self.write_pending_events()?;
        self.file.flush().map_err(h5err(&self.path, "flushing"))
    }

    /// Close the run: remaining rows, diagnostics, ground truth, end time, status and reason.
    /// Everything written here already exists in the file (created by `create`), so this works
    /// in SWMR mode; `status` goes last.
    pub fn finish(
        mut self,
        end: &EndReason,
        diagnostics: &Diagnostics,
        ground_truth: Option<&[Event]>,
    ) -> Result<PathBuf, StoreError> {
        self.flush()?;
        let path = self.path.clone();
        let r = (|| -> hdf5::Result<()> {
            write_diagnostics(&self.diagnostics, diagnostics)?;
            match (ground_truth, &self.gt_events) {
                (Some(gt), Some(cols)) => write_ground_truth(cols, gt)?,
                (Some(gt), None) => tracing::warn!(
                    file = %self.path.display(),
                    events = gt.len(),
                    "ground truth handed over for a run not created as simulated; not stored"
                ),
                (None, _) => {}
            }
            let end_time = now_iso();
            write_str_attr(&self.entry, "end_time", &end_time)?;
            self.entry.dataset("end_time")?.write_scalar(&*fixed_unicode(&end_time, TIME_LEN)?)?;
            write_str_attr(&self.entry, "end_reason", &end.describe())?;
            // The status goes last: a file that says `complete` has everything else.
            self.file.flush()?;
            write_str_attr(&self.entry, "status", end.status().name())?;
            self.file.flush()
        })();
        r.map_err(h5err(&path, "closing the run"))?;
        self.finished = true;
        // Close every handle (the file leaves SWMR mode, its flags are cleared) and drop the lock.
        drop(self);
        compact(&path);
        Ok(path)
    }
}

/// Total stored bytes of the datasets in `g` and its subgroups.
fn stored_bytes(g: &Group) -> hdf5::Result<u64> {
    let mut total = 0;
    for name in g.member_names()? {
        if let Ok(ds) = g.dataset(&name) {
            total += ds.storage_size();
        } else if let Ok(sub) = g.group(&name) {
            total += stored_bytes(&sub)?;
        }
    }
    Ok(total)
}

/// How the rows of a run arrive, which decides the chunk size of the sample columns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Pacing {
    /// At the sampling rate, as in a real test (and the paced simulator): flushes every 100 ms
    /// hold a fraction of a chunk at low rates.
    #[default]
    RealTime,
    /// As fast as the simulator produces them (`--fast`): every flush holds many chunks.
    Unpaced,
}

/// Rows per chunk of the sample columns.
///
/// In real time: what the run samples in ≈ 0.2 s, as a power of two, from 512 to
/// [`SAMPLE_CHUNK`]. Each flush (every 100 ms by default) rewrites the column's partial last
/// chunk, and in SWMR mode the old copy is never freed, so a live file grows by about one partial
/// chunk per column per flush: at 1 kHz an 8192-row chunk made the live file grow ≈ 0.96 MB/s,
/// 34× the data (measured; docs/file-format.md). Small chunks at low rates bound that; at 100 kHz
/// a flush fills about a chunk anyway.
///
/// Unpaced: always [`SAMPLE_CHUNK`]. A flush then follows hundreds of thousands of rows, so the
/// partial chunk it rewrites is no longer the live file's growth, while small chunks cost a
/// Huffman table, an `H5Dwrite_chunk` and an extent change each, and deflate less well: 8192-row
/// chunks made the file of a 30-minute `--fast` run at 1 kHz 10 % smaller and took the
/// compression worker's HDF5 and kernel time from ≈ 24 % to ≈ 9 % of its own
/// (docs/performance.md, "Issue 11").
pub(crate) fn sample_chunk_rows(rate_hz: f64, pacing: Pacing) -> usize {
    match pacing {
        Pacing::RealTime => ((rate_hz * 0.2).max(1.0) as usize).next_power_of_two().clamp(512, SAMPLE_CHUNK),
        Pacing::Unpaced => SAMPLE_CHUNK,
    }
}

/// Dead space (bytes beyond what the datasets store) below which a closed file is left as it is.
const COMPACT_SLACK: u64 = 1 << 20;

/// Attributes an object keeps in its header before HDF5 moves them to dense storage (the
/// library's default `max_compact`, `H5Pset_attr_phase_change`); run files never delete
/// attributes, so more than this means dense.
const MAX_COMPACT_ATTRIBUTES: usize = 8;

/// Whether any object in `group` (itself included) holds its attributes in dense storage.
fn has_dense_attributes(group: &hdf5::Group) -> hdf5::Result<bool> {
    if group.attr_names()?.len() > MAX_COMPACT_ATTRIBUTES {
        return Ok(true);
    }
    for d in group.datasets()? {
        if d.attr_names()?.len() > MAX_COMPACT_ATTRIBUTES {
            return Ok(true);
        }
    }
    for g in group.groups()? {
        if has_dense_attributes(&g)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// In SWMR mode HDF5 never frees the old place of a rewritten chunk (a reader may still hold an
/// index pointing at it), and each flush rewrites the partial last chunk of every column, larger
/// each time: a slow run ends with a file several times its data. A finished run is therefore
/// copied object by object (chunks stay compressed as they are) into a fresh file that replaces
/// the original atomically — only when that saves more than [`COMPACT_SLACK`] and a quarter of
/// the file. Any failure leaves the original, which is complete and valid, in place. Returns the
/// file's size before and after when it was compacted.
pub(crate) fn compact(path: &Path) -> Option<(u64, u64)> {
    let tmp = match path.file_name() {
        Some(n) => path.with_file_name(format!(".{}.compacting", n.to_string_lossy())),
        None => return None,
    };
    let r = (|| -> Result<Option<(u64, u64)>, String> {
        let size = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
        let src = File::open(path).map_err(|e| e.to_string())?;
        crate::cloexec::close_on_exec(&src);
        let entry = src.group("entry").map_err(|e| e.to_string())?;
        let stored = stored_bytes(&entry).map_err(|e| e.to_string())?;
        let dead = size.saturating_sub(stored);
        if dead <= COMPACT_SLACK || dead <= size / 4 {
            return Ok(None);
        }
        if has_dense_attributes(&entry).map_err(|e| e.to_string())? {
            // H5Ocopy of an object whose string attributes moved to dense storage dereferences
            // a null conversion callback in HDF5 before 1.14.4 (HDFGroup/hdf5#2414, fixed by
            // PR #3967); Debian's libhdf5 is 1.10. A larger file beats a crashed daemon.
            tracing::debug!(file = %path.display(), "not compacting: an object has dense attribute storage");
            return Ok(None);
        }
        if tmp.exists() {
            std::fs::remove_file(&tmp).map_err(|e| e.to_string())?;
        }
        {
            let dst = File::with_options()
                .with_fapl(|p| p.libver_bounds(LibraryVersion::V110, LibraryVersion::V110))
                .create_excl(&tmp)
                .map_err(|e| e.to_string())?;
            crate::cloexec::close_on_exec(&dst);
            for name in ["default", "creator"] {
                if let Some(v) = crate::reader::read_str_attr(&src, name) {
                    set_str_attr(&dst, name, &v).map_err(|e| e.to_string())?;
                }
            }
            entry.copy_to(&dst, "entry").map_err(|e| e.to_string())?;
            dst.flush().map_err(|e| e.to_string())?;
        }
        drop(entry);
        drop(src);
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, path).map_err(|e| e.to_string())?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Make the rename durable; failing that is harmless (either file is complete).
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
        let after = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
        Ok(Some((size, after)))
    })();
    match r {
        Ok(Some((before, after))) => {
            tracing::debug!(file = %path.display(), before, after, "compacted the closed run file");
            Some((before, after))
        }
        Ok(None) => None,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(file = %path.display(), error = %e, "could not compact the closed run file; kept as written");
            None
        }
    }
}

/// Scalars of `/entry/diagnostics`: (name, value, units).
fn diagnostic_scalars(d: &Diagnostics) -> [(&'static str, DiagValue, &'static str); 40] {
    use DiagValue::{F64, I64, U64, U8};
    [
        ("loop_lateness_max_us", F64(d.loop_lateness.max_us), "us"),
        ("loop_lateness_p50_us", F64(d.loop_lateness.quantile_us(0.5).unwrap_or(f64::NAN)), "us"),
        ("loop_lateness_p99_us", F64(d.loop_lateness.quantile_us(0.99).unwrap_or(f64::NAN)), "us"),
        ("missed_deadlines", U64(d.missed_deadlines), "1"),
        ("ticks", U64(d.ticks), "1"),
        ("ring_high_water", U64(d.ring_high_water), "1"),
        ("ring_capacity", U64(d.ring_capacity), "1"),
        ("dropped_samples", U64(d.dropped_samples), "1"),
        ("ring_full_waits", U64(d.ring_full_waits), "1"),
        ("detection_latency_max_us", F64(d.detection_latency.max_us), "us"),
        ("realtime_scheduling", U8(u8::from(d.realtime_scheduling)), "1"),
        ("paced", U8(u8::from(d.paced)), "1"),
        ("rate_hz", F64(d.rate_hz), "Hz"),
        ("load_tracking_rms_un", F64(d.load_tracking_rms_un), "uN"),
        ("load_tracking_max_un", F64(d.load_tracking_max_un), "uN"),
        ("late_wakeups", U64(d.late_wakeups), "1"),
        ("skipped_ticks", U64(d.skipped_ticks), "1"),
        ("moved_ticks", U64(d.moved_ticks), "1"),
        ("max_late_streak", U64(d.max_late_streak), "1"),
        ("stale_feedback_ticks", U64(d.stale_feedback_ticks), "1"),
        ("max_command_gap_us", F64(d.max_command_gap_us), "us"),
        ("stall_count", U64(d.stalls.len() as u64), "1"),
        ("stalls_overflow", U64(d.stalls_overflow), "1"),
        ("memory_locked", U8(u8::from(d.memory_locked)), "1"),
        ("cpu", I64(d.cpu.map_or(-1, |c| c as i64)), "1"),
        ("control_page_faults", U64(d.control_page_faults), "1"),
        ("control_preemptions", U64(d.control_preemptions), "1"),
        ("smu_timer_trigger", U8(u8::from(d.smu_pacing == "timer")), "1"),
        ("smu_misalignment_max_us", F64(d.smu_misalignment_max_us.unwrap_or(f64::NAN)), "us"),
        ("smu_lag_max_ms", F64(d.smu_lag_max_ms), "ms"),
        ("wakeup_lateness_max_us", F64(d.wakeup_lateness.max_us), "us"),
        ("wakeup_lateness_p99_us", F64(d.wakeup_lateness.quantile_us(0.99).unwrap_or(f64::NAN)), "us"),
        ("batch_work_max_us", F64(d.batch_work.max_us), "us"),
        ("batch_work_p99_us", F64(d.batch_work.quantile_us(0.99).unwrap_or(f64::NAN)), "us"),
        ("spin_window_us", F64(d.spin_window_us), "us"),
        ("idle_latency_zero", U8(u8::from(d.idle_latency_zero)), "1"),
        ("missed_late_wakeup", U64(d.missed_by_cause.late_wakeup), "1"),
        ("missed_spin", U64(d.missed_by_cause.spin), "1"),
        ("missed_work", U64(d.missed_by_cause.work), "1"),
        ("control_cpu_us", F64(d.control_cpu_us), "us"),
    ]
}

/// The stall list's columns, `STALL_CAPACITY` rows each, of which the first `stall_count` hold
/// stalls: (name, units).
const STALL_COLUMNS: [(&str, &str); 3] = [("stall_start_time", "s"), ("stall_length_us", "us"), ("stall_ticks", "1")];

#[derive(Clone, Copy)]
enum DiagValue {
    F64(f64),
    U64(u64),
    U8(u8),
    I64(i64),
}

/// The lateness split's datasets (`nanoecr_core::LatenessSplit`): class edges, wake-ups and
/// missed ticks per class.
const LATENESS_SPLIT: [&str; 3] = ["lateness_class_lower_us", "wakeups_by_lateness", "missed_by_lateness"];

const DIAG_HISTOGRAMS: [&str; 4] =
    ["loop_lateness_counts", "detection_latency_counts", "wakeup_lateness_counts", "batch_work_counts"];

/// `/entry/diagnostics` with placeholders (NaN for floats, 0 for counts, `@json` empty) that
/// `finish` overwrites in place.
fn diagnostics_layout(g: &Group) -> hdf5::Result<()> {
    let bins = nanoecr_core::diagnostics::LATENCY_BINS;
    let edges: Vec<f64> = (0..bins).map(nanoecr_core::LatencyHistogram::bin_lower_us).collect();
    for name in DIAG_HISTOGRAMS {
        let ds = g.new_dataset::<u64>().shape(bins).create(name)?;
        ds.write(&vec![0u64; bins][..])?;
        set_str_attr(&ds, "units", "1")?;
    }
    let e = g.new_dataset::<f64>().shape(bins).create("latency_bin_lower_us")?;
    e.write(&edges[..])?;
    set_str_attr(&e, "units", "us")?;
    let classes = nanoecr_core::diagnostics::LATENESS_CLASSES;
    let e = g.new_dataset::<f64>().shape(classes).create(LATENESS_SPLIT[0])?;
    e.write(&vec![f64::NAN; classes][..])?;
    set_str_attr(&e, "units", "us")?;
    for name in &LATENESS_SPLIT[1..] {
        let ds = g.new_dataset::<u64>().shape(classes).create(*name)?;
        ds.write(&vec![0u64; classes][..])?;
        set_str_attr(&ds, "units", "1")?;
    }
    for (name, value, units) in diagnostic_scalars(&Diagnostics::default()) {
        match value {
            DiagValue::F64(_) => scalar(g, name, f64::NAN, Some(units))?,
            DiagValue::U64(_) => scalar(g, name, 0u64, Some(units))?,
            DiagValue::U8(_) => scalar(g, name, 0u8, Some(units))?,
            DiagValue::I64(_) => scalar(g, name, -1i64, Some(units))?,
        }
    }
    // Fixed-size stall columns, so closing the run only writes values.
    let cap = nanoecr_core::diagnostics::STALL_CAPACITY;
    for (name, units) in STALL_COLUMNS {
        let ds = if units == "1" {
            let ds = g.new_dataset::<u64>().shape(cap).create(name)?;
            ds.write(&vec![0u64; cap][..])?;
            ds
        } else {
            let ds = g.new_dataset::<f64>().shape(cap).create(name)?;
            ds.write(&vec![f64::NAN; cap][..])?;
            ds
        };
        set_str_attr(&ds, "units", units)?;
    }
    fixed_attr::<DIAG_JSON_LEN>(g, "json", "")
}

/// Fill in `/entry/diagnostics` (created by [`diagnostics_layout`]); writes values only.
fn write_diagnostics(g: &Group, d: &Diagnostics) -> hdf5::Result<()> {
    g.dataset(DIAG_HISTOGRAMS[0])?.write(&d.loop_lateness.counts[..])?;
    g.dataset(DIAG_HISTOGRAMS[1])?.write(&d.detection_latency.counts[..])?;
    g.dataset(DIAG_HISTOGRAMS[2])?.write(&d.wakeup_lateness.counts[..])?;
    g.dataset(DIAG_HISTOGRAMS[3])?.write(&d.batch_work.counts[..])?;
    g.dataset(LATENESS_SPLIT[0])?.write(&d.lateness_split.lower_us[..])?;
    g.dataset(LATENESS_SPLIT[1])?.write(&d.lateness_split.wakeups[..])?;
    g.dataset(LATENESS_SPLIT[2])?.write(&d.lateness_split.missed[..])?;
    for (name, value, _) in diagnostic_scalars(d) {
        match value {
            DiagValue::F64(v) => g.dataset(name)?.write_scalar(&v)?,
            DiagValue::U64(v) => g.dataset(name)?.write_scalar(&v)?,
            DiagValue::U8(v) => g.dataset(name)?.write_scalar(&v)?,
            DiagValue::I64(v) => g.dataset(name)?.write_scalar(&v)?,
        }
    }
    let cap = nanoecr_core::diagnostics::STALL_CAPACITY;
    let mut start = vec![f64::NAN; cap];
    let mut length = vec![f64::NAN; cap];
    let mut ticks = vec![0u64; cap];
    for (i, st) in d.stalls.iter().take(cap).enumerate() {
        (start[i], length[i], ticks[i]) = (st.start_s, st.length_us, st.ticks);
    }
    g.dataset(STALL_COLUMNS[0].0)?.write(&start[..])?;
    g.dataset(STALL_COLUMNS[1].0)?.write(&length[..])?;
    g.dataset(STALL_COLUMNS[2].0)?.write(&ticks[..])?;
    // The exact record, for our own reader. Cutting JSON would make it unreadable: a record that
    // does not fit (it cannot, with today's fields) is left out and the datasets above remain.
    let json = serde_json::to_string(d).unwrap_or_default();
    let json = if json.len() <= DIAG_JSON_LEN {
        json
    } else {
        tracing::warn!(
            len = json.len(),
            cap = DIAG_JSON_LEN,
            "diagnostics record too long for its attribute; left out"
        );
        String::new()
    };
    write_str_attr(g, "json", &json)
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
