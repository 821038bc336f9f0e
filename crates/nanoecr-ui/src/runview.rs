//! Looking into a finished (or running) run without holding it in memory: 1 h at 100 kHz is
//! 360 M samples, 14 GB of columns. On open the file is streamed once, a hyperslab of
//! [`CHUNK_ROWS`] rows at a time, into a [`Summary`]: per block of [`BLOCK`] samples, the first
//! and last time and each series' minimum and maximum (and which came first). That summary is
//! 1/1024 of the run (about 30 MB for 360 M samples) and is kept while the run is open. A view
//! then reads only what it needs: the summary's blocks when a pixel column spans at least a
//! block, the raw rows of the window (a chunk at a time) when it does not, and the raw rows of the
//! partial blocks at the window's edges. Both feed the same min/max-per-pixel [`Envelope`], so a
//! one-sample spike is in every view that contains it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nanoecr_core::{Event, RunStatus};
use nanoecr_store::{RunColumns, StoreError};

use crate::decimate::{Decimated, Envelope};

/// Samples per summary block.
pub const BLOCK: usize = 1024;
/// Rows read from the file at once (a multiple of [`BLOCK`]): 5 columns × 64 Ki × 8 B = 2.5 MB.
pub const CHUNK_ROWS: usize = 64 * BLOCK;
/// The series the page plots: its names for them, and the file's columns (docs/file-format.md).
pub const SERIES: [(&str, &str); 4] = [
    ("load_un", "load"),
    ("setpoint_un", "setpoint"),
    ("disp_nm", "displacement"),
    ("delta_rho", "resistivity_change"),
];
const N: usize = SERIES.len();

/// One block of [`BLOCK`] samples (the last may be shorter), summarised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    /// Time of its first sample, s.
    pub t_first: f64,
    /// Time of its last sample, s.
    pub t_last: f64,
    /// Each series' minimum (+∞ when all undefined).
    pub min: [f64; N],
    /// Each series' maximum (−∞ when all undefined).
    pub max: [f64; N],
    /// Whether the minimum came before the maximum.
    pub min_first: [bool; N],
}

/// The per-run summary: one [`Cell`] per [`BLOCK`] samples.
#[derive(Debug, Default)]
pub struct Summary {
    /// The blocks in order.
    pub cells: Vec<Cell>,
}

impl Summary {
    /// Bytes it holds (what a view keeps per open run besides the events).
    pub fn bytes(&self) -> usize {
        self.cells.capacity() * std::mem::size_of::<Cell>()
    }
}

/// Summarise `time[k]`, `cols[j][k]` for `k in range` (non-empty).
fn summarise(time: &[f64], cols: &[Vec<f64>; N], range: std::ops::Range<usize>) -> Cell {
    let mut c = Cell {
        t_first: time[range.start],
        t_last: time[range.end - 1],
        min: [f64::INFINITY; N],
        max: [f64::NEG_INFINITY; N],
        min_first: [true; N],
    };
    for (j, col) in cols.iter().enumerate() {
        let (mut imin, mut imax) = (usize::MAX, usize::MAX);
        for (k, &v) in col[range.clone()].iter().enumerate() {
            if v.is_finite() {
                if v < c.min[j] {
                    c.min[j] = v;
                    imin = k;
                }
                if v > c.max[j] {
                    c.max[j] = v;
                    imax = k;
                }
            }
        }
        c.min_first[j] = imin <= imax;
    }
    c
}

/// A run opened for viewing.
pub struct RunView {
    /// The file.
    pub path: PathBuf,
    /// Its status and end reason.
    pub status: RunStatus,
    /// Why it ended, when it did.
    pub end_reason: Option<String>,
    /// Sampling rate, Hz (from the file, else from its time column).
    pub rate_hz: Option<f64>,
    /// Samples in the file (when it was opened).
    pub rows: usize,
    /// Time of the last sample, s.
    pub duration_s: Option<f64>,
    /// Detected events.
    pub events: Vec<Event>,
    /// The block summary.
    pub summary: Summary,
    /// Which series the file has (an absent one is drawn as undefined).
    has: [bool; N],
    /// HDF5 reads go one at a time.
    file: Mutex<RunColumns>,
}

impl RunView {
    /// Open `path` and build its summary, streaming the columns once.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let cols = RunColumns::open(path)?;
        let rows = cols.rows();
        let has = SERIES.map(|(_, c)| cols.has_column(c));
        let mut summary = Summary { cells: Vec::with_capacity(rows.div_ceil(BLOCK)) };
        let mut start = 0;
        while start < rows {
            let (time, data) = read_rows(&cols, &has, start, CHUNK_ROWS)?;
            let mut k = 0;
            while k < time.len() {
                let end = (k + BLOCK).min(time.len());
                summary.cells.push(summarise(&time, &data, k..end));
                k = end;
            }
            start += time.len().max(1);
        }
        let (status, end_reason) = cols.status();
        let duration_s = summary.cells.last().map(|c| c.t_last);
        let rate_hz = cols.rate_hz().or_else(|| {
            let span = duration_s? - summary.cells.first()?.t_first;
            (rows > 1 && span > 0.0).then(|| (rows - 1) as f64 / span)
        });
        Ok(Self {
            path: path.to_path_buf(),
            status,
            end_reason,
            rate_hz,
            rows,
            duration_s,
            events: cols.events()?,
            summary,
            has,
            file: Mutex::new(cols),
        })
    }

    fn cols(&self) -> std::sync::MutexGuard<'_, RunColumns> {
        self.file.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The first sample index whose time is `>= t` (`strict`: `> t`).
    fn index_at(&self, t: f64, strict: bool) -> Result<usize, StoreError> {
        let after = |x: f64| if strict { x > t } else { x >= t };
        let b = self.summary.cells.partition_point(|c| !after(c.t_last));
        if b == self.summary.cells.len() {
            return Ok(self.rows);
        }
        let time = self.cols().read_column_range("time", b * BLOCK, BLOCK)?;
        Ok(b * BLOCK + time.partition_point(|&x| !after(x)))
    }

    /// The samples of `[t0_s, t1_s]` as at most `2 × pixels` points (every sample when that many
    /// hold them all). Reads the summary for whole blocks and the file for the rest.
    pub fn window(&self, t0_s: f64, t1_s: f64, pixels: usize) -> Result<Decimated, StoreError> {
        let i0 = self.index_at(t0_s, false)?;
        let i1 = self.index_at(t1_s, true)?.max(i0);
        let n = i1 - i0;
        let pixels = pixels.max(1);
        let mut env = Envelope::new(i0, n, pixels, N);
        if !env.full_resolution() && n / pixels >= BLOCK {
            let b0 = i0.div_ceil(BLOCK);
            let b1 = i1 / BLOCK;
            self.raw(&mut env, i0, b0 * BLOCK)?;
            for (b, c) in self.summary.cells[b0..b1].iter().enumerate() {
                env.push_cell((b0 + b) * BLOCK, c.t_first, c.t_last, &c.min, &c.max, &c.min_first);
            }
            self.raw(&mut env, (b1 * BLOCK).max(i0), i1)?;
        } else {
            self.raw(&mut env, i0, i1)?;
        }
        Ok(env.finish(&SERIES.map(|(name, _)| name)))
    }

    /// Rows `from .. to` into the envelope sample by sample, a chunk at a time.
    fn raw(&self, env: &mut Envelope, from: usize, to: usize) -> Result<(), StoreError> {
        let mut start = from;
        while start < to {
            let (time, data) = read_rows(&self.cols(), &self.has, start, CHUNK_ROWS.min(to - start))?;
            if time.is_empty() {
                break;
            }
            let mut row = [0.0; N];
            for (k, &t) in time.iter().enumerate() {
                for (r, col) in row.iter_mut().zip(&data) {
                    *r = col[k];
                }
                env.push_sample(start + k, t, &row);
            }
            start += time.len();
        }
        Ok(())
    }
}

/// Time and the plotted columns for rows `start .. start + len` (absent columns: NaN).
fn read_rows(
    cols: &RunColumns,
    has: &[bool; N],
    start: usize,
    len: usize,
) -> Result<(Vec<f64>, [Vec<f64>; N]), StoreError> {
    let time = cols.read_column_range("time", start, len)?;
    let mut data: [Vec<f64>; N] = Default::default();
    for (j, (_, name)) in SERIES.iter().enumerate() {
        data[j] = if has[j] { cols.read_column_range(name, start, time.len())? } else { vec![f64::NAN; time.len()] };
        // A column of a live file may lag the time column: pad what is not written yet.
        data[j].resize(time.len(), f64::NAN);
    }
    Ok((time, data))
}
