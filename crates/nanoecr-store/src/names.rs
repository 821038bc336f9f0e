//! Names and units of everything in a run file, in one place so writer, reader and
//! docs/file-format.md agree.

/// Sample columns under `/entry/data`: (dataset, units).
pub const DATA_COLUMNS: [(&str, &str); 9] = [
    ("sequence", "1"),
    ("time", "s"),
    ("load", "uN"),
    ("setpoint", "uN"),
    ("displacement", "nm"),
    ("current", "A"),
    ("voltage", "V"),
    ("segment", "1"),
    ("resistivity_change", "1"),
];

/// Event columns under `/entry/events` and `/entry/ground_truth/events`: (dataset, units).
pub const EVENT_COLUMNS: [(&str, &str); 9] = [
    ("kind", "1"),
    ("sign", "1"),
    ("onset_time", "s"),
    ("peak_time", "s"),
    ("duration", "s"),
    ("magnitude", "1"),
    ("linked_delta_rho", "1"),
    ("segment", "1"),
    ("stress", "MPa"),
];

/// Rows per HDF5 chunk of the sample datasets (8192 × 8 B = 64 KiB per column chunk).
pub const SAMPLE_CHUNK: usize = 8192;
/// Rows per chunk of the event datasets.
pub const EVENT_CHUNK: usize = 256;
/// gzip level, declared in the datasets' filter pipeline (libhdf5 uses it for the partial chunks
/// it writes at a flush) and used by the writer's own compression worker (zlib-rs, chunk_write.rs)
/// for full chunks. Compression is the writer's bottleneck (docs/performance.md: 78 % of the
/// consumer thread at level 4 inside libhdf5); level 1 writes ≈ 1.5× faster for ≈ 2 % more bytes
/// on these shuffled columns. gzip rather than a faster codec (LZ4, Blosc) because every HDF5
/// reader has it built in.
pub const DEFLATE_LEVEL: u8 = 1;

/// Capacity in bytes of the fixed-length string attributes that change when a run ends
/// (`status`, `end_time`, `end_reason`, `diagnostics@json`). They exist from creation so that
/// closing a run in SWMR mode only writes values and never creates objects. Longer values are
/// cut at a character boundary (the JSON record is left empty rather than cut).
pub const STATUS_LEN: usize = 16;
/// See [`STATUS_LEN`]: ISO 8601 timestamps (24 characters used).
pub const TIME_LEN: usize = 40;
/// See [`STATUS_LEN`]: the end reason (device-fault messages can be long).
pub const REASON_LEN: usize = 1024;
/// See [`STATUS_LEN`]: the diagnostics record as JSON (about 2 KiB for two 32-bin histograms of
/// u64 and a few dozen numbers, plus up to ≈ 6 KiB for a full stall list of 64 entries).
pub const DIAG_JSON_LEN: usize = 16384;
