//! Reading a 1-D chunked column with the chunks decoded outside libhdf5.
//!
//! libhdf5 (and hdf5-metno around it) runs every call behind one global lock, so a column read
//! through `H5Dread` inflates its chunks one after the other on one core, with system zlib. Here
//! the lock is held only to copy each chunk's stored bytes out of the file (`H5Dread_chunk`, its
//! filter mask and size from `H5Dget_chunk_info_by_coord`; in libhdf5 1.10 both it and the
//! by-index lookup walk the chunk index from its start on every call). The chunks are then inflated with
//! libdeflate and unshuffled on the rayon pool, each straight into its place in the column.
//!
//! When the file is certainly not being written ([`DirectFile`]: opened read-only without SWMR
//! by this process alone, default driver, no user block), the lock is held even less: every
//! chunk's address, size and filter mask is collected at once — read from the file's chunk index
//! in one pass ([`crate::chunk_index`]) where it is an extensible array, else one
//! `H5Dget_chunk_info_by_coord` per chunk in one lock round —, and the pool threads then read the
//! stored bytes themselves with `pread` at those addresses and decode them, so nothing but the
//! address lookup is serial. (Inflating straight from the file mapped read-only instead was
//! slower: its page faults cost more than `pread`'s copy, docs/performance.md "sixth pass".)
//!
//! Only what this module can reproduce exactly takes the fast path: a 1-D chunked dataset whose
//! file type is the native little-endian type of the column, with a filter pipeline of shuffle,
//! deflate, both (shuffle first, as h5py and our writer set them) or none. A chunk stored raw
//! (its filter-mask bit set, as a writer does when deflate would not shrink it) is taken as it
//! is; a chunk never written is read through libhdf5, which knows the dataset's fill value; a
//! partial last chunk is decoded whole (HDF5 stores edge chunks full size) and cut. Anything else
//! — another filter (Fletcher32, SZIP, LZF, …), another byte order or width, a chunk that does
//! not decode to its full size — returns `None`, and the caller reads the column the normal way.

use std::cell::RefCell;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use hdf5::filters::Filter;
use hdf5::{Dataset, Datatype, H5Type};
use libdeflater::Decompressor;
use rayon::prelude::*;

/// A column element the fast path can rebuild from its little-endian bytes.
pub(crate) trait LeScalar: H5Type + Copy + Default + Send + Sync {
    /// Bytes per element.
    const SIZE: usize;
    /// `dst.len()` elements from a shuffled chunk of `rows` elements: byte k of element i at
    /// `k · rows + i` (HDF5's shuffle filter, H5Zshuffle.c).
    fn unshuffle(bytes: &[u8], rows: usize, dst: &mut [Self]);
    /// `dst.len()` elements stored one after the other.
    fn from_le(bytes: &[u8], dst: &mut [Self]);
}

/// Gather the `S` byte planes of a shuffled chunk into elements. The planes are cut to
/// `dst.len()` first, so the inner loop indexes within proven bounds.
#[inline(always)]
fn unshuffle_planes<const S: usize, T>(bytes: &[u8], rows: usize, dst: &mut [T], conv: fn([u8; S]) -> T) {
    let m = dst.len();
    let planes: [&[u8]; S] = std::array::from_fn(|k| &bytes[k * rows..k * rows + m]);
    let mut done = 0;
    if S == 8 {
        #[cfg(target_arch = "x86_64")]
        {
            done = unshuffle16_sse2(&planes, dst, conv);
        }
        // Eight rows at a time: eight bytes from each plane are an 8 × 8 byte matrix (plane k,
        // row i); its transpose is the eight elements. A byte gather per element was 16 % of a
        // 100 kHz run's read (perf); this is a few shifts and masks per element.
        for (b, out) in dst[done..].chunks_exact_mut(8).enumerate() {
            let at = done + 8 * b;
            let mut w: [u64; 8] = std::array::from_fn(|k| {
                let mut a = [0u8; 8];
                a.copy_from_slice(&planes[k][at..at + 8]);
                u64::from_le_bytes(a)
            });
            transpose_8x8(&mut w);
            for (d, e) in out.iter_mut().zip(w) {
                let le = e.to_le_bytes();
                *d = conv(std::array::from_fn(|k| le[k]));
            }
        }
        done += (m - done) / 8 * 8;
    }
    for (i, d) in dst.iter_mut().enumerate().skip(done) {
        *d = conv(std::array::from_fn(|k| planes[k][i]));
    }
}

/// Sixteen rows of eight byte planes at a time with SSE2 (every x86-64 CPU has it): three rounds
/// of byte, 16-bit and 32-bit interleaves turn sixteen bytes of each plane into the sixteen
/// elements, 24 instructions for 16 elements where [`transpose_8x8`] takes ≈ 9 per element
/// (the unshuffle was ≈ 10 % of the peer bench's CPU with it, `perf`, docs/performance.md
/// "sixth pass"). Returns the rows done (a multiple of 16); the caller does the rest.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)] // SSE2 loads from proven-bounds slices; the interleaves touch registers only
#[inline(always)]
fn unshuffle16_sse2<const S: usize, T>(planes: &[&[u8]; S], dst: &mut [T], conv: fn([u8; S]) -> T) -> usize {
    use std::arch::x86_64::{
        __m128i, _mm_loadu_si128, _mm_storeu_si128, _mm_unpackhi_epi16, _mm_unpackhi_epi32, _mm_unpackhi_epi8,
        _mm_unpacklo_epi16, _mm_unpacklo_epi32, _mm_unpacklo_epi8,
    };
    if S != 8 {
        return 0;
    }
    let mut bytes = [0u8; 128];
    for (b, out) in dst.chunks_exact_mut(16).enumerate() {
        let at = 16 * b;
        // SAFETY: SSE2 is part of x86-64, so these intrinsics are available on every CPU this
        // code runs on. Each load reads 16 bytes from a slice of exactly 16 bytes (the slice
        // indexing checks `at + 16 <= planes[k].len()`, and every plane holds `dst.len()` rows),
        // and each store writes 16 bytes inside the 128-byte local array; unaligned loads and
        // stores accept any address.
        unsafe {
            let p: [__m128i; 8] = std::array::from_fn(|k| _mm_loadu_si128(planes[k][at..at + 16].as_ptr().cast()));
            // Bytes of planes (0, 1), (2, 3), (4, 5), (6, 7) interleaved: of rows 0–7, of rows 8–15.
            let halves: [[__m128i; 4]; 2] = [
                std::array::from_fn(|j| _mm_unpacklo_epi8(p[2 * j], p[2 * j + 1])),
                std::array::from_fn(|j| _mm_unpackhi_epi8(p[2 * j], p[2 * j + 1])),
            ];
            for (half, a) in halves.iter().enumerate() {
                // Planes 0–3 and planes 4–7 of rows 0–3 and of rows 4–7 (of this half).
                let lo = [_mm_unpacklo_epi16(a[0], a[1]), _mm_unpackhi_epi16(a[0], a[1])];
                let hi = [_mm_unpacklo_epi16(a[2], a[3]), _mm_unpackhi_epi16(a[2], a[3])];
                for (q, (l, h)) in lo.into_iter().zip(hi).enumerate() {
                    let rows = [_mm_unpacklo_epi32(l, h), _mm_unpackhi_epi32(l, h)];
                    for (r, v) in rows.into_iter().enumerate() {
                        // Rows 8·half + 4q + 2r and the next one, eight bytes each.
                        let off = 64 * half + 32 * q + 16 * r;
                        _mm_storeu_si128(bytes[off..off + 16].as_mut_ptr().cast(), v);
                    }
                }
            }
        }
        for (d, e) in out.iter_mut().zip(bytes.chunks_exact(S)) {
            *d = conv(std::array::from_fn(|k| e[k]));
        }
    }
    dst.len() / 16 * 16
}

/// Transpose the 8 × 8 byte matrix whose row k is `w[k]` and column i its little-endian byte i:
/// three rounds of swapping off-diagonal blocks (4 × 4, then 2 × 2, then single bytes).
#[inline(always)]
fn transpose_8x8(w: &mut [u64; 8]) {
    for (shift, mask, pairs) in [
        (32, 0x0000_0000_FFFF_FFFF_u64, [(0, 4), (1, 5), (2, 6), (3, 7)]),
        (16, 0x0000_FFFF_0000_FFFF, [(0, 2), (1, 3), (4, 6), (5, 7)]),
        (8, 0x00FF_00FF_00FF_00FF, [(0, 1), (2, 3), (4, 5), (6, 7)]),
    ] {
        for (i, j) in pairs {
            let t = ((w[i] >> shift) ^ w[j]) & mask;
            w[i] ^= t << shift;
            w[j] ^= t;
        }
    }
}

macro_rules! le_scalar {
    ($($t:ty),*) => {$(
        impl LeScalar for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn unshuffle(bytes: &[u8], rows: usize, dst: &mut [Self]) {
                unshuffle_planes::<{ std::mem::size_of::<$t>() }, $t>(bytes, rows, dst, <$t>::from_le_bytes);
            }
            fn from_le(bytes: &[u8], dst: &mut [Self]) {
                for (d, b) in dst.iter_mut().zip(bytes.chunks_exact(Self::SIZE)) {
                    let mut a = [0u8; std::mem::size_of::<$t>()];
                    a.copy_from_slice(b);
                    *d = <$t>::from_le_bytes(a);
                }
            }
        }
    )*};
}
le_scalar!(f64, f32, u64, i64, u32, i32, u16, i16, u8, i8);

/// What one chunk's stored bytes need before they are the column's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pipeline {
    /// Pipeline index of the shuffle filter, if present.
    shuffle: Option<u32>,
    /// Pipeline index of the deflate filter, if present.
    deflate: Option<u32>,
}

impl Pipeline {
    /// The pipeline of a dataset, if this module can undo it exactly. HDF5 applies the filters
    /// in pipeline order on write and undoes them in reverse on read: shuffle must come before
    /// deflate.
    fn of(filters: &[Filter]) -> Option<Self> {
        let mut p = Pipeline { shuffle: None, deflate: None };
        for (i, f) in filters.iter().enumerate() {
            let i = u32::try_from(i).ok()?;
            match f {
                Filter::Shuffle if p.shuffle.is_none() && p.deflate.is_none() => p.shuffle = Some(i),
                Filter::Deflate(_) if p.deflate.is_none() => p.deflate = Some(i),
                _ => return None,
            }
        }
        Some(p)
    }

    /// Whether filter `index` was applied to a chunk with filter mask `mask` (bit i set: filter
    /// i skipped; HDF5 User Guide, "Direct chunk write", and `H5Dread_chunk`'s reference).
    fn applied(index: Option<u32>, mask: u32) -> bool {
        index.is_some_and(|i| mask & (1 << i) == 0)
    }
}

/// Read a whole 1-D column through the fast path, or `None` if this dataset is not one it can
/// decode exactly (see the module docs; the caller then uses `H5Dread`). Errors are libhdf5's,
/// from the calls that copy the stored chunks out.
///
/// The calling thread copies the stored chunks out one by one under the library lock and hands
/// each to the rayon pool as soon as it has it, so decoding overlaps the (serial) copying.
pub(crate) fn read_column<T: LeScalar>(ds: &Dataset, direct: Option<&DirectFile>) -> hdf5::Result<Option<Vec<T>>> {
    let Some(plan) = plan::<T>(ds)? else { return Ok(None) };
    // Zeroed pages from the kernel, not yet touched: the decoders fault them in, in parallel.
    let mut out = vec![T::default(); plan.len];
    advise_huge_pages(&mut out);
    if let Some(direct) = direct {
        return read_direct(ds, direct, &plan, out);
    }
    let failed = AtomicBool::new(false);
    let mut unwritten = Vec::new();
    // Stored-chunk buffers come back from the decoders and are reused: fresh ones were a page
    // fault per 4 KiB on the copying thread, the one that is not parallel.
    let (recycle, recycled) = std::sync::mpsc::channel::<Vec<u8>>();
    let copied: hdf5::Result<()> = rayon::scope(|s| {
        let recycled = recycled; // moved in: a Receiver is Send, not Sync
        for (i, dst) in out.chunks_mut(plan.chunk_rows).enumerate() {
            let buf = recycled.try_recv().unwrap_or_default();
            let Some((mask, stored)) = read_raw_chunk(ds, i, plan.chunk_rows, buf)? else {
                unwritten.push(i);
                continue;
            };
            let (failed, pipeline, rows, recycle) = (&failed, plan.pipeline, plan.chunk_rows, recycle.clone());
            s.spawn(move |_| {
                DECODER.with(|cell| {
                    let (dec, scratch, _) = &mut *cell.borrow_mut();
                    if !decode_chunk(dec, scratch, pipeline, mask, &stored, rows, dst) {
                        failed.store(true, Ordering::Relaxed);
                    }
                });
                // The reader may be done already; then the buffer is simply dropped.
                let _ = recycle.send(stored);
            });
        }
        Ok(())
    });
    copied?;
    if failed.load(Ordering::Relaxed) {
        tracing::debug!(dataset = %ds.name(), "a chunk did not decode to its full size: reading through libhdf5");
        return Ok(None);
    }
    // Chunks never written hold the dataset's fill value: let libhdf5 supply it.
    for i in unwritten {
        fill_read_through_library(ds, &mut out, i * plan.chunk_rows, plan.chunk_rows)?;
    }
    Ok(Some(out))
}

/// The run file opened a second time, for `pread`, when nothing can be writing it: the chunk
/// addresses libhdf5 reports are then where the bytes are, and stay there.
pub(crate) struct DirectFile {
    file: std::fs::File,
}

impl DirectFile {
    /// `Some` only when `h5` (the same `path`, already open) is safe to read around libhdf5:
    /// - opened read-only and without SWMR, and no other handle in this process has it open for
    ///   writing (`H5Fget_intent` reports the shared file's mode: a writer in this process makes
    ///   it read-write), so no chunk can move, grow or sit unflushed in a writer's cache; another
    ///   process writing it holds the superblock's write flag, and then `H5Fopen` without SWMR
    ///   fails and the reader opens it in SWMR mode, which never comes here;
    /// - the default (sec2) driver, so the file on disk is the whole address space;
    /// - no user block, so a chunk's address is its byte offset in the file.
    ///
    /// The caller also keeps files whose `status` is `running` off this path.
    pub(crate) fn open(path: &Path, h5: &hdf5::File) -> Option<Self> {
        use hdf5::plist::file_access::FileDriver;
        use hdf5_sys::h5f::{H5Fget_intent, H5F_ACC_RDONLY};
        let mut intent = u32::MAX;
        #[allow(unsafe_code)]
        // SAFETY: `h5.id()` is a live file id held by `h5`; `intent` is a valid out-pointer; the
        // library lock is held (`sync`).
        let got = hdf5::sync::sync(|| hdf5::h5check(unsafe { H5Fget_intent(h5.id(), &mut intent) }));
        if got.is_err() || intent != H5F_ACC_RDONLY {
            return None;
        }
        if h5.userblock() != 0 || !matches!(h5.access_plist().ok()?.driver(), FileDriver::Sec2) {
            return None;
        }
        std::fs::File::open(path).ok().map(|file| Self { file })
    }
}

/// Where one stored chunk is: its filter mask, byte offset and stored size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChunkInfo {
    mask: u32,
    addr: u64,
    size: usize,
}

/// [`read_column`] through a [`DirectFile`]: one lock round for every chunk's address, then the
/// pool threads `pread` and decode the chunks, each into its rows of `out`. A chunk that cannot
/// be read or decoded sends the whole column back to the caller's libhdf5 path (`None`).
fn read_direct<T: LeScalar>(
    ds: &Dataset,
    direct: &DirectFile,
    plan: &Plan,
    mut out: Vec<T>,
) -> hdf5::Result<Option<Vec<T>>> {
    let infos = all_chunk_infos::<T>(ds, direct, plan)?;
    let failed = AtomicBool::new(false);
    out.par_chunks_mut(plan.chunk_rows).zip(infos.par_iter()).for_each(|(dst, info)| {
        let Some(info) = info else { return };
        DECODER.with(|cell| {
            let (dec, scratch, stored) = &mut *cell.borrow_mut();
            stored.resize(info.size, 0);
            let ok = direct.file.read_exact_at(stored, info.addr).is_ok()
                && decode_chunk(dec, scratch, plan.pipeline, info.mask, stored, plan.chunk_rows, dst);
            if !ok {
                failed.store(true, Ordering::Relaxed);
            }
        });
    });
    if failed.load(Ordering::Relaxed) {
        tracing::debug!(dataset = %ds.name(), "a chunk did not read or decode in full: reading through libhdf5");
        return Ok(None);
    }
    // Chunks never written hold the dataset's fill value: let libhdf5 supply it.
    for (i, _) in infos.iter().enumerate().filter(|(_, info)| info.is_none()) {
        fill_read_through_library(ds, &mut out, i * plan.chunk_rows, plan.chunk_rows)?;
    }
    Ok(Some(out))
}

/// A column of a [`DirectFile`] decoded a block of rows at a time (for reading and processing a
/// run at once: [`crate::read_run_blocks`]). The chunk addresses are collected in one lock round
/// when it is opened; each block's chunks are then read with `pread` and decoded by the pool.
pub(crate) struct BlockColumn<'a, T> {
    ds: &'a Dataset,
    plan: Plan,
    infos: Vec<Option<ChunkInfo>>,
    _t: std::marker::PhantomData<T>,
}

impl<'a, T: LeScalar> BlockColumn<'a, T> {
    /// `None` when `ds` is not a column the fast path decodes exactly as `T` (see the module docs).
    pub(crate) fn open(ds: &'a Dataset, direct: &DirectFile) -> hdf5::Result<Option<Self>> {
        let Some(plan) = plan::<T>(ds)? else { return Ok(None) };
        let infos = all_chunk_infos::<T>(ds, direct, &plan)?;
        Ok(Some(Self { ds, plan, infos, _t: std::marker::PhantomData }))
    }

    /// Rows in the column.
    pub(crate) fn len(&self) -> usize {
        self.plan.len
    }

    /// Rows per chunk.
    pub(crate) fn chunk_rows(&self) -> usize {
        self.plan.chunk_rows
    }

    /// Decode chunk `i` into `dst` (its rows, fewer for the last chunk) with `pread`. `false`
    /// when it was never written or does not decode to its full size: then
    /// [`BlockColumn::read_through_library`] must fill it.
    pub(crate) fn decode(&self, direct: &DirectFile, i: usize, dst: &mut [T]) -> bool {
        let Some(Some(info)) = self.infos.get(i) else { return false };
        DECODER.with(|cell| {
            let (dec, scratch, stored) = &mut *cell.borrow_mut();
            stored.resize(info.size, 0);
            direct.file.read_exact_at(stored, info.addr).is_ok()
                && decode_chunk(dec, scratch, self.plan.pipeline, info.mask, stored, self.plan.chunk_rows, dst)
        })
    }

    /// Chunk `i` into `dst` as libhdf5 reads it: for a chunk never written (the fill value) or
    /// one [`BlockColumn::decode`] refused.
    pub(crate) fn read_through_library(&self, i: usize, dst: &mut [T]) -> hdf5::Result<()> {
        let start = i * self.plan.chunk_rows;
        let end = (start + dst.len()).min(self.plan.len);
        tracing::debug!(dataset = %self.ds.name(), chunk = i, "chunk read through libhdf5");
        let rows = self.ds.read_slice_1d::<T, _>(start..end)?;
        for (d, s) in dst.iter_mut().zip(rows.iter()) {
            *d = *s;
        }
        Ok(())
    }
}

/// Rows `start .. start + rows` of `out` (cut at its end) as libhdf5 reads them: for chunks never
/// written, which hold the dataset's fill value.
fn fill_read_through_library<T: LeScalar>(ds: &Dataset, out: &mut [T], start: usize, rows: usize) -> hdf5::Result<()> {
    let end = (start + rows).min(out.len());
    let fill = ds.read_slice_1d::<T, _>(start..end)?;
    for (d, s) in out[start..end].iter_mut().zip(fill.iter()) {
        *d = *s;
    }
    Ok(())
}

/// Ask the kernel to back a large column with transparent huge pages before it is first written:
/// a 100 kHz run's columns are ≈ 200 MB, and faulting them in 4 KiB at a time was ≈ 30 % of the
/// read's CPU (`perf`, 51 k faults per read). Advisory: where THP is off or the call fails, the
/// pages are the normal ones.
#[allow(unsafe_code)] // one madvise on memory this function's caller owns
pub(crate) fn advise_huge_pages<T>(v: &mut [T]) {
    const PAGE: usize = 4096;
    let bytes = std::mem::size_of_val(v);
    if bytes < 8 << 20 {
        return;
    }
    let start = v.as_mut_ptr() as usize;
    let (lo, hi) = (start.div_ceil(PAGE) * PAGE, (start + bytes) / PAGE * PAGE);
    let Some(addr) = std::ptr::NonNull::new(lo as *mut std::ffi::c_void) else { return };
    if hi > lo {
        // SAFETY: [lo, hi) is page-aligned and inside `v`'s allocation, which `v` keeps alive
        // for the call; MADV_HUGEPAGE changes how the kernel backs those pages, never their
        // contents or validity.
        let advised = unsafe { nix::sys::mman::madvise(addr, hi - lo, nix::sys::mman::MmapAdvise::MADV_HUGEPAGE) };
        if let Err(e) = advised {
            tracing::debug!(error = %e, "madvise(MADV_HUGEPAGE) refused; normal pages");
        }
    }
}

thread_local! {
    /// Each pool thread's inflater, inflate buffer and (direct reads) stored-chunk buffer,
    /// reused across chunks and columns.
    static DECODER: RefCell<(Decompressor, Vec<u8>, Vec<u8>)> =
        RefCell::new((Decompressor::new(), Vec::new(), Vec::new()));
}

/// The shape of a fast read.
struct Plan {
    len: usize,
    chunk_rows: usize,
    pipeline: Pipeline,
}

/// Whether `ds` can take the fast path as a column of `T`, and how.
fn plan<T: LeScalar>(ds: &Dataset) -> hdf5::Result<Option<Plan>> {
    let shape = ds.shape();
    let chunk = ds.chunk();
    let (len, chunk_rows) = match (shape.as_slice(), chunk.as_deref()) {
        ([len], Some([rows])) if *rows > 0 => (*len, *rows),
        _ => return Ok(None),
    };
    // The stored bytes are the file type's: only a type equal to the native one (same class,
    // width, sign and byte order — H5Tequal) can be reinterpreted without conversion. Native is
    // little-endian on every target this crate builds for; a big-endian host would fail here.
    if cfg!(target_endian = "big") || ds.dtype()? != Datatype::from_type::<T>()? {
        return Ok(None);
    }
    let Some(pipeline) = Pipeline::of(&ds.filters()) else { return Ok(None) };
    Ok(Some(Plan { len, chunk_rows, pipeline }))
}

/// Copy chunk `i`'s stored bytes out of the file under the library lock, into `buf` (reused):
/// its filter mask and bytes, or `None` when it was never written.
#[allow(unsafe_code)] // two calls into the HDF5 C API that hdf5-metno does not wrap
fn read_raw_chunk(ds: &Dataset, i: usize, chunk_rows: usize, mut buf: Vec<u8>) -> hdf5::Result<Option<(u32, Vec<u8>)>> {
    use hdf5_sys::h5::hsize_t;
    use hdf5_sys::h5d::H5Dread_chunk;
    use hdf5_sys::h5p::H5P_DEFAULT;

    let offset: [hsize_t; 1] = [(i * chunk_rows) as hsize_t];
    hdf5::sync::sync(|| {
        let Some(ChunkInfo { size, .. }) = chunk_info(ds, i, chunk_rows)? else { return Ok(None) };
        buf.clear();
        buf.resize(size, 0);
        let mut filters = 0u32;
        // SAFETY: `ds.id()` is a live dataset id, `offset` has one entry per dimension, `filters`
        // is a valid out-pointer; `buf` holds the `size` bytes the library reported for this very
        // chunk (1.10 API: the buffer must be at least the stored size), and nothing else touches
        // the dataset meanwhile (lock held).
        hdf5::h5check(unsafe {
            H5Dread_chunk(ds.id(), H5P_DEFAULT, offset.as_ptr(), &mut filters, buf.as_mut_ptr().cast())
        })?;
        Ok(Some((filters, buf)))
    })
}

/// Every chunk's [`ChunkInfo`] of a column of a [`DirectFile`] (`None` for a chunk never
/// written). From the file's chunk index in one pass when it is an extensible array
/// ([`chunk_index`]: our run files, h5py's extendible datasets in the 1.10 format), checked
/// against libhdf5's answer for the first and the last chunk; else libhdf5's lookup chunk by
/// chunk, which in 1.10 walks the index from its start every time (O(N²) for a column).
fn all_chunk_infos<T: LeScalar>(
    ds: &Dataset,
    direct: &DirectFile,
    plan: &Plan,
) -> hdf5::Result<Vec<Option<ChunkInfo>>> {
    let chunks = plan.len.div_ceil(plan.chunk_rows);
    hdf5::sync::sync(|| {
        if let Some(infos) = indexed_chunk_infos::<T>(ds, direct, plan, chunks)? {
            return Ok(infos);
        }
        (0..chunks).map(|i| chunk_info(ds, i, plan.chunk_rows)).collect()
    })
}

/// [`all_chunk_infos`] from the extensible array, or `None` when the file's index is not one
/// [`chunk_index`] reads or disagrees with libhdf5 on the first or last chunk. Under the lock.
#[allow(unsafe_code)] // one call into the HDF5 C API that hdf5-metno does not wrap
fn indexed_chunk_infos<T: LeScalar>(
    ds: &Dataset,
    direct: &DirectFile,
    plan: &Plan,
    chunks: usize,
) -> hdf5::Result<Option<Vec<Option<ChunkInfo>>>> {
    use hdf5::plist::file_create::Sizeof;
    use hdf5_sys::h5o::{H5O_info1_t, H5Oget_info2, H5O_INFO_BASIC};

    if chunks == 0 {
        return Ok(None);
    }
    let sizes = ds.file()?.create_plist()?.sizes();
    if sizes.sizeof_addr != Sizeof::Bytes8 || sizes.sizeof_size != Sizeof::Bytes8 {
        return Ok(None);
    }
    let mut info = H5O_info1_t::default();
    // SAFETY: `ds.id()` is a live dataset id (held by `ds`), `info` a valid out-pointer of the
    // struct this call fills (H5O_info1_t, the 1.10 API's `H5O_info_t`); the lock is held.
    hdf5::h5check(unsafe { H5Oget_info2(ds.id(), &mut info, H5O_INFO_BASIC) })?;
    let chunk_bytes = (plan.chunk_rows * T::SIZE) as u64;
    let Some(entries) = crate::chunk_index::earray_entries(&direct.file, info.addr, chunks, chunk_bytes) else {
        return Ok(None);
    };
    let infos: Vec<Option<ChunkInfo>> = entries
        .into_iter()
        .map(|e| {
            e.and_then(|(mask, addr, size)| {
                let size = usize::try_from(size).ok().filter(|&s| s > 0)?;
                Some(ChunkInfo { mask, addr, size })
            })
        })
        .collect();
    for i in [0, chunks - 1] {
        if chunk_info(ds, i, plan.chunk_rows)? != infos[i] {
            tracing::debug!(dataset = %ds.name(), chunk = i, "chunk index read from the file disagrees with libhdf5");
            return Ok(None);
        }
    }
    Ok(Some(infos))
}

/// Chunk `i`'s filter mask, address and stored size, or `None` when it was never written.
/// Call with the library lock held (`hdf5::sync::sync`).
#[allow(unsafe_code)] // one call into the HDF5 C API that hdf5-metno does not wrap
fn chunk_info(ds: &Dataset, i: usize, chunk_rows: usize) -> hdf5::Result<Option<ChunkInfo>> {
    use hdf5_sys::h5::{haddr_t, hsize_t, HADDR_UNDEF};
    use hdf5_sys::h5d::H5Dget_chunk_info_by_coord;

    let offset: [hsize_t; 1] = [(i * chunk_rows) as hsize_t];
    let (mut mask, mut addr, mut size): (u32, haddr_t, hsize_t) = (0, 0, 0);
    // SAFETY: `ds.id()` is a live dataset id (held by `ds`), `offset` has one entry per
    // dimension of this 1-D dataset, and the out-pointers are valid locals. The caller holds the
    // library lock.
    hdf5::h5check(unsafe { H5Dget_chunk_info_by_coord(ds.id(), offset.as_ptr(), &mut mask, &mut addr, &mut size) })?;
    if addr == HADDR_UNDEF || size == 0 {
        return Ok(None);
    }
    let Ok(size) = usize::try_from(size) else {
        return Err(hdf5::Error::from(format!("chunk {i} of {} claims {size} bytes", ds.name())));
    };
    Ok(Some(ChunkInfo { mask, addr, size }))
}

/// Undo one chunk's filters into `dst` (its rows of the column, `chunk_rows` or fewer for the
/// last chunk). `false` if the chunk does not decode to exactly `chunk_rows` elements.
fn decode_chunk<T: LeScalar>(
    dec: &mut Decompressor,
    scratch: &mut Vec<u8>,
    pipeline: Pipeline,
    mask: u32,
    stored: &[u8],
    chunk_rows: usize,
    dst: &mut [T],
) -> bool {
    let full = chunk_rows * T::SIZE;
    let bytes: &[u8] = if Pipeline::applied(pipeline.deflate, mask) {
        scratch.resize(full, 0);
        match dec.zlib_decompress(stored, scratch) {
            Ok(n) if n == full => scratch,
            _ => return false,
        }
    } else if stored.len() == full {
        stored
    } else {
        return false;
    };
    if Pipeline::applied(pipeline.shuffle, mask) && T::SIZE > 1 {
        // Byte planes over the full chunk, even for the last, partial one.
        T::unshuffle(bytes, chunk_rows, dst);
    } else {
        T::from_le(bytes, dst);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::sync::{Mutex, MutexGuard};

    /// One file test of this module at a time. libhdf5 opens files without `O_CLOEXEC`, so the
    /// python3 child one test starts inherits the descriptors of the files another test has open
    /// at that moment, with their `flock`s, for the child's whole life: a read-only open's shared
    /// lock held by the child then makes the other test's later read-write open fail with
    /// "unable to lock file, errno = 11" (seen in CI, stop 22). Serialising removes the race,
    /// as in tests/files.rs.
    fn serial() -> MutexGuard<'static, ()> {
        static LOCK: Mutex<()> = Mutex::new(());
        // A failed test poisons the lock; the next one may still run.
        LOCK.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The SSE2 and block transposes and the byte gather agree for every length (whole blocks of
    /// sixteen and of eight and a remainder) and for a chunk longer than the rows wanted (the
    /// last, partial chunk).
    #[test]
    fn unshuffle_of_eight_byte_elements_matches_the_byte_gather() {
        let rows = 100;
        // Byte k of element i at k · rows + i (H5Zshuffle.c), from elements with distinct bytes.
        let elems: Vec<u64> = (0..rows as u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i << 56)).collect();
        let mut shuffled = vec![0u8; 8 * rows];
        for (i, e) in elems.iter().enumerate() {
            for (k, b) in e.to_le_bytes().into_iter().enumerate() {
                shuffled[k * rows + i] = b;
            }
        }
        for m in [0, 1, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 63, 64, 99, 100] {
            let mut out = vec![0u64; m];
            u64::unshuffle(&shuffled, rows, &mut out);
            assert_eq!(out, elems[..m], "{m} rows");
            let mut f = vec![0f64; m];
            f64::unshuffle(&shuffled, rows, &mut f);
            assert!(f.iter().zip(&elems).all(|(a, b)| a.to_bits() == *b), "{m} rows as f64");
        }
    }

    #[test]
    fn pipelines_this_module_can_undo() {
        let p = |f: &[Filter]| Pipeline::of(f);
        assert_eq!(p(&[]), Some(Pipeline { shuffle: None, deflate: None }));
        assert_eq!(p(&[Filter::Shuffle, Filter::Deflate(4)]), Some(Pipeline { shuffle: Some(0), deflate: Some(1) }));
        assert_eq!(p(&[Filter::Deflate(1)]), Some(Pipeline { shuffle: None, deflate: Some(0) }));
        // Deflate then shuffle would need the other order on read; checksums and other codecs
        // are libhdf5's job.
        assert_eq!(p(&[Filter::Deflate(1), Filter::Shuffle]), None);
        assert_eq!(p(&[Filter::Shuffle, Filter::Deflate(1), Filter::Fletcher32]), None);
        assert!(Pipeline::applied(Some(1), 0b01) && !Pipeline::applied(Some(1), 0b10));
        assert!(!Pipeline::applied(None, 0));
    }

    /// h5py writes every column type under every pipeline the fast path takes, plus the chunks
    /// it must treat specially, and dumps what it reads back of each as little-endian bytes.
    /// The datasets named `fallback_*` must be refused (read through libhdf5 instead).
    const WRITE: &str = r#"
import sys, h5py, numpy as np
path, dump = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(7)
n, c = 5000, 512          # 10 chunks, the last one partial (392 rows)
types = ["f8", "f4", "u8", "i8", "u4", "i2", "u1", "i1"]
def values(t):
    if t[0] == "f":
        # A slow ramp plus noise (deflate finds something), and the special values.
        v = (np.linspace(0, 3, n) + 1e-4 * rng.standard_normal(n)).astype(t)
        v[[5, 600, 4999]] = [np.nan, np.inf, -0.0]
        return v
    info = np.iinfo(t)
    v = rng.integers(info.min, info.max, size=n, endpoint=True, dtype=t)
    v[:700] = np.arange(700) % 5  # a compressible run across a chunk boundary
    return v
pipelines = {
    "plain": {},
    "shuffle": {"shuffle": True},
    "deflate1": {"compression": "gzip", "compression_opts": 1},
    "deflate9": {"compression": "gzip", "compression_opts": 9},
    "shuffle_deflate1": {"shuffle": True, "compression": "gzip", "compression_opts": 1},
    "shuffle_deflate4": {"shuffle": True, "compression": "gzip", "compression_opts": 4},
    "shuffle_deflate9": {"shuffle": True, "compression": "gzip", "compression_opts": 9},
}
with h5py.File(path, "w") as f:
    for t in types:
        for name, kw in pipelines.items():
            f.create_dataset(f"{name}_{t}", data=values(t), chunks=(c,), **kw)
    # Extendible, grown in uneven blocks the way a live writer does.
    d = f.create_dataset("extended_f8", shape=(0,), maxshape=(None,), chunks=(c,), dtype="f8",
                         shuffle=True, compression="gzip", compression_opts=1)
    v = values("f8")
    for lo in range(0, n, 777):
        hi = min(lo + 777, n)
        d.resize((hi,))
        d[lo:hi] = v[lo:hi]
    # Chunk 1 stored raw under a shuffle + deflate pipeline: shuffled but not deflated (mask bit
    # 1), and chunk 2 with both filters skipped (mask 0b11), as a writer stores a chunk deflate
    # would not shrink.
    d = f.create_dataset("raw_chunks_f8", data=values("f8"), chunks=(c,), shuffle=True, compression="gzip")
    v = rng.standard_normal(c)
    shuffled = v.astype("<f8").view("u1").reshape(c, 8).T.copy().tobytes()
    d.id.write_direct_chunk((c,), shuffled, filter_mask=0b10)
    d.id.write_direct_chunk((2 * c,), rng.standard_normal(c).astype("<f8").tobytes(), filter_mask=0b11)
    # Chunks 1 and 3 never written: the fill value.
    d = f.create_dataset("unwritten_f8", shape=(n,), chunks=(c,), dtype="f8", fillvalue=-7.5,
                         shuffle=True, compression="gzip")
    d[0:c] = values("f8")[0:c]
    d[2 * c:3 * c] = 1.25
    d[4 * c:] = 2.5
    d = f.create_dataset("unwritten_u1", shape=(n,), chunks=(c,), dtype="u1", fillvalue=9, compression="gzip")
    d[c:2 * c] = 3
    # Refused: a checksum, another codec, big-endian, not chunked.
    f.create_dataset("fallback_fletcher_f8", data=values("f8"), chunks=(c,), fletcher32=True, compression="gzip")
    f.create_dataset("fallback_lzf_f8", data=values("f8"), chunks=(c,), compression="lzf")
    f.create_dataset("fallback_scaleoffset_i8", data=values("i8"), chunks=(c,), scaleoffset=0)
    f.create_dataset("fallback_bigendian_f8", data=values("f8").astype(">f8"), chunks=(c,), compression="gzip")
    f.create_dataset("fallback_contiguous_f8", data=values("f8"))
with h5py.File(path, "r") as f, open(dump, "w") as out:
    for name, d in f.items():
        raw = np.asarray(d[...])
        raw.astype(raw.dtype.newbyteorder("<")).tofile(f"{dump}.{name}")
        out.write(name + "\n")
"#;

    /// Little-endian bytes of a column, to compare bit for bit (NaN included).
    trait LeBytes {
        fn le_bytes(v: &[Self]) -> Vec<u8>
        where
            Self: Sized;
    }
    macro_rules! le_bytes {
        ($($t:ty),*) => {$(
            impl LeBytes for $t {
                fn le_bytes(v: &[Self]) -> Vec<u8> {
                    v.iter().flat_map(|x| x.to_le_bytes()).collect()
                }
            }
        )*};
    }
    le_bytes!(f64, f32, u64, i64, u32, i16, u8, i8);

    /// The fast reads of `name` as `T`, chunks copied under the lock and read with `pread`:
    /// `Some` when both give the bytes h5py read, `None` when both refuse.
    fn check<T: LeScalar + LeBytes>(
        file: &hdf5::File,
        direct: &DirectFile,
        dump: &std::path::Path,
        name: &str,
    ) -> Option<()> {
        let ds = file.dataset(name).expect("dataset");
        let locked = read_column::<T>(&ds, None).expect("read under the lock");
        let pread = read_column::<T>(&ds, Some(direct)).expect("read with pread");
        assert_eq!(locked.is_some(), pread.is_some(), "{name}: the two paths disagree on refusing");
        let expected = std::fs::read(format!("{}.{name}", dump.display())).expect("h5py dump");
        for (how, fast) in [("under the lock", locked?), ("with pread", pread?)] {
            assert_eq!(fast.len(), ds.size(), "{name} {how}: length");
            assert!(T::le_bytes(&fast) == expected, "{name} {how}: differs from what h5py reads");
        }
        Some(())
    }

    /// Run an h5py `script` with the file path and a dump prefix as its arguments, in a fresh
    /// directory (kept alive by the returned guard): (guard, file, dump prefix).
    fn write_with_h5py(script: &str, file: &str) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, dump) = (dir.path().join(file), dir.path().join("dump"));
        let out = Command::new("python3")
            .args(["-c", script])
            .arg(&path)
            .arg(&dump)
            .output()
            .expect("python3 must be installed (scripts/setup.sh)");
        assert!(out.status.success(), "h5py: {}", String::from_utf8_lossy(&out.stderr));
        (dir, path, dump)
    }

    #[test]
    fn fast_reads_equal_what_h5py_reads_and_other_pipelines_are_refused() {
        let _serial = serial();
        let (_dir, path, dump) = write_with_h5py(WRITE, "chunks.h5");
        let file = hdf5::File::open(&path).expect("open");
        let direct = DirectFile::open(&path, &file).expect("a file opened read-only by this process alone is direct");
        let names = std::fs::read_to_string(&dump).expect("names");
        let mut fast = 0;
        for name in names.lines() {
            let t = name.rsplit('_').next().unwrap_or_default();
            let got = match t {
                "f8" => check::<f64>(&file, &direct, &dump, name),
                "f4" => check::<f32>(&file, &direct, &dump, name),
                "u8" => check::<u64>(&file, &direct, &dump, name),
                "i8" => check::<i64>(&file, &direct, &dump, name),
                "u4" => check::<u32>(&file, &direct, &dump, name),
                "i2" => check::<i16>(&file, &direct, &dump, name),
                "u1" => check::<u8>(&file, &direct, &dump, name),
                "i1" => check::<i8>(&file, &direct, &dump, name),
                _ => panic!("{name}: no type suffix"),
            };
            assert_eq!(got.is_none(), name.starts_with("fallback_"), "{name}: fast path taken = {}", got.is_some());
            fast += usize::from(got.is_some());
        }
        // 8 types × 7 pipelines, the extendible one, raw chunks, two with unwritten chunks.
        assert_eq!(fast, 8 * 7 + 4);
        // A column read as another type than the file's (u8 data as f64) is refused, not
        // reinterpreted.
        let ds = file.dataset("shuffle_deflate1_u8").expect("ds");
        assert!(read_column::<f64>(&ds, None).expect("read").is_none());
        assert!(read_column::<f64>(&ds, Some(&direct)).expect("read").is_none());
    }

    /// `pread` must never be used on a file something may be writing, nor where chunk addresses
    /// are not file offsets.
    #[test]
    fn direct_reads_only_where_nothing_writes_and_addresses_are_offsets() {
        let _serial = serial();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.h5");
        {
            let w = hdf5::File::create(&path).expect("create");
            w.new_dataset::<f64>().chunk(4).shape(8).create("x").expect("dataset");
            // Open for writing in this process: a read-only open shares the writer's handle.
            let r = hdf5::File::open(&path).expect("open read-only while a writer holds it");
            assert!(DirectFile::open(&path, &r).is_none(), "shared with a writer");
            assert!(DirectFile::open(&path, &w).is_none(), "the writer itself");
        }
        let r = hdf5::File::open(&path).expect("open read-only");
        assert!(DirectFile::open(&path, &r).is_some(), "closed by its writer, opened read-only");
        drop(r);
        let rw = hdf5::File::open_rw(&path).expect("open read-write");
        assert!(DirectFile::open(&path, &rw).is_none(), "opened read-write");
        drop(rw);
        // A user block shifts every address by its size.
        let ub = dir.path().join("ub.h5");
        hdf5::File::with_options().with_fcpl(|p| p.userblock(512)).create(&ub).expect("create with a user block");
        let r = hdf5::File::open(&ub).expect("open");
        assert!(DirectFile::open(&ub, &r).is_none(), "user block");
    }

    /// h5py writes extendible columns in the 1.10 format (extensible-array chunk index) across
    /// the index block, its data blocks and separate super blocks, filtered and not, with
    /// chunks and whole data blocks never written, and one column of 140 000 one-row chunks
    /// whose data blocks are paged; plus a fixed-size column (fixed-array index).
    const WRITE_INDEXED: &str = r#"
import sys, h5py, numpy as np
path, dump = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(11)
with h5py.File(path, "w", libver=("v110", "v110")) as f:
    n = 5000
    v = np.cumsum(rng.standard_normal(n))
    for name, kw in {"shuffle_deflate": {"shuffle": True, "compression": "gzip", "compression_opts": 1},
                     "deflate": {"compression": "gzip"}, "plain": {}}.items():
        d = f.create_dataset(f"ext_{name}_f8", shape=(n,), maxshape=(None,), chunks=(4,), dtype="f8", **kw)
        d[:1000] = v[:1000]
        d[3000:] = v[3000:]       # chunks 250..749 never written (whole data blocks among them)
    d = f.create_dataset("ext_grown_u1", shape=(0,), maxshape=(None,), chunks=(3,), dtype="u1",
                         compression="gzip", fillvalue=4)
    for lo in range(0, 4001, 997):
        d.resize((lo + 997,))
        d[lo:lo + 997] = (np.arange(997) + lo) % 7
    f.create_dataset("fixed_f8", data=v, chunks=(64,), compression="gzip")
    d = f.create_dataset("paged_u1", shape=(140000,), maxshape=(None,), chunks=(1,), dtype="u1")
    d[...] = np.arange(140000) % 251
with h5py.File(path, "r") as f, open(dump, "w") as out:
    for name, d in f.items():
        np.asarray(d[...]).astype(d.dtype.newbyteorder("<")).tofile(f"{dump}.{name}")
        out.write(name + "\n")
"#;

    /// The chunk index read from the file gives, chunk for chunk, what libhdf5's lookups give,
    /// and the columns read through it are what h5py reads; a fixed-array index is left to
    /// libhdf5.
    #[test]
    fn chunk_index_read_from_the_file_equals_libhdf5_lookups() {
        let _serial = serial();
        let (_dir, path, dump) = write_with_h5py(WRITE_INDEXED, "indexed.h5");
        let file = hdf5::File::open(&path).expect("open");
        let direct = DirectFile::open(&path, &file).expect("direct");
        fn compare<T: LeScalar + LeBytes>(file: &hdf5::File, direct: &DirectFile, dump: &std::path::Path, name: &str) {
            let ds = file.dataset(name).expect("dataset");
            let plan = plan::<T>(&ds).expect("plan").expect("a column the fast path takes");
            let chunks = plan.len.div_ceil(plan.chunk_rows);
            let indexed =
                hdf5::sync::sync(|| indexed_chunk_infos::<T>(&ds, direct, &plan, chunks)).expect("index read");
            if name.starts_with("fixed") {
                assert!(indexed.is_none(), "{name}: a fixed-array index is not read from the file");
            } else {
                let indexed = indexed.unwrap_or_else(|| panic!("{name}: extensible array not read"));
                assert_eq!(indexed.len(), chunks);
                // Every chunk where that is affordable (libhdf5's lookup is O(N) each); of the
                // paged column, the chunks around every page and data block edge up to 1100
                // and a spread of the rest.
                let picks: Vec<usize> = if chunks <= 5000 {
                    (0..chunks).collect()
                } else {
                    (0..1100).chain((131_000..chunks).step_by(97)).chain([chunks - 1]).collect()
                };
                for i in picks {
                    assert_eq!(
                        indexed[i],
                        hdf5::sync::sync(|| chunk_info(&ds, i, plan.chunk_rows)).expect("lookup"),
                        "{name}: chunk {i}"
                    );
                }
                if name.contains("deflate") || name.contains("plain") {
                    assert!(indexed[250..750].iter().all(Option::is_none), "{name}: chunks never written");
                    assert!(indexed[..250].iter().chain(&indexed[750..]).all(Option::is_some), "{name}: written");
                }
            }
            let got = read_column::<T>(&ds, Some(direct)).expect("read").expect("fast path");
            let expected = std::fs::read(format!("{}.{name}", dump.display())).expect("h5py dump");
            assert!(T::le_bytes(&got) == expected, "{name}: differs from what h5py reads");
        }
        let names = std::fs::read_to_string(&dump).expect("names");
        assert_eq!(names.lines().count(), 6);
        for name in names.lines() {
            if name.ends_with("_u1") {
                compare::<u8>(&file, &direct, &dump, name);
            } else {
                compare::<f64>(&file, &direct, &dump, name);
            }
        }
    }
}
