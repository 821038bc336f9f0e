//! Full chunks of the sample columns, encoded outside libhdf5.
//!
//! libhdf5 (and hdf5-metno over it) serialises every call behind one global lock, and its filter
//! pipeline runs deflate inside that lock on the calling thread: that was 78 % of the consumer
//! thread in `--fast` runs (docs/performance.md, "Issue 11"). Here the writer hands each full
//! chunk of rows to two compression workers, each of which shuffles and deflates its share of the
//! columns itself (zlib-rs) and stores the encoded bytes with `H5Dwrite_chunk`: only that store
//! and the extent change take the library lock.
//!
//! The bytes decode exactly as libhdf5's own pipeline would for the datasets' declared filters
//! (shuffle, then deflate; docs/file-format.md), so every HDF5 reader decodes them without
//! plugins:
//! - shuffle (`H5Z_FILTER_SHUFFLE`, H5Zshuffle.c): byte `j` of element `i` goes to position
//!   `j·n + i` of the chunk (`n` elements); for 1-byte elements it is the identity;
//! - deflate (`H5Z_FILTER_DEFLATE`, H5Zdeflate.c): a zlib stream (RFC 1950: header, deflate
//!   data, Adler-32) of the shuffled bytes. libhdf5 declares deflate *optional* and skips it when
//!   the stream would be larger than its input; so do we, storing the shuffled bytes with bit 1
//!   (the deflate filter, second in the pipeline) of the chunk's filter mask set.
//!
//! Deflate need not compress every byte it carries: a stream may hold *stored* blocks (RFC 1951
//! §3.2.4), which any inflater copies out. The low byte planes of a noisy measurement (load,
//! displacement, current, Δρ/ρ) are random: static-Huffman deflate spent most of the worker's
//! time on them and wrote them 5 % larger. So each column keeps a plan of how many leading byte
//! planes to store, set by a probe that deflates every plane separately (the first full chunk,
//! then every 64th), and its stream is: zlib header, stored blocks of those planes, deflate
//! blocks of the rest, Adler-32 of all of it. The file still declares plain shuffle + deflate.
//!
//! Memory stays bounded: a fixed pool of [`Columns`] sets circulates between the writer and the
//! workers (the writer fills one while the workers encode others; both read the same set and the
//! last to finish with it returns it); when every set is in flight the writer waits for one to
//! come back, which throttles the producer instead of queueing without bound.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
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
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if N == 8 {
        done = shuffle8_sse2(values, |v| u64::from_le_bytes(first_8(to_bytes(v))), out);
    }
    if N == 8 {
        // Eight elements at a time: their 8×8 bytes transposed in registers, then eight 8-byte
        // stores, one into each plane. 3–4× faster than one pass per plane (≈ 13 ns per
        // element, stand-alone, on this host), which reads the 64 KiB chunk eight times.
        // On x86_64 only the elements after the last multiple of 16 come here.
        for (k, block) in values[done..].chunks_exact(8).enumerate() {
            let k = k + done / 8;
            let mut rows = [0u64; 8];
            for (r, &v) in rows.iter_mut().zip(block) {
                let mut b = [0u8; 8];
                b.copy_from_slice(&to_bytes(v));
                *r = u64::from_le_bytes(b);
            }
            transpose_bytes_8x8(&mut rows);
            for (j, r) in rows.iter().enumerate() {
                let at = j * n + 8 * k;
                if let Some(dst) = out.get_mut(at..at + 8) {
                    dst.copy_from_slice(&r.to_le_bytes());
                }
            }
        }
        done = n / 8 * 8;
    }
    // The rest (all of it for 1-byte elements, for which the shuffle is the identity).
    for (j, plane) in out.chunks_exact_mut(n.max(1)).enumerate().take(N) {
        for (o, &v) in plane.iter_mut().zip(values).skip(done) {
            *o = to_bytes(v)[j];
        }
    }
}

/// The first 8 bytes of an element's bytes (all of them: called where `N` is 8).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn first_8<const N: usize>(bytes: [u8; N]) -> [u8; 8] {
    let mut b = [0u8; 8];
    for (d, s) in b.iter_mut().zip(bytes) {
        *d = s;
    }
    b
}

/// HDF5's shuffle of 8-byte elements, 16 at a time in SSE2 registers (the unpack sequence of
/// c-blosc's `shuffle8_sse2`): two elements per register, their bytes interleaved, then words,
/// double words and quad words, and one 16-byte store into each of the eight planes. The 8×8
/// transpose in general registers ([`transpose_bytes_8x8`]) spent ≈ 70 ALU operations and eight
/// 8-byte stores per eight elements; this spends 32 unpacks and eight 16-byte stores per sixteen.
/// `word(v)` is element `v` as a little-endian `u64`; `out` holds 8 × `values.len()` bytes.
/// Returns how many leading elements it shuffled (a multiple of 16); the rest is the caller's.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)] // SSE2 intrinsics, unaligned 16-byte stores inside `out`
fn shuffle8_sse2<T: Copy>(values: &[T], word: impl Fn(T) -> u64, out: &mut [u8]) -> usize {
    use std::arch::x86_64::{
        __m128i, _mm_set_epi64x, _mm_setzero_si128, _mm_shuffle_epi32, _mm_storeu_si128, _mm_unpackhi_epi16,
        _mm_unpackhi_epi32, _mm_unpackhi_epi64, _mm_unpacklo_epi16, _mm_unpacklo_epi32, _mm_unpacklo_epi64,
        _mm_unpacklo_epi8,
    };
    let n = values.len();
    let n16 = n / 16 * 16;
    if out.len() < 8 * n {
        return 0;
    }
    for (k, block) in values[..n16].chunks_exact(16).enumerate() {
        let j = 16 * k;
        // SAFETY: SSE2 is part of the x86_64 baseline. Plane p's store writes out[p·n + j ..
        // p·n + j + 16], inside `out` since j + 16 ≤ n16 ≤ n, p < 8 and out.len() ≥ 8·n.
        unsafe {
            let mut a: [__m128i; 8] = [_mm_setzero_si128(); 8];
            for (r, pair) in a.iter_mut().zip(block.chunks_exact(2)) {
                let v = _mm_set_epi64x(word(pair[1]) as i64, word(pair[0]) as i64);
                // Byte b of both elements side by side: e0b0 e1b0 e0b1 e1b1 …
                *r = _mm_unpacklo_epi8(v, _mm_shuffle_epi32::<0x4e>(v));
            }
            let mut b: [__m128i; 8] = [_mm_setzero_si128(); 8];
            for q in 0..4 {
                b[2 * q] = _mm_unpacklo_epi16(a[2 * q], a[2 * q + 1]);
                b[2 * q + 1] = _mm_unpackhi_epi16(a[2 * q], a[2 * q + 1]);
            }
            for (q, l) in [(0, 0), (1, 1), (2, 4), (3, 5)] {
                a[2 * q] = _mm_unpacklo_epi32(b[l], b[l + 2]);
                a[2 * q + 1] = _mm_unpackhi_epi32(b[l], b[l + 2]);
            }
            for q in 0..4 {
                b[2 * q] = _mm_unpacklo_epi64(a[q], a[q + 4]);
                b[2 * q + 1] = _mm_unpackhi_epi64(a[q], a[q + 4]);
            }
            let base = out.as_mut_ptr();
            for (p, v) in b.iter().enumerate() {
                _mm_storeu_si128(base.add(p * n + j).cast(), *v);
            }
        }
    }
    n16
}

/// Transpose the 8×8 byte matrix whose row `i` is `rows[i]` (byte `j` = bits 8j..8j+8): after
/// it, byte `i` of `rows[j]` is what byte `j` of `rows[i]` was. Three rounds of swapping
/// off-diagonal blocks (4×4, then 2×2, then single bytes) with masks and shifts.
#[inline]
fn transpose_bytes_8x8(rows: &mut [u64; 8]) {
    for i in 0..4 {
        swap_block(rows, i, i + 4, 0x0000_0000_FFFF_FFFF, 32);
    }
    for i in [0, 1, 4, 5] {
        swap_block(rows, i, i + 2, 0x0000_FFFF_0000_FFFF, 16);
    }
    for i in [0, 2, 4, 6] {
        swap_block(rows, i, i + 1, 0x00FF_00FF_00FF_00FF, 8);
    }
}

/// Swap the high `shift` bits of each `2·shift`-bit group of `rows[a]` with the low ones of
/// `rows[b]` (one round of the block transpose).
#[inline(always)]
fn swap_block(rows: &mut [u64; 8], a: usize, b: usize, mask: u64, shift: u32) {
    let t = ((rows[a] >> shift) ^ rows[b]) & mask;
    rows[a] ^= t << shift;
    rows[b] ^= t;
}

/// Which compression worker stores each sample column (in `DATA_COLUMNS` order). Each dataset is
/// always stored by the same worker, in order, so no dataset's extent runs ahead of its chunks.
/// Split by the measured cost per column with the stored-plane rule (`column_cost` example on a
/// 30-minute `--fast` run, docs/performance.md "Issue 11, write side"; ms for the run, one thread):
/// sequence 10, time 12, load 16, displacement 3, voltage 6 → worker 0 (47); setpoint 15,
/// current 17, segment 1, Δρ/ρ 9 → worker 1 (42). The two costly noisy columns, load and current
/// (their sixth byte plane deflates to 0.34–0.40 at ≈ 5 ns per byte), go to different workers.
const WORKER_OF: [usize; 9] = [0, 0, 0, 1, 0, 1, 0, 1, 1];

/// Compression workers. Two, so that the encoding is two pieces the scheduler can place beside
/// the control loop and the consumer on a two-core machine rather than one.
const WORKERS: usize = 2;

/// What a worker reports back with a set it is done with.
struct Done {
    /// The set, shared with the other worker until both are done with it.
    cols: Arc<Columns>,
    /// The first failure while storing this set (the chunk's first row and what failed).
    error: Option<String>,
}

struct Job {
    cols: Arc<Columns>,
    /// Row index of the chunk's first row (a multiple of the chunk size).
    first_row: u64,
    /// Rows of `cols` that are data; the rest (of a partial chunk) is padding beyond the extent.
    rows: usize,
}

/// The compression workers and the pool of column sets. The writer owns one per file.
pub(crate) struct ChunkEncoder {
    jobs: Vec<SyncSender<Job>>,
    done: Receiver<Done>,
    /// Sets back from the workers (or never sent), ready to be filled.
    free: Vec<Columns>,
    /// Jobs (one per worker per set) handed over and not yet back.
    in_flight: usize,
    /// The first error a worker reported, kept until the writer asks.
    error: Option<String>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for ChunkEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkEncoder").field("in_flight", &self.in_flight).finish_non_exhaustive()
    }
}

const STOPPED: &str = "a compression worker has stopped";

impl ChunkEncoder {
    /// Start the workers for the nine sample datasets `data` (in `DATA_COLUMNS` order) whose
    /// chunks hold `chunk_rows` rows. Returns the encoder and the first set to fill.
    pub(crate) fn start(data: Vec<Dataset>, chunk_rows: usize) -> std::io::Result<(Self, Columns)> {
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let mut owned: Vec<Vec<(usize, Dataset)>> = (0..WORKERS).map(|_| Vec::new()).collect();
        for (i, ds) in data.into_iter().enumerate() {
            owned[WORKER_OF.get(i).copied().unwrap_or(0) % WORKERS].push((i, ds));
        }
        let mut jobs = Vec::with_capacity(WORKERS);
        let mut workers = Vec::with_capacity(WORKERS);
        for (w, datasets) in owned.into_iter().enumerate() {
            let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job>(POOL);
            let done_tx = done_tx.clone();
            let worker = std::thread::Builder::new()
                // ≤ 15 bytes, the kernel's limit on a thread name, so that the two stay apart
                // in `top -H` and `perf`.
                .name(format!("nanoecr-defl{w}"))
                .spawn(move || worker(datasets, chunk_rows, jobs_rx, done_tx))?;
            jobs.push(jobs_tx);
            workers.push(worker);
        }
        let free = (1..POOL).map(|_| Columns::with_capacity(chunk_rows)).collect();
        Ok((Self { jobs, done: done_rx, free, in_flight: 0, error: None, workers }, Columns::with_capacity(chunk_rows)))
    }

    fn take_done(&mut self, d: Done) {
        self.in_flight -= 1;
        if self.error.is_none() {
            self.error = d.error;
        }
        // The last worker to finish with a set returns it to the pool.
        if let Ok(mut cols) = Arc::try_unwrap(d.cols) {
            cols.clear();
            self.free.push(cols);
        }
    }

    fn send(&mut self, cols: Columns, first_row: u64, rows: usize) -> Result<(), String> {
        let cols = Arc::new(cols);
        for jobs in &self.jobs {
            jobs.send(Job { cols: Arc::clone(&cols), first_row, rows }).map_err(|_| STOPPED.to_string())?;
            self.in_flight += 1;
        }
        Ok(())
    }

    /// Hand a full chunk (`cols`, first row `first_row`) to the workers and return an empty set
    /// to fill next, waiting for one if all are in flight. An error if a worker failed on an
    /// earlier chunk or is gone.
    pub(crate) fn submit(&mut self, cols: Columns, first_row: u64) -> Result<Columns, String> {
        self.check()?;
        let rows = cols.len();
        self.send(cols, first_row, rows)?;
        while let Ok(d) = self.done.try_recv() {
            self.take_done(d);
        }
        while self.free.is_empty() {
            let d = self.done.recv().map_err(|_| STOPPED.to_string())?;
            self.take_done(d);
        }
        self.free.pop().ok_or_else(|| "no column set came back from the compression workers".to_string())
    }

    /// Store the partial chunk `cols` (first row `first_row`) padded to `chunk_rows` rows, with
    /// the extent ending at its last row, and wait until it and everything before it is stored.
    /// The rows stay in `cols`: once the chunk is full it is submitted whole and replaces this
    /// copy.
    pub(crate) fn store_partial(&mut self, cols: &Columns, first_row: u64, chunk_rows: usize) -> Result<(), String> {
        self.drain()?;
        let mut set = self.free.pop().ok_or("no column set to copy the partial chunk into")?;
        set.copy_padded(cols, chunk_rows);
        self.send(set, first_row, cols.len())?;
        self.drain()
    }

    /// Wait until every chunk handed over is stored; a worker's first error, if any.
    pub(crate) fn drain(&mut self) -> Result<(), String> {
        while self.in_flight > 0 {
            let d = self.done.recv().map_err(|_| STOPPED.to_string())?;
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
        // Closing the queues ends the workers once they have stored what is queued.
        self.jobs.clear();
        for w in self.workers.drain(..) {
            if w.join().is_err() {
                tracing::error!("a compression worker panicked");
            }
        }
    }
}

/// A byte plane is stored rather than deflated when deflate leaves more than this fraction of it.
/// The low mantissa bytes of a noisy measurement are random: static-Huffman deflate (zlib-rs
/// level 1) writes them 1.06× larger at ≈ 3 ns per byte, against a copy for storing them. Planes
/// between (the top mantissa bytes, 0.3–0.8) are worth deflating.
const STORE_ABOVE: f64 = 0.95;

/// Full chunks of a column between two probes, which deflate every plane to see whether the stored
/// planes are still incompressible (the same column can change character: the current before
/// and after Ohmic contact).
const PROBE_EVERY: u32 = 64;

/// Largest stored block of a deflate stream (RFC 1951 §3.2.4: LEN is 16 bits).
const STORED_MAX: usize = 65_535;

/// The zlib header (RFC 1950 §2.2) H5Zdeflate.c's compress2 writes at level 1: CM = 8 (deflate),
/// CINFO = 7 (32 KiB window), FLEVEL = 0 (fastest), FCHECK making 0x7801 a multiple of 31.
const ZLIB_HEADER: [u8; 2] = [0x78, 0x01];

/// Per column: which leading byte planes are stored rather than deflated.
#[derive(Debug, Clone, Copy, Default)]
struct PlanePlan {
    /// Leading planes stored (planes are in shuffle order: plane 0 is the least significant
    /// byte of little-endian values, the noisiest).
    stored: usize,
    /// Chunks until the next probe; 0 = probe this chunk.
    countdown: u32,
}

/// Reused buffers and the compressor of a worker thread.
struct Encoder {
    /// Raw deflate (no zlib wrapper): the header, stored blocks and Adler-32 are written here.
    compressor: Compress,
    shuffled: Vec<u8>,
    packed: Vec<u8>,
}

impl Encoder {
    fn new(level: u32, capacity: usize) -> Self {
        Self {
            compressor: Compress::new(Compression::new(level), false),
            shuffled: Vec::with_capacity(capacity),
            packed: Vec::with_capacity(capacity),
        }
    }

    /// Encode `shuffled` (`planes` byte planes of equal length) as the deflate filter's output
    /// would decode: `(bytes, filter mask)`. One zlib stream (RFC 1950) whose first `plan.stored`
    /// planes are stored blocks and the rest deflated; a probe deflates every plane, one block
    /// each, and sets how many leading planes to store from what each gained. A chunk that does
    /// not shrink is stored shuffled only, with the deflate bit of the filter mask set, as
    /// libhdf5's optional deflate filter does.
    fn encode(&mut self, planes: usize, plan: &mut PlanePlan, full: bool) -> (&[u8], u32) {
        let len = self.shuffled.len();
        let planes = planes.max(1);
        let plane_len = len / planes;
        if len == 0 || plane_len * planes != len {
            return (&self.shuffled[..], MASK_DEFLATE_SKIPPED);
        }
        // Only full chunks probe and move the plan: a partial one is padded with zeros, which
        // would make every plane look compressible.
        let probe = full && plan.countdown == 0;
        let stored = if plan.countdown == 0 { 0 } else { plan.stored.min(planes) };
        if stored == planes {
            if full {
                plan.countdown -= 1;
            }
            return (&self.shuffled[..], MASK_DEFLATE_SKIPPED);
        }
        // A probe must see every plane, so it gets room for deflate's worst case (static Huffman
        // spends up to 9 bits on a byte, plus block headers). Otherwise an output buffer the size
        // of the input: a stream that does not fit did not shrink the chunk, and libhdf5's
        // optional deflate filter would have been skipped too.
        let cap = if probe { len + len / 4 + 1024 } else { len };
        self.packed.resize(cap, 0);
        let encoded = self.encode_into(planes, plane_len, stored, probe);
        let shrank = matches!(encoded, Some((n, _)) if n < len);
        if probe {
            if let Some((_, gained)) = &encoded {
                plan.stored = gained.iter().take(planes).take_while(|&&r| r > STORE_ABOVE).count();
                plan.countdown = PROBE_EVERY;
            }
        } else if full {
            // A chunk the plan did not shrink: the data changed, probe the next one.
            plan.countdown = if shrank { plan.countdown - 1 } else { 0 };
        }
        match encoded {
            Some((n, _)) if n < len => (&self.packed[..n], 0),
            _ => (&self.shuffled[..], MASK_DEFLATE_SKIPPED),
        }
    }

    /// Write the stream into `packed`; its length and, in a probe, each plane's compressed size
    /// as a fraction of the plane. `None` if it does not fit in `packed`.
    fn encode_into(
        &mut self,
        planes: usize,
        plane_len: usize,
        stored: usize,
        probe: bool,
    ) -> Option<(usize, [f64; 8])> {
        let out = &mut self.packed;
        let cap = out.len();
        let mut pos = 0;
        let put = |out: &mut Vec<u8>, bytes: &[u8], pos: &mut usize| -> Option<()> {
            out.get_mut(*pos..*pos + bytes.len())?.copy_from_slice(bytes);
            *pos += bytes.len();
            Some(())
        };
        put(out, &ZLIB_HEADER, &mut pos)?;
        // Stored blocks (RFC 1951 §3.2.4): BFINAL = 0, BTYPE = 00 in the first three bits of a
        // byte, padded to the byte; LEN and its one's complement NLEN, little-endian; the bytes.
        // They start and end on byte boundaries, so the compressor's blocks follow directly, and
        // they come first, so its back-references (into its own input) never reach them.
        for block in self.shuffled[..stored * plane_len].chunks(STORED_MAX) {
            let n = block.len() as u16;
            let [l0, l1] = n.to_le_bytes();
            let [c0, c1] = (!n).to_le_bytes();
            put(out, &[0, l0, l1, c0, c1], &mut pos)?;
            put(out, block, &mut pos)?;
        }
        self.compressor.reset();
        let mut gained = [0.0; 8];
        let rest = &self.shuffled[stored * plane_len..];
        if probe {
            // One block per plane (a sync flush ends each on a byte boundary), to see what each gains.
            for (j, plane) in rest.chunks_exact(plane_len).enumerate() {
                let last = stored + j + 1 == planes;
                let (in0, out0) = (self.compressor.total_in(), self.compressor.total_out());
                let flush = if last { FlushCompress::Finish } else { FlushCompress::Sync };
                let st = self.compressor.compress(plane, out.get_mut(pos..cap)?, flush).ok()?;
                let written = (self.compressor.total_out() - out0) as usize;
                pos += written;
                // Out of room: the plane was not all taken, or the stream not ended.
                let taken = (self.compressor.total_in() - in0) as usize == plane.len();
                if !taken || (last && st != Status::StreamEnd) || pos >= cap {
                    return None;
                }
                if let Some(g) = gained.get_mut(stored + j) {
                    *g = written as f64 / plane_len as f64;
                }
            }
        } else {
            let out0 = self.compressor.total_out();
            let st = self.compressor.compress(rest, out.get_mut(pos..cap)?, FlushCompress::Finish).ok()?;
            if st != Status::StreamEnd {
                return None;
            }
            pos += (self.compressor.total_out() - out0) as usize;
        }
        // Adler-32 of all the uncompressed bytes, stored blocks included, most significant byte
        // first (RFC 1950 §2.2).
        put(out, &libdeflater::adler32(&self.shuffled).to_be_bytes(), &mut pos)?;
        Some((pos, gained))
    }
}

/// Shuffle column `i` of `cols` into `out`; its element size in bytes (= byte planes).
fn shuffle_column(cols: &Columns, i: usize, out: &mut Vec<u8>) -> usize {
    match i {
        0 => shuffle(&cols.seq, u64::to_ne_bytes, out),
        1 => shuffle(&cols.time, f64::to_ne_bytes, out),
        2 => shuffle(&cols.load, f64::to_ne_bytes, out),
        3 => shuffle(&cols.setpoint, f64::to_ne_bytes, out),
        4 => shuffle(&cols.disp, f64::to_ne_bytes, out),
        5 => shuffle(&cols.current, f64::to_ne_bytes, out),
        6 => shuffle(&cols.voltage, f64::to_ne_bytes, out),
        7 => {
            shuffle(&cols.segment, u8::to_ne_bytes, out);
            return 1;
        }
        _ => shuffle(&cols.rho, f64::to_ne_bytes, out),
    }
    8
}

fn worker(data: Vec<(usize, Dataset)>, chunk_rows: usize, jobs: Receiver<Job>, done: mpsc::Sender<Done>) {
    let mut enc = Encoder::new(LEVEL, chunk_rows * 8);
    let mut plans = vec![PlanePlan::default(); data.len()];
    while let Ok(Job { cols, first_row, rows }) = jobs.recv() {
        let error = store_chunk(&data, &mut plans, &mut enc, &cols, first_row, rows)
            .err()
            .map(|e| format!("storing the chunk of samples {first_row}..{}: {e}", first_row + rows as u64));
        if done.send(Done { cols, error }).is_err() {
            break;
        }
    }
}

fn store_chunk(
    data: &[(usize, Dataset)],
    plans: &mut [PlanePlan],
    enc: &mut Encoder,
    cols: &Columns,
    first_row: u64,
    rows: usize,
) -> hdf5::Result<()> {
    let end = first_row as usize + rows;
    for ((i, ds), plan) in data.iter().zip(plans.iter_mut()) {
        let planes = shuffle_column(cols, *i, &mut enc.shuffled);
        let (bytes, mask) = enc.encode(planes, plan, rows == cols.len());
        // The chunk must lie inside the extent before it is stored (H5Dwrite_chunk refuses an
        // offset beyond the dimensions); the extent only grows, chunk by chunk, in order.
        hdf5::sync::sync(|| {
            if ds.size() < end {
                ds.resize(end)?;
            }
            write_raw_chunk(ds, first_row, mask, bytes)
        })?;
    }
    Ok(())
}

/// Encodes whole columns on the calling thread, for tables written once (the ground truth when
/// a run closes): the same streams the workers write, with zlib-rs instead of libhdf5's system
/// zlib, which deflated them at a third of the speed on the consumer thread.
pub(crate) struct ColumnEncoder {
    enc: Encoder,
}

impl std::fmt::Debug for ColumnEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColumnEncoder").finish_non_exhaustive()
    }
}

impl ColumnEncoder {
    pub(crate) fn new() -> Self {
        Self { enc: Encoder::new(LEVEL, 0) }
    }

    /// Write `values` as the whole of the one-dimensional dataset `ds`, whose chunks hold
    /// `chunk_rows` rows: extent first, then each chunk shuffled, encoded and stored; the last
    /// one padded with zeros (the fill value beyond the extent, as libhdf5 stores an edge chunk).
    pub(crate) fn write_column<T: Copy + Default, const N: usize>(
        &mut self,
        ds: &Dataset,
        values: &[T],
        to_bytes: impl Fn(T) -> [u8; N],
        chunk_rows: usize,
    ) -> hdf5::Result<()> {
        let chunk_rows = chunk_rows.max(1);
        hdf5::sync::sync(|| ds.resize(values.len()))?;
        let mut plan = PlanePlan::default();
        let mut padded: Vec<T> = Vec::new();
        for (k, rows) in values.chunks(chunk_rows).enumerate() {
            let full = rows.len() == chunk_rows;
            let rows = if full {
                rows
            } else {
                padded.clear();
                padded.extend_from_slice(rows);
                padded.resize(chunk_rows, T::default());
                &padded[..]
            };
            shuffle(rows, &to_bytes, &mut self.enc.shuffled);
            let (bytes, mask) = self.enc.encode(N, &mut plan, full);
            write_raw_chunk(ds, (k * chunk_rows) as u64, mask, bytes)?;
        }
        Ok(())
    }
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
        // Every split between the 16-element SSE2 blocks, the 8-element blocks and the tail, for
        // u64 and f64 (NaN payloads included: only bits move).
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for n in [0usize, 1, 7, 8, 9, 15, 16, 17, 23, 24, 31, 32, 33, 48, 8191, 8192, 8197] {
            let ints: Vec<u64> = (0..n).map(|_| xorshift(&mut x)).collect();
            let floats: Vec<f64> = ints.iter().map(|&b| f64::from_bits(b)).collect();
            shuffle(&ints, u64::to_ne_bytes, &mut out);
            let mut again = Vec::new();
            shuffle(&floats, f64::to_ne_bytes, &mut again);
            assert_eq!(out, again, "{n} elements: f64 and u64 of the same bits");
            assert_eq!(out.len(), 8 * n);
            for (i, v) in ints.iter().enumerate() {
                for (j, b) in v.to_ne_bytes().iter().enumerate() {
                    assert_eq!(out[j * n + i], *b, "{n} elements: element {i}, byte {j}");
                }
            }
        }
        let bytes: Vec<u8> = (0..50u8).collect();
        shuffle(&bytes, u8::to_ne_bytes, &mut out);
        assert_eq!(out, bytes, "1-byte elements are left as they are");
        shuffle::<f64, 8>(&[], f64::to_ne_bytes, &mut out);
        assert!(out.is_empty());
    }

    fn xorshift(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    fn inflate(packed: &[u8], len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        // libdeflate checks the block structure and the Adler-32 (RFC 1950).
        let n = libdeflater::Decompressor::new().zlib_decompress(packed, &mut out).expect("a valid zlib stream");
        assert_eq!(n, len);
        out
    }

    /// A chunk that deflate cannot shrink is stored shuffled with the deflate bit set; one that
    /// it can is a zlib stream that inflates back to the shuffled bytes.
    #[test]
    fn incompressible_chunks_are_stored_raw_with_the_deflate_bit() {
        let mut enc = Encoder::new(LEVEL, 0);
        let mut plan = PlanePlan::default();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        enc.shuffled = (0..4096).map(|_| xorshift(&mut x) as u8).collect();
        let raw = enc.shuffled.clone();
        let (bytes, mask) = enc.encode(1, &mut plan, true);
        assert_eq!(mask, MASK_DEFLATE_SKIPPED);
        assert_eq!(bytes, &raw[..]);
        assert_eq!((plan.stored, plan.countdown), (1, PROBE_EVERY), "the probe found the one plane random");
        // Until the next probe, such a column is stored without deflating at all.
        enc.shuffled = vec![7u8; 4096];
        let (bytes, mask) = enc.encode(1, &mut plan, true);
        assert_eq!((mask, bytes.len()), (MASK_DEFLATE_SKIPPED, 4096));
        assert_eq!(plan.countdown, PROBE_EVERY - 1);

        let mut plan = PlanePlan::default();
        let (bytes, mask) = enc.encode(1, &mut plan, true);
        assert_eq!(mask, 0);
        assert!(bytes.len() < 100, "a constant chunk deflates to {} bytes", bytes.len());
        let packed = bytes.to_vec();
        assert_eq!(inflate(&packed, 4096), vec![7u8; 4096]);
    }

    /// A noisy measurement (a smooth value plus noise in its low mantissa bits): the probe finds
    /// the low byte planes incompressible, later chunks store them (stored blocks of at most
    /// 65 535 bytes) and deflate the rest, the stream inflates to the same bytes, and it is
    /// smaller than deflating every plane (static Huffman codes random bytes in 8–9 bits).
    #[test]
    fn noisy_low_planes_are_stored_and_the_stream_still_inflates_to_the_chunk() {
        for rows in [8192usize, 16_384] {
            let mut x = 0x0123_4567_89AB_CDEFu64;
            let values: Vec<f64> = (0..rows)
                .map(|i| 1000.0 + i as f64 * 1e-3 + (xorshift(&mut x) >> 11) as f64 * 2f64.powi(-53))
                .collect();
            let mut enc = Encoder::new(LEVEL, rows * 8);
            let mut plan = PlanePlan::default();
            shuffle(&values, f64::to_ne_bytes, &mut enc.shuffled);
            let raw = enc.shuffled.clone();

            let (bytes, mask) = enc.encode(8, &mut plan, true);
            assert_eq!(mask, 0);
            let probed = bytes.len();
            assert_eq!(inflate(bytes, raw.len()), raw);
            assert!((4..8).contains(&plan.stored), "{rows} rows: {} leading planes stored", plan.stored);
            assert_eq!(plan.countdown, PROBE_EVERY);

            let (bytes, mask) = enc.encode(8, &mut plan, true);
            assert_eq!(mask, 0);
            assert_eq!(inflate(bytes, raw.len()), raw, "{rows} rows, stored planes");
            assert!(bytes.len() < probed, "{rows} rows: {} bytes with stored planes, {probed} deflated", bytes.len());
            assert_eq!(plan.countdown, PROBE_EVERY - 1);
        }
    }

    /// A column that turns smooth (the current once contact is made, a constant) is deflated
    /// whole again from the next probe on.
    #[test]
    fn a_probe_deflates_planes_again_once_they_compress() {
        let mut enc = Encoder::new(LEVEL, 8192 * 8);
        // A partial chunk (zero padding after the rows) neither probes nor moves the plan.
        let mut x = 1u64;
        let noisy: Vec<f64> = (0..8192).map(|i| if i < 100 { f64::from_bits(xorshift(&mut x)) } else { 0.0 }).collect();
        shuffle(&noisy, f64::to_ne_bytes, &mut enc.shuffled);
        let mut fresh = PlanePlan::default();
        let (bytes, mask) = enc.encode(8, &mut fresh, false);
        assert_eq!(mask, 0, "deflated whole: {} bytes", bytes.len());
        assert_eq!((fresh.stored, fresh.countdown), (0, 0));

        let mut plan = PlanePlan { stored: 6, countdown: 3 };
        let values = vec![5.0f64; 8192];
        let mut sizes = Vec::new();
        for _ in 0..4 {
            shuffle(&values, f64::to_ne_bytes, &mut enc.shuffled);
            let expect = enc.shuffled.clone();
            let (bytes, mask) = enc.encode(8, &mut plan, true);
            assert_eq!(mask, 0);
            sizes.push(bytes.len());
            assert_eq!(inflate(bytes, expect.len()), expect);
        }
        assert_eq!(plan.stored, 0, "after the probe no plane is stored");
        assert!(sizes[3] < sizes[0] / 10, "sizes {sizes:?}");
    }
}
