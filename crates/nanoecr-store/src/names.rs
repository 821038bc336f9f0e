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
/// gzip level: 4 is within a few percent of 9's ratio on these signals at a fraction of the CPU.
pub const DEFLATE_LEVEL: u8 = 4;
