//! Full chunks of the sample columns, encoded outside libhdf5.
//!
//! libhdf5 (and hdf5-metno over it) serialises every call behind one global lock, and its filter
//! pipeline runs deflate inside that lock on the calling thread: that was 78 % of the consumer
//! thread in `--fast` runs (docs/performance.md, "Issue 11"). Here the writer hands each full
//! chunk of rows to a compression worker, which shuffles and deflates every column itself
//! (zlib-rs) and stores the encoded bytes with `H5Dwrite_chunk`: only that store and the
//! extent change take the library lock.
//!
//! The bytes are exactly what libhdf5's own pipeline would have stored for the datasets'
//! declared filters (shuffle, then deflate; docs/file-format.md), so every HDF5 reader decodes
//! them without plugins:
//! - shuffle (`H5Z_FILTER_SHUFFLE`, H5Zshuffle.c): byte `j` of element `i` goes to position
//!   `j·n + i` of the chunk (`n` elements); for 1-byte elements it is the identity;
//! - deflate (`H5Z_FILTER_DEFLATE`, H5Zdeflate.c): a zlib stream (RFC 1950: header, deflate
//!   data, Adler-32) of the shuffled bytes. libhdf5 declares deflate *optional* and skips it when
//!   the stream would be larger than its input; so do we, storing the shuffled bytes with bit 1
//!   (the deflate filter, second in the pipeline) of the chunk's filter mask set.
//!
//! Memory stays bounded: a fixed pool of [`Columns`] sets circulates between the writer and the
//! worker (the writer fills one while the worker encodes others); when every set is in flight
//! the writer waits for one to come back, which throttles the producer instead of queueing
//! without bound.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, FlushCompress, Status};
use hdf5::Dataset;

/// Column sets in circulation: one being filled, the rest queued or being encoded. Two would
/// already overlap filling and encoding; four absorb the jitter of a busy machine.
pub(crate) const POOL: usize = 4;

/// zlib-rs level for the chunks the worker encodes: 1, the level the datasets declare
/// ([`crate::names::DEFLATE_LEVEL`]). Measured on the shuffled 8192-row chunks of a 30-minute
/// `--fast` demo run (CPU time per byte, docs/performance.md "Issue 11"): zlib-rs level 1 is 25 %
/// faster than libdeflate level 1 (346 vs 276 MB/s) for 7 % more bytes (ratio 2.61 vs 2.79);
/// zlib-rs level 2 keeps libdeflate's ratio at half the speed.
const LEVEL: u32 = crate::names::DEFLATE_LEVEL as u32;

/// Filter mask of a chunk stored shuffled but not deflated: bit 1 = the pipeline's second filter
/// (deflate) was skipped (H5Dwrite_chunk's `filters` argument, as in H5Z_pipeline).
pub(crate) const MASK_DEFLATE_SKIPPED: u32 = 1 << 1;

/// One block of rows of the nine sample columns (in `DATA_COLUMNS` order), reused.
#[derive(Debug, Default)]
pub(crate) struct Columns {
    pub seq: Vec<u64>,
    pub time: Vec<f64>,
    pub load: Vec<f64>,
    pub setpoint: Vec<f64>,
    pub disp: Vec<f64>,
    pub current: Vec<f64>,
    pub voltage: Vec<f64>,
    pub segment: Vec<u8>,
    pub rho: Vec<f64>,
}

impl Columns {
    pub(crate) fn with_capacity(rows: usize) -> Self {
        Self {
            seq: Vec::with_capacity(rows),
            time: Vec::with_capacity(rows),
            load: Vec::with_capacity(rows),
            setpoint: Vec::with_capacity(rows),
            disp: Vec::with_capacity(rows),
            current: Vec::with_capacity(rows),
            voltage: Vec::with_capacity(rows),
            segment: Vec::with_capacity(rows),
            rho: Vec::with_capacity(rows),
        }
    }

    /// Make this set a copy of `src` padded with zeros to `rows` rows: a partial chunk as libhdf5
    /// stores it (an edge chunk is always stored whole, the part beyond the extent holding the
    /// fill value, 0 for these columns).
    pub(crate) fn copy_padded(&mut self, src: &Columns, rows: usize) {
        fn pad<T: Copy + Default>(dst: &mut Vec<T>, src: &[T], rows: usize) {
            dst.clear();
            dst.extend_from_slice(src);
            dst.resize(rows.max(src.len()), T::default());
        }
        pad(&mut self.seq, &src.seq, rows);
        pad(&mut self.time, &src.time, rows);
        pad(&mut self.load, &src.load, rows);
        pad(&mut self.setpoint, &src.setpoint, rows);
        pad(&mut self.disp, &src.disp, rows);
        pad(&mut self.current, &src.current, rows);
        pad(&mut self.voltage, &src.voltage, rows);
        pad(&mut self.segment, &src.segment, rows);
        pad(&mut self.rho, &src.rho, rows);
    }

    /// Rows held (every column has the same length).
    pub(crate) fn len(&self) -> usize {
        self.seq.len()
    }

    pub(crate) fn clear(&mut self) {
        self.seq.clear();
        self.segment.clear();
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
    }
}

/// HDF5's byte shuffle of `values` into `out` (replacing its contents): byte `j` of element `i`
/// at `j·n + i`. `to_bytes` gives an element's bytes in the dataset's (native) byte order.
pub(crate) fn shuffle<T: Copy, const N: usize>(values: &[T], to_bytes: impl Fn(T) -> [u8; N], out: &mut Vec<u8>) {
    let n = values.len();
    // Every byte is overwritten below: no clearing (a reused buffer of the same size costs no
    // memset; that was 1.2 % of a `--fast` run).
    out.resize(n * N, 0);
    // One pass per byte plane: each reads the (L1-resident) chunk again but writes contiguously,
    // which the compiler vectorises; faster here than one scattered pass.
    for (j, plane) in out.chunks_exact_mut(n.max(1)).enumerate().take(N) {
        for (o, &v) in plane.iter_mut().zip(values) {
            *o = to_bytes(v)[j];
        }
    }
}

/// What the worker reports back with a set it is done with.
struct Done {
    cols: Columns,
    /// The first failure while storing this set (the chunk's first row and what failed).
    error: Option<String>,
}

struct Job {
    cols: Columns,
    /// Row index of the chunk's first row (a multiple of the chunk size).
    first_row: u64,
    /// Rows of `cols` that are data; the rest (of a partial chunk) is padding beyond the extent.
    rows: usize,
}

/// The compression worker and the pool of column sets. The writer owns one per file.
pub(crate) struct ChunkEncoder {
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    /// Sets back from the worker (or never sent), ready to be filled.
    free: Vec<Columns>,
    /// Sets handed to the worker and not yet back.
    in_flight: usize,
    /// The first error the worker reported, kept until the writer asks.
    error: Option<String>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ChunkEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkEncoder").field("in_flight", &self.in_flight).finish_non_exhaustive()
    }
}

impl ChunkEncoder {
    /// Start the worker for the nine sample datasets `data` (in `DATA_COLUMNS` order) whose
    /// chunks hold `chunk_rows` rows. Returns the encoder and the first set to fill.
    pub(crate) fn start(data: Vec<Dataset>, chunk_rows: usize) -> std::io::Result<(Self, Columns)> {
        let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job>(POOL);
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let worker = std::thread::Builder::new()
            .name("nanoecr-deflate".into())
            .spawn(move || worker(data, chunk_rows, jobs_rx, done_tx))?;
        let free = (1..POOL).map(|_| Columns::with_capacity(chunk_rows)).collect();
        Ok((
            Self { jobs: Some(jobs_tx), done: done_rx, free, in_flight: 0, error: None, worker: Some(worker) },
            Columns::with_capacity(chunk_rows),
        ))
    }

    fn take_done(&mut self, d: Done) {
        self.in_flight -= 1;
        if self.error.is_none() {
            self.error = d.error;
        }
        let mut cols = d.cols;
        cols.clear();
        self.free.push(cols);
    }

    /// Hand a full chunk (`cols`, first row `first_row`) to the worker and return an empty set to
    /// fill next, waiting for one if all are in flight. An error if the worker failed on an
    /// earlier chunk or is gone.
    pub(crate) fn submit(&mut self, cols: Columns, first_row: u64) -> Result<Columns, String> {
        self.check()?;
        let jobs = self.jobs.as_ref().ok_or("the compression worker has stopped")?;
        let rows = cols.len();
        jobs.send(Job { cols, first_row, rows }).map_err(|_| "the compression worker has stopped".to_string())?;
        self.in_flight += 1;
        while let Ok(d) = self.done.try_recv() {
            self.take_done(d);
        }
        if self.free.is_empty() {
            let d = self.done.recv().map_err(|_| "the compression worker has stopped".to_string())?;
            self.take_done(d);
        }
        self.free.pop().ok_or_else(|| "no column set came back from the compression worker".to_string())
    }

    /// Store the partial chunk `cols` (first row `first_row`) padded to `chunk_rows` rows, with
    /// the extent ending at its last row, and wait until it and everything before it is stored.
    /// The rows stay in `cols`: once the chunk is full it is submitted whole and replaces this
    /// copy.
    pub(crate) fn store_partial(&mut self, cols: &Columns, first_row: u64, chunk_rows: usize) -> Result<(), String> {
        self.drain()?;
        let mut set = self.free.pop().ok_or("no column set to copy the partial chunk into")?;
        set.copy_padded(cols, chunk_rows);
        let jobs = self.jobs.as_ref().ok_or("the compression worker has stopped")?;
        jobs.send(Job { cols: set, first_row, rows: cols.len() })
            .map_err(|_| "the compression worker has stopped".to_string())?;
        self.in_flight += 1;
        self.drain()
    }

    /// Wait until every chunk handed over is stored; the worker's first error, if any.
    pub(crate) fn drain(&mut self) -> Result<(), String> {
        while self.in_flight > 0 {
            let d = self.done.recv().map_err(|_| "the compression worker has stopped".to_string())?;
            self.take_done(d);
        }
        self.check()
    }

    fn check(&self) -> Result<(), String> {
        match &self.error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

impl Drop for ChunkEncoder {
    fn drop(&mut self) {
        // Closing the queue ends the worker once it has stored what is queued.
        self.jobs = None;
        if let Some(w) = self.worker.take() {
            if w.join().is_err() {
                tracing::error!("the compression worker panicked");
            }
        }
    }
}

/// Reused buffers and the compressor of the worker thread.
struct Encoder {
    compressor: Compress,
    shuffled: Vec<u8>,
    packed: Vec<u8>,
}

impl Encoder {
    fn new(level: u32, capacity: usize) -> Self {
        Self {
            // A zlib stream (header and Adler-32), as H5Zdeflate.c's compress2 writes.
            compressor: Compress::new(Compression::new(level), true),
            shuffled: Vec::with_capacity(capacity),
            packed: Vec::with_capacity(capacity),
        }
    }

    /// Encode `shuffled` as the deflate filter would: `(bytes, filter mask)`.
    fn deflate(&mut self) -> (&[u8], u32) {
        // An output buffer the size of the input: a stream that does not fit did not shrink the
        // chunk, and libhdf5's optional deflate filter would have been skipped too.
        self.packed.resize(self.shuffled.len(), 0);
        self.compressor.reset();
        let done = matches!(
            self.compressor.compress(&self.shuffled, &mut self.packed, FlushCompress::Finish),
            Ok(Status::StreamEnd)
        );
        let n = self.compressor.total_out() as usize;
        if done && n <= self.packed.len() {
            (&self.packed[..n], 0)
        } else {
            (&self.shuffled[..], MASK_DEFLATE_SKIPPED)
        }
    }
}

fn worker(data: Vec<Dataset>, chunk_rows: usize, jobs: Receiver<Job>, done: mpsc::Sender<Done>) {
    let mut enc = Encoder::new(LEVEL, chunk_rows * 8);
    while let Ok(Job { cols, first_row, rows }) = jobs.recv() {
        let error = store_chunk(&data, &mut enc, &cols, first_row, rows)
            .err()
            .map(|e| format!("storing the chunk of samples {first_row}..{}: {e}", first_row + rows as u64));
        if done.send(Done { cols, error }).is_err() {
            break;
        }
    }
}

fn store_chunk(data: &[Dataset], enc: &mut Encoder, cols: &Columns, first_row: u64, rows: usize) -> hdf5::Result<()> {
    let end = first_row as usize + rows;
    let put = |i: usize, enc: &mut Encoder| -> hdf5::Result<()> {
        let ds = data.get(i).ok_or_else(|| hdf5::Error::from("missing sample column"))?;
        let (bytes, mask) = enc.deflate();
        // The chunk must lie inside the extent before it is stored (H5Dwrite_chunk refuses an
        // offset beyond the dimensions); the extent only grows, chunk by chunk, in order.
        hdf5::sync::sync(|| {
            if ds.size() < end {
                ds.resize(end)?;
            }
            write_raw_chunk(ds, first_row, mask, bytes)
        })
    };
    shuffle(&cols.seq, u64::to_ne_bytes, &mut enc.shuffled);
    put(0, enc)?;
    for (i, col) in
        [(1, &cols.time), (2, &cols.load), (3, &cols.setpoint), (4, &cols.disp), (5, &cols.current), (6, &cols.voltage)]
    {
        shuffle(col, f64::to_ne_bytes, &mut enc.shuffled);
        put(i, enc)?;
    }
    shuffle(&cols.segment, u8::to_ne_bytes, &mut enc.shuffled);
    put(7, enc)?;
    shuffle(&cols.rho, f64::to_ne_bytes, &mut enc.shuffled);
    put(8, enc)
}

/// Store one encoded chunk of a one-dimensional dataset at row `first_row` (a chunk boundary).
#[allow(unsafe_code)] // the one call hdf5-metno does not wrap
fn write_raw_chunk(ds: &Dataset, first_row: u64, mask: u32, bytes: &[u8]) -> hdf5::Result<()> {
    let offset: [hdf5_sys::h5::hsize_t; 1] = [first_row];
    hdf5::sync::sync(|| {
        // SAFETY: `ds` is a live dataset id of rank 1, so `offset` (one coordinate) covers its
        // rank; `bytes` is valid for `bytes.len()` bytes during the call, which copies them out;
        // H5P_DEFAULT is a valid transfer property list. The library lock is held (`sync`).
        hdf5::h5check(unsafe {
            hdf5_sys::h5d::H5Dwrite_chunk(
                ds.id(),
                hdf5_sys::h5p::H5P_DEFAULT,
                mask,
                offset.as_ptr(),
                bytes.len(),
                bytes.as_ptr().cast(),
            )
        })
        .map(|_| ())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition of HDF5's shuffle (H5Zshuffle.c): output byte `j·n + i` is byte `j` of
    /// element `i`.
    #[test]
    fn shuffle_puts_byte_j_of_element_i_at_j_n_plus_i() {
        let values: Vec<u64> =
            (0..37u64).map(|i| i.wrapping_mul(0x0102_0304_0506_0708).rotate_left(i as u32)).collect();
        let mut out = Vec::new();
        shuffle(&values, u64::to_ne_bytes, &mut out);
        assert_eq!(out.len(), values.len() * 8);
        for (i, v) in values.iter().enumerate() {
            for (j, b) in v.to_ne_bytes().iter().enumerate() {
                assert_eq!(out[j * values.len() + i], *b, "element {i}, byte {j}");
            }
        }
        let bytes: Vec<u8> = (0..50u8).collect();
        shuffle(&bytes, u8::to_ne_bytes, &mut out);
        assert_eq!(out, bytes, "1-byte elements are left as they are");
        shuffle::<f64, 8>(&[], f64::to_ne_bytes, &mut out);
        assert!(out.is_empty());
    }

    /// A chunk that deflate cannot shrink is stored shuffled with the deflate bit set; one that
    /// it can is a zlib stream that inflates back to the shuffled bytes.
    #[test]
    fn incompressible_chunks_are_stored_raw_with_the_deflate_bit() {
        let mut enc = Encoder::new(LEVEL, 0);
        // xorshift bytes: incompressible.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        enc.shuffled = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let raw = enc.shuffled.clone();
        let (bytes, mask) = enc.deflate();
        assert_eq!(mask, MASK_DEFLATE_SKIPPED);
        assert_eq!(bytes, &raw[..]);

        enc.shuffled = vec![7u8; 4096];
        let (bytes, mask) = enc.deflate();
        assert_eq!(mask, 0);
        assert!(bytes.len() < 100, "a constant chunk deflates to {} bytes", bytes.len());
        let packed = bytes.to_vec();
        let mut out = vec![0u8; 4096];
        let n = libdeflater::Decompressor::new().zlib_decompress(&packed, &mut out).expect("a zlib stream");
        assert_eq!(n, 4096);
        assert_eq!(out, vec![7u8; 4096]);
    }
}
