//! Reading run files back: ours, and foreign files that follow docs/file-format.md minimally
//! (`/entry/data/{time, displacement, current, load}` and
//! `/entry/sample/{height_um, diameter_um, poisson_ratio}`).

use std::path::{Path, PathBuf};

use hdf5::types::{FixedAscii, FixedUnicode, TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::{Container, File, Group, Location, OpenMode};
use nanoecr_core::{Diagnostics, Event, EventKind, Pillar, RunStatus, Segment, Sign};

use crate::chunk_read::{self, DirectFile, LeScalar};
use crate::StoreError;

/// The sample columns of a run, all the same length (but those a [`ColumnSelection`] left out,
/// which are empty).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunData {
    /// Rows of the run: the length of every column read (also when `time` was left out).
    pub rows: usize,
    /// Sequence numbers (0.. for foreign files without them).
    pub seq: Vec<u64>,
    /// Time since run start, s.
    pub time_s: Vec<f64>,
    /// Load, µN.
    pub load_un: Vec<f64>,
    /// Setpoint, µN (NaN when absent).
    pub setpoint_un: Vec<f64>,
    /// Displacement, nm.
    pub disp_nm: Vec<f64>,
    /// Current, A.
    pub current_a: Vec<f64>,
    /// Voltage, V (NaN when absent).
    pub voltage_v: Vec<f64>,
    /// Segment codes (0 settle, 1 load, 2 hold, 3 unload, 4 safe unload; 0 when absent).
    pub segment: Vec<u8>,
    /// Δρ/ρ as computed live (NaN when absent).
    pub delta_rho: Vec<f64>,
}

impl RunData {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }
}

/// A run file, read back.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// `status` of `/entry` (foreign files without one read as `complete`).
    pub status: RunStatus,
    /// `end_reason`, when written.
    pub end_reason: Option<String>,
    /// `start_time` (ISO 8601).
    pub start_time: Option<String>,
    /// `end_time` (ISO 8601).
    pub end_time: Option<String>,
    /// `software_version`.
    pub software_version: Option<String>,
    /// The run config as TOML text.
    pub config_toml: Option<String>,
    /// Pillar geometry (Young's modulus defaults to 88 GPa when absent).
    pub pillar: Pillar,
    /// Material name, when recorded.
    pub material: Option<String>,
    /// Sampling rate, Hz (from the instrument group, else from the time column).
    pub rate_hz: Option<f64>,
    /// Settle window, s.
    pub settle_s: Option<f64>,
    /// Peak load of the program, µN (else the largest load seen).
    pub peak_load_un: Option<f64>,
    /// Bias voltage, V.
    pub voltage_v: Option<f64>,
    /// The samples.
    pub data: RunData,
    /// Detected events (`/entry/events`), empty when absent.
    pub events: Vec<Event>,
    /// Simulated truth (`/entry/ground_truth/events`), for simulated runs.
    pub ground_truth: Option<Vec<Event>>,
    /// Acquisition diagnostics, when written (files closed properly).
    pub diagnostics: Option<Diagnostics>,
}

/// Longest fixed-length string read back (longer ones are cut).
const FIXED_READ_CAP: usize = 16384;

/// A scalar string (attribute or dataset) in any of HDF5's string types: variable-length as we and
/// h5py write by default, fixed-length as we write the values that change at the end of a run
/// (and h5py writes for numpy bytes). Empty strings (unset placeholders) read as `None`.
fn read_string(c: &Container) -> Option<String> {
    let s = match c.dtype().ok()?.to_descriptor().ok()? {
        TypeDescriptor::VarLenUnicode => c.read_scalar::<VarLenUnicode>().ok()?.as_str().to_string(),
        TypeDescriptor::VarLenAscii => c.read_scalar::<VarLenAscii>().ok()?.as_str().to_string(),
        TypeDescriptor::FixedUnicode(_) => {
            String::from_utf8_lossy(c.read_scalar::<FixedUnicode<FIXED_READ_CAP>>().ok()?.as_bytes()).into_owned()
        }
        TypeDescriptor::FixedAscii(_) => {
            String::from_utf8_lossy(c.read_scalar::<FixedAscii<FIXED_READ_CAP>>().ok()?.as_bytes()).into_owned()
        }
        _ => return None,
    };
    (!s.is_empty()).then_some(s)
}

/// Read a string attribute (see [`read_string`] for the types accepted).
pub(crate) fn read_str_attr(loc: &Location, name: &str) -> Option<String> {
    read_string(&*loc.attr(name).ok()?)
}

fn read_str_ds(g: &Group, name: &str) -> Option<String> {
    read_string(&*g.dataset(name).ok()?)
}

fn read_f64_scalar(g: &Group, name: &str) -> Option<f64> {
    let d = g.dataset(name).ok()?;
    d.read_scalar::<f64>().ok().or_else(|| d.read_raw::<f64>().ok().and_then(|v| v.first().copied()))
}

/// A column of `g`, `None` when absent. Chunked columns are decoded off the library lock on every
/// core when their filters allow ([`chunk_read`](crate::chunk_read)), else read through libhdf5.
/// With `direct` (a file nothing writes), the stored chunks are also read outside libhdf5.
fn column<T: LeScalar>(
    path: &Path,
    g: &Group,
    name: &str,
    direct: Option<&DirectFile>,
) -> Result<Option<Vec<T>>, StoreError> {
    let Ok(d) = g.dataset(name) else { return Ok(None) };
    let fast = chunk_read::read_column::<T>(&d, direct).transpose();
    fast.unwrap_or_else(|| d.read_raw::<T>()).map(Some).map_err(|source| StoreError::Hdf5 {
        path: path.to_path_buf(),
        during: format!("reading {}/{name}", g.name()),
        source,
    })
}

fn read_events(path: &Path, g: &Group, direct: Option<&DirectFile>) -> Result<Vec<Event>, StoreError> {
    let u8c = |n: &str| column::<u8>(path, g, n, direct).map(Option::unwrap_or_default);
    let f64c = |n: &str| column::<f64>(path, g, n, direct).map(Option::unwrap_or_default);
    let kind = u8c("kind")?;
    let sign = u8c("sign")?;
    let onset = f64c("onset_time")?;
    let peak = f64c("peak_time")?;
    let duration = f64c("duration")?;
    let magnitude = f64c("magnitude")?;
    let linked = f64c("linked_delta_rho")?;
    let segment = u8c("segment")?;
    let stress = f64c("stress")?;
    let n = kind.len();
    if [sign.len(), onset.len(), peak.len(), duration.len(), magnitude.len(), segment.len()].iter().any(|&l| l != n) {
        return Err(StoreError::Invalid {
            path: path.to_path_buf(),
            what: "event columns of different lengths".into(),
        });
    }
    Ok((0..n)
        .map(|i| Event {
            kind: EventKind::from_code(kind[i]).unwrap_or(EventKind::Spike),
            sign: Sign::from_code(sign[i]).unwrap_or(Sign::P),
            onset_time_s: onset[i],
            peak_time_s: peak[i],
            duration_s: duration[i],
            magnitude: magnitude[i],
            linked_delta_rho: linked.get(i).copied().unwrap_or(f64::NAN),
            segment: Segment::from_code(segment[i]).unwrap_or(Segment::Settle),
            stress_mpa: stress.get(i).copied().unwrap_or(f64::NAN),
        })
        .collect())
}

/// `v` if it has `n` rows; cut to `n` when `live` and longer; else `None`.
fn fit_len<T>(mut v: Vec<T>, n: usize, live: bool) -> Option<Vec<T>> {
    if live && v.len() > n {
        v.truncate(n);
    }
    (v.len() == n).then_some(v)
}

/// Which sample columns [`read_run_columns`] returns. A column not selected is left empty in
/// [`RunData`], so a caller that needs only some pays neither the read nor the memory of the
/// others. `time`, `displacement` and `load` are read whatever the selection (they define the
/// run, and a [`read_run_blocks`] consumer gets them), but kept only when selected: a caller
/// that only detects does not hold them whole (on a 100 kHz run, 77 MB of fresh memory whose
/// page zeroing was a fifth of the peer bench's CPU, docs/performance.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnSelection {
    /// `time` (kept; always read).
    pub time: bool,
    /// `displacement` (kept; always read).
    pub displacement: bool,
    /// `load` (kept; always read).
    pub load: bool,
    /// `sequence`.
    pub sequence: bool,
    /// `setpoint`.
    pub setpoint: bool,
    /// `current` (required in the file when selected).
    pub current: bool,
    /// `voltage`.
    pub voltage: bool,
    /// `segment`.
    pub segment: bool,
    /// `resistivity_change` (Δρ/ρ as computed live).
    pub delta_rho: bool,
}

impl ColumnSelection {
    /// Every column: what [`read_run`] reads.
    pub const ALL: Self = Self {
        time: true,
        displacement: true,
        load: true,
        sequence: true,
        setpoint: true,
        current: true,
        voltage: true,
        segment: true,
        delta_rho: true,
    };
}

/// Read a run file. A file that is still being written (or was left so by a crash: its
/// superblock still says "open for writing") is read in SWMR mode, up to its last flush.
pub fn read_run(path: &Path) -> Result<RunFile, StoreError> {
    read_run_columns(path, ColumnSelection::ALL)
}

/// [`read_run`], reading only the sample columns `cols` selects (the others are empty).
pub fn read_run_columns(path: &Path, cols: ColumnSelection) -> Result<RunFile, StoreError> {
    read_run_impl(path, cols, |_| None::<NoConsumer>).map(|(rf, _)| rf)
}

/// What a run file says about how it was taken, read before its columns (see
/// [`read_run_blocks`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RunHeader {
    /// The run config as TOML text.
    pub config_toml: Option<String>,
    /// Pillar geometry, as in [`RunFile::pillar`].
    pub pillar: Pillar,
    /// `/entry/instrument/rate_hz`, when written (no fallback from the time column here).
    pub rate_hz: Option<f64>,
    /// `/entry/instrument/settle_s`, when written.
    pub settle_s: Option<f64>,
    /// Rows of `/entry/data/time` (a capacity hint: a live file's columns may be cut shorter).
    pub rows: usize,
}

/// Consecutive rows of the columns a detector reads, handed out in row order by
/// [`read_run_blocks`]. All slices have the same length.
#[derive(Debug, Clone, Copy)]
pub struct RowBlock<'a> {
    /// Index of the block's first row in the run.
    pub start: usize,
    /// Time since run start, s.
    pub time_s: &'a [f64],
    /// Displacement, nm.
    pub disp_nm: &'a [f64],
    /// Current, A.
    pub current_a: &'a [f64],
    /// Load, µN.
    pub load_un: &'a [f64],
    /// Segment codes (0 when the file has no segment column).
    pub segment: &'a [u8],
}

/// Takes a run's rows block by block from [`read_run_blocks`], on a thread of its own.
pub trait BlockConsumer: Send {
    /// The next block of rows (blocks come in row order, each row once).
    fn block(&mut self, rows: RowBlock<'_>);
}

/// The consumer of a plain read: there is none.
struct NoConsumer;

impl BlockConsumer for NoConsumer {
    fn block(&mut self, _: RowBlock<'_>) {}
}

/// [`read_run_columns`], also handing every row of `time`, `displacement`, `current`, `load` and
/// `segment` to a consumer, in order, block by block, while the following blocks are still being
/// read: `start` sees the file's [`RunHeader`] before any column is read and returns the consumer
/// (or `None` for a plain read). The consumer runs on a thread of its own; it gets `current` (and
/// `segment`) even when `cols` does not keep them in the returned [`RunData`], so a caller that
/// needs a column only as it goes by never holds all of it. Returns the file and the consumer.
///
/// On a file nothing is writing whose five columns the fast path decodes ([`chunk_read`]), the
/// blocks are decoded on the pool as they are needed, so reading and consuming overlap; otherwise
/// the columns are read whole first and then handed out in blocks. Either way the consumer sees
/// the same rows, the ones [`read_run_columns`] returns.
pub fn read_run_blocks<C, F>(path: &Path, cols: ColumnSelection, start: F) -> Result<(RunFile, Option<C>), StoreError>
where
    C: BlockConsumer,
    F: FnOnce(&RunHeader) -> Option<C>,
{
    read_run_impl(path, cols, start)
}

/// Rows per block handed to a [`read_run_blocks`] consumer: a whole number of chunks of every
/// column, ≈ 32 k rows (four 8192-row chunks of each of five columns: work for every core).
const BLOCK_ROWS: usize = 32_768;

/// The reader behind [`read_run_columns`] (no consumer) and [`read_run_blocks`].
fn read_run_impl<C, F>(path: &Path, cols: ColumnSelection, start: F) -> Result<(RunFile, Option<C>), StoreError>
where
    C: BlockConsumer,
    F: FnOnce(&RunHeader) -> Option<C>,
{
    let (file, live) = match File::open(path) {
        Ok(f) => (f, false),
        Err(source) => match File::open_as(path, OpenMode::ReadSWMR) {
            Ok(f) => (f, true),
            Err(_) => {
                return Err(StoreError::Hdf5 { path: path.to_path_buf(), during: "opening".into(), source });
            }
        },
    };
    crate::cloexec::close_on_exec(&file);
    let invalid = |what: &str| StoreError::Invalid { path: path.to_path_buf(), what: what.to_string() };
    let entry = file.group("entry").map_err(|_| invalid("no /entry group"))?;
    let data_g = entry.group("data").map_err(|_| invalid("no /entry/data group"))?;
    let sample_g = entry.group("sample").map_err(|_| invalid("no /entry/sample group"))?;
    // A file its writer still holds in this process opens without SWMR (the library shares the
    // writer's handle), and the compression worker stores each column's full chunks on its own
    // schedule: read a `running` file as live too.
    let live =
        live || read_str_attr(&entry, "status").and_then(|s| RunStatus::from_name(&s)) == Some(RunStatus::Running);
    // A file nothing is writing has its chunks read with pread outside libhdf5 (chunk_read.rs);
    // a live one only through libhdf5, which follows the writer's extents and flushes.
    let direct = if live { None } else { DirectFile::open(path, &file) };
    let direct = direct.as_ref();

    // The header first: a block consumer is made from it before any column is read.
    let geom =
        |name: &str| read_f64_scalar(&sample_g, name).ok_or_else(|| invalid(&format!("missing /entry/sample/{name}")));
    let pillar = Pillar {
        diameter_um: geom("diameter_um")?,
        height_um: geom("height_um")?,
        poisson_ratio: geom("poisson_ratio")?,
        youngs_modulus_gpa: read_f64_scalar(&sample_g, "youngs_modulus_gpa").unwrap_or(88.0),
    };
    let inst = entry.group("instrument").ok();
    let from_inst = |name: &str| inst.as_ref().and_then(|g| read_f64_scalar(g, name));
    let header = RunHeader {
        config_toml: read_str_attr(&entry, "config_toml"),
        pillar,
        rate_hz: from_inst("rate_hz"),
        settle_s: from_inst("settle_s"),
        rows: data_g.dataset("time").map_or(0, |d| d.size()),
    };
    let mut consumer = start(&header);

    let need = |name: &str| -> Result<Vec<f64>, StoreError> {
        column::<f64>(path, &data_g, name, direct)?.ok_or_else(|| invalid(&format!("missing /entry/data/{name}")))
    };
    // With a consumer on a file nothing writes, the detector's columns are decoded block by block
    // while it consumes them; `None` when they are not all columns the fast path decodes.
    let streamed = match (consumer.as_mut(), direct) {
        (Some(c), Some(d)) => stream_columns(path, &data_g, d, cols, c)?,
        _ => None,
    };
    let Streamed { time_s, disp_nm, current_a, load_un, segment, rows: n, time_ends, load_max } = match streamed {
        Some(s) => s,
        None => {
            let mut time_s = need("time")?;
            let mut disp_nm = need("displacement")?;
            let with_current = cols.current || consumer.is_some();
            let mut current_a = if with_current { need("current")? } else { Vec::new() };
            let mut load_un = need("load")?;
            if live {
                // A writer extends the columns one after the other: a reader can catch them
                // between two extents. Keep the rows every column has.
                let n = [time_s.len(), disp_nm.len(), load_un.len()]
                    .into_iter()
                    .chain(with_current.then_some(current_a.len()))
                    .min()
                    .unwrap_or(0);
                for c in [&mut time_s, &mut disp_nm, &mut current_a, &mut load_un] {
                    c.truncate(n);
                }
            }
            let n = time_s.len();
            if disp_nm.len() != n || (with_current && current_a.len() != n) || load_un.len() != n {
                return Err(invalid("time, displacement, current and load differ in length"));
            }
            let segment = if cols.segment || consumer.is_some() {
                column::<u8>(path, &data_g, "segment", direct)?
                    .and_then(|v| fit_len(v, n, live))
                    .unwrap_or_else(|| vec![0; n])
            } else {
                Vec::new()
            };
            if let Some(c) = consumer.as_mut() {
                // The same rows in the same blocks, after the read instead of during it.
                for b in (0..n).step_by(BLOCK_ROWS) {
                    let e = (b + BLOCK_ROWS).min(n);
                    c.block(RowBlock {
                        start: b,
                        time_s: &time_s[b..e],
                        disp_nm: &disp_nm[b..e],
                        current_a: &current_a[b..e],
                        load_un: &load_un[b..e],
                        segment: &segment[b..e],
                    });
                }
            }
            let time_ends = (n > 0).then(|| (time_s[0], time_s[n - 1]));
            let load_max = if cols.load { None } else { load_un.iter().copied().reduce(f64::max) };
            let keep = |v: Vec<f64>, k: bool| if k { v } else { Vec::new() };
            Streamed {
                time_s: keep(time_s, cols.time),
                disp_nm: keep(disp_nm, cols.displacement),
                current_a: keep(current_a, cols.current),
                load_un: keep(load_un, cols.load),
                segment: if cols.segment { segment } else { Vec::new() },
                rows: n,
                time_ends,
                load_max,
            }
        }
    };
    // Optional columns must match the required ones (a live file's may be longer: cut them).
    let fit = |v: Vec<_>| -> Option<Vec<_>> { fit_len(v, n, live) };
    let opt = |name: &str, wanted: bool| -> Result<Vec<f64>, StoreError> {
        if !wanted {
            return Ok(Vec::new());
        }
        Ok(column::<f64>(path, &data_g, name, direct)?
            .and_then(|v| fit_len(v, n, live))
            .unwrap_or_else(|| vec![f64::NAN; n]))
    };
    let data = RunData {
        rows: n,
        seq: if cols.sequence {
            column::<u64>(path, &data_g, "sequence", direct)?.and_then(fit).unwrap_or_else(|| (0..n as u64).collect())
        } else {
            Vec::new()
        },
        setpoint_un: opt("setpoint", cols.setpoint)?,
        voltage_v: opt("voltage", cols.voltage)?,
        delta_rho: opt("resistivity_change", cols.delta_rho)?,
        segment,
        time_s,
        load_un,
        disp_nm,
        current_a,
    };

    let rate_hz = header.rate_hz.or_else(|| {
        let (first, last) = time_ends?;
        (n > 1).then(|| (n - 1) as f64 / (last - first))
    });
    let status = read_str_attr(&entry, "status").and_then(|s| RunStatus::from_name(&s)).unwrap_or(RunStatus::Complete);
    let events = match entry.group("events") {
        Ok(g) => read_events(path, &g, direct)?,
        Err(_) => Vec::new(),
    };
    let ground_truth = match entry.group("ground_truth").and_then(|g| g.group("events")) {
        Ok(g) => Some(read_events(path, &g, direct)?),
        Err(_) => None,
    };
    let diagnostics = entry
        .group("diagnostics")
        .ok()
        .and_then(|g| read_str_attr(&g, "json"))
        .and_then(|j| serde_json::from_str::<Diagnostics>(&j).ok());
    let rf = RunFile {
        path: path.to_path_buf(),
        status,
        end_reason: read_str_attr(&entry, "end_reason"),
        start_time: read_str_attr(&entry, "start_time"),
        end_time: read_str_attr(&entry, "end_time"),
        software_version: read_str_attr(&entry, "software_version"),
        config_toml: header.config_toml,
        pillar,
        material: read_str_ds(&sample_g, "material"),
        rate_hz,
        settle_s: header.settle_s,
        peak_load_un: from_inst("peak_load_un").or_else(|| data.load_un.iter().copied().reduce(f64::max)).or(load_max),
        voltage_v: from_inst("voltage_v"),
        data,
        events,
        ground_truth,
        diagnostics,
    };
    Ok((rf, consumer))
}

/// The five columns of a [`RowBlock`] as [`read_run_impl`] takes them from a read: those `cols`
/// keeps whole (the others empty), the rows, and what the run's header may need of the columns
/// it does not keep: the first and last time (for the rate) and, when `load` is not kept, the
/// largest load (for the peak).
struct Streamed {
    time_s: Vec<f64>,
    disp_nm: Vec<f64>,
    current_a: Vec<f64>,
    load_un: Vec<f64>,
    segment: Vec<u8>,
    rows: usize,
    time_ends: Option<(f64, f64)>,
    load_max: Option<f64>,
}

/// The five columns of a [`RowBlock`] of a file nothing writes, decoded block by block on the
/// pool (this thread reads, a scoped thread runs `consumer`), kept whole where `cols` asks; a
/// column not kept only passes through recycled block buffers. `None` when one of them is
/// missing a fast path, the lengths differ or the chunkings have no common block (the caller
/// then reads them whole).
fn stream_columns<C: BlockConsumer>(
    path: &Path,
    g: &Group,
    direct: &DirectFile,
    cols: ColumnSelection,
    consumer: &mut C,
) -> Result<Option<Streamed>, StoreError> {
    let h5err = |during: String| move |source| StoreError::Hdf5 { path: path.to_path_buf(), during, source };
    let names = ["time", "displacement", "current", "load"];
    let mut sets = Vec::with_capacity(4);
    for name in names {
        let Ok(ds) = g.dataset(name) else { return Ok(None) };
        sets.push(ds);
    }
    let Ok(seg_ds) = g.dataset("segment") else { return Ok(None) };
    let mut f64_cols = Vec::with_capacity(4);
    for (ds, name) in sets.iter().zip(names) {
        match chunk_read::BlockColumn::<f64>::open(ds, direct).map_err(h5err(format!("reading {}/{name}", g.name())))? {
            Some(c) => f64_cols.push(c),
            None => return Ok(None),
        }
    }
    let Some(seg_col) =
        chunk_read::BlockColumn::<u8>::open(&seg_ds, direct).map_err(h5err(format!("reading {}/segment", g.name())))?
    else {
        return Ok(None);
    };
    let n = seg_col.len();
    if f64_cols.iter().any(|c| c.len() != n) {
        return Ok(None);
    }
    let lcm = f64_cols.iter().map(|c| c.chunk_rows()).fold(seg_col.chunk_rows(), num_lcm);
    if lcm == 0 || lcm > 1 << 20 {
        return Ok(None);
    }
    let block = lcm * BLOCK_ROWS.div_ceil(lcm);
    // Which of time, displacement, current, load are kept whole.
    let kept = [cols.time, cols.displacement, cols.current, cols.load];
    let mut whole: [Vec<f64>; 4] = std::array::from_fn(|c| {
        let mut v = if kept[c] { vec![0.0; n] } else { Vec::new() };
        chunk_read::advise_huge_pages(&mut v);
        v
    });
    let mut segment = if cols.segment { vec![0u8; n] } else { Vec::new() };
    // Blocks of the columns not kept, recycled between the reader and the consumer (empty for
    // the kept ones).
    struct Spare {
        f64s: [Vec<f64>; 4],
        segment: Vec<u8>,
    }
    // (column, chunk) pairs the pool could not decode; column SEGMENT is the segment column.
    const SEGMENT: usize = 4;
    let failed = std::sync::Mutex::new(Vec::<(usize, usize)>::new());
    let (mut time_ends, mut load_max) = (None::<(f64, f64)>, None::<f64>);
    let result = std::thread::scope(|s| -> Result<(), StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, usize, [&[f64]; 4], &[u8], Spare)>(2);
        let (back_tx, back_rx) = std::sync::mpsc::channel::<Spare>();
        let worker = s.spawn(move || {
            for (start, m, kept_rows, seg, spare) in rx {
                let col = |c: usize| if kept_rows[c].is_empty() { &spare.f64s[c][..m] } else { kept_rows[c] };
                consumer.block(RowBlock {
                    start,
                    time_s: col(0),
                    disp_nm: col(1),
                    current_a: col(2),
                    load_un: col(3),
                    segment: if seg.is_empty() { &spare.segment[..m] } else { seg },
                });
                if back_tx.send(spare).is_err() {
                    break;
                }
            }
        });
        let mut spares_made = 0;
        let mut whole_it = whole.each_mut().map(|v| v.chunks_mut(block));
        let mut seg_it = segment.chunks_mut(block);
        let mut outcome = Ok(());
        for start in (0..n).step_by(block) {
            let m = block.min(n - start);
            let mut spare = match back_rx.try_recv() {
                Ok(sp) => sp,
                Err(_) if spares_made < 3 => {
                    spares_made += 1;
                    Spare {
                        f64s: std::array::from_fn(|c| if kept[c] { Vec::new() } else { vec![0.0; block] }),
                        segment: if cols.segment { Vec::new() } else { vec![0; block] },
                    }
                }
                // The consumer holds every spare: wait for one (an error: it has stopped).
                Err(_) => match back_rx.recv() {
                    Ok(sp) => sp,
                    Err(_) => break,
                },
            };
            let mut kept_parts: [Option<&mut [f64]>; 4] = std::array::from_fn(|c| whole_it[c].next());
            let mut seg_kept = seg_it.next();
            {
                let Spare { f64s, segment: spare_seg } = &mut spare;
                let mut dst: [&mut [f64]; 4] = {
                    let mut spares = f64s.iter_mut();
                    let mut parts = kept_parts.iter_mut();
                    std::array::from_fn(|_| {
                        let (part, sp) = (parts.next(), spares.next());
                        match (part.and_then(|p| p.as_deref_mut()), sp) {
                            (Some(p), _) => p,
                            (None, Some(sp)) => &mut sp[..m],
                            (None, None) => &mut [],
                        }
                    })
                };
                let seg: &mut [u8] = match seg_kept.as_deref_mut() {
                    Some(v) => v,
                    None => &mut spare_seg[..m],
                };
                // Every chunk of every column in this block, decoded on the pool.
                rayon::scope(|sc| {
                    for (ci, (col, part)) in f64_cols.iter().zip(dst.iter_mut()).enumerate() {
                        let cr = col.chunk_rows();
                        for (k, piece) in part.chunks_mut(cr).enumerate() {
                            let (failed, i) = (&failed, start / cr + k);
                            sc.spawn(move |_| {
                                if !col.decode(direct, i, piece) {
                                    failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((ci, i));
                                }
                            });
                        }
                    }
                    let cr = seg_col.chunk_rows();
                    for (k, piece) in seg.chunks_mut(cr).enumerate() {
                        let (failed, i, seg_col) = (&failed, start / cr + k, &seg_col);
                        sc.spawn(move |_| {
                            if !seg_col.decode(direct, i, piece) {
                                failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((SEGMENT, i));
                            }
                        });
                    }
                });
                // Chunks never written, or refused by the decoder: as libhdf5 reads them.
                let refused = std::mem::take(&mut *failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
                for (ci, i) in refused {
                    let r = if ci == SEGMENT {
                        let cr = seg_col.chunk_rows();
                        let off = i * cr - start;
                        seg_col.read_through_library(i, &mut seg[off..(off + cr).min(m)])
                    } else {
                        let cr = f64_cols[ci].chunk_rows();
                        let off = i * cr - start;
                        f64_cols[ci].read_through_library(i, &mut dst[ci][off..(off + cr).min(m)])
                    };
                    if let Err(e) = r {
                        let name = names.get(ci).copied().unwrap_or("segment");
                        outcome = Err(h5err(format!("reading {}/{name}", g.name()))(e));
                        break;
                    }
                }
                // What the header may need of columns that are not kept (in row order, as a
                // pass over the whole column would take them).
                if let (Some(&first), Some(&last)) = (dst[0].first(), dst[0].last()) {
                    time_ends = Some((time_ends.map_or(first, |t| t.0), last));
                }
                if !cols.load {
                    load_max = dst[3].iter().copied().fold(load_max, |acc, v| Some(acc.map_or(v, |a| a.max(v))));
                }
            }
            if outcome.is_err() {
                break;
            }
            let kept_rows: [&[f64]; 4] = kept_parts.map(|p| p.map_or(&[][..], |p| &*p));
            let seg: &[u8] = seg_kept.map_or(&[], |v| &*v);
            if tx.send((start, m, kept_rows, seg, spare)).is_err() {
                break;
            }
        }
        drop(tx);
        if let Err(p) = worker.join() {
            std::panic::resume_unwind(p);
        }
        outcome
    });
    result?;
    let [time_s, disp_nm, current_a, load_un] = whole;
    Ok(Some(Streamed { time_s, disp_nm, current_a, load_un, segment, rows: n, time_ends, load_max }))
}

/// Least common multiple (chunk lengths: small positive integers).
fn num_lcm(a: usize, b: usize) -> usize {
    let (mut x, mut y) = (a, b);
    while y != 0 {
        (x, y) = (y, x % y);
    }
    a.checked_div(x).map_or(0, |q| q * b)
}

/// A run file opened to read its sample columns piece by piece (a hyperslab per call), for
/// viewers that must not hold a whole run in memory (1 h at 100 kHz is 360 M samples).
/// [`read_run`] reads everything at once; this reads only what is asked for.
pub struct RunColumns {
    path: PathBuf,
    file: File,
    rows: usize,
}

impl RunColumns {
    /// Open `path` (in SWMR mode if it is still being written, as [`read_run`] does). The rows
    /// are those every required column (`time`, `displacement`, `current`, `load`) has.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let file = File::open(path).or_else(|source| {
            File::open_as(path, OpenMode::ReadSWMR).map_err(|_| StoreError::Hdf5 {
                path: path.to_path_buf(),
                during: "opening".into(),
                source,
            })
        })?;
        crate::cloexec::close_on_exec(&file);
        let invalid = |what: &str| StoreError::Invalid { path: path.to_path_buf(), what: what.to_string() };
        let data = file.group("entry/data").map_err(|_| invalid("no /entry/data group"))?;
        let mut rows = usize::MAX;
        for name in ["time", "displacement", "current", "load"] {
            let d = data.dataset(name).map_err(|_| invalid(&format!("missing /entry/data/{name}")))?;
            rows = rows.min(d.size());
        }
        Ok(Self { path: path.to_path_buf(), file, rows })
    }

    /// Rows readable in every required column.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Whether `/entry/data/{name}` exists.
    pub fn has_column(&self, name: &str) -> bool {
        self.file.dataset(&format!("entry/data/{name}")).is_ok()
    }

    /// Rows `start .. start + len` of `/entry/data/{name}` as f64 (cut at [`Self::rows`]).
    pub fn read_column_range(&self, name: &str, start: usize, len: usize) -> Result<Vec<f64>, StoreError> {
        let err = |source| StoreError::Hdf5 {
            path: self.path.clone(),
            during: format!("reading rows {start}..{} of /entry/data/{name}", start + len),
            source,
        };
        let d = self.file.dataset(&format!("entry/data/{name}")).map_err(err)?;
        let end = (start.saturating_add(len)).min(self.rows).min(d.size());
        if start >= end {
            return Ok(Vec::new());
        }
        Ok(d.read_slice_1d::<f64, _>(start..end).map_err(err)?.to_vec())
    }

    /// The detected events (`/entry/events`), empty when absent.
    pub fn events(&self) -> Result<Vec<Event>, StoreError> {
        match self.file.group("entry/events") {
            Ok(g) => read_events(&self.path, &g, None),
            Err(_) => Ok(Vec::new()),
        }
    }

    /// `status` and `end_reason` of `/entry` (a file without a status reads as `complete`).
    pub fn status(&self) -> (RunStatus, Option<String>) {
        let entry = self.file.group("entry").ok();
        let attr = |n: &str| entry.as_ref().and_then(|e| read_str_attr(e, n));
        (attr("status").and_then(|s| RunStatus::from_name(&s)).unwrap_or(RunStatus::Complete), attr("end_reason"))
    }

    /// `/entry/instrument/rate_hz`, when written.
    pub fn rate_hz(&self) -> Option<f64> {
        self.file.group("entry/instrument").ok().and_then(|g| read_f64_scalar(&g, "rate_hz"))
    }
}
