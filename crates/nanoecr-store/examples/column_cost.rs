//! What deflate costs and gains on each sample column of a run file, byte plane by byte plane:
//! the measurement behind the writer's stored-plane rule (chunk_write.rs, docs/performance.md
//! "Issue 11, write side").
//!
//! `cargo run --release -p nanoecr-store --example column_cost -- FILE [CHUNK_ROWS]`
//!
//! Each column is cut into chunks of `CHUNK_ROWS` rows (default 8192, the unpaced chunk),
//! shuffled as HDF5's shuffle filter does, and each chunk deflated with zlib-rs level 1 (the
//! writer's codec); then each byte plane of each chunk alone. Times are the best of five passes
//! over the column (wall time of this one thread; run it on an idle core). Last, the writer's
//! stored-plane rule: the leading planes deflate leaves above 0.95 of their size copied, the
//! rest deflated as one stream.

use std::time::Instant;

use flate2::{Compress, Compression, FlushCompress};

/// zlib-rs level 1, raw deflate of `data` into `out`; compressed bytes.
fn deflate(c: &mut Compress, data: &[u8], out: &mut Vec<u8>) -> usize {
    out.clear();
    out.reserve(data.len() + data.len() / 8 + 64);
    c.reset();
    let _ = c.compress_vec(data, out, FlushCompress::Finish);
    out.len()
}

fn shuffle(bytes: &[u8], size: usize) -> Vec<u8> {
    let n = bytes.len() / size;
    let mut out = vec![0u8; bytes.len()];
    for i in 0..n {
        for j in 0..size {
            out[j * n + i] = bytes[i * size + j];
        }
    }
    out
}

fn best_of<F: FnMut() -> usize>(mut f: F) -> (f64, usize) {
    let mut best = f64::INFINITY;
    let mut bytes = 0;
    for _ in 0..5 {
        let t = Instant::now();
        bytes = f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    (best, bytes)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: column_cost FILE [CHUNK_ROWS]")?;
    let rows: usize = args.next().map_or(Ok(8192), |s| s.parse())?;
    let file = hdf5::File::open(&path)?;
    let g = file.group("entry/data")?;
    let mut c = Compress::new(Compression::new(1), false);
    let mut out = Vec::new();
    println!("column            MB   ratio  MB/s   | plane: compressed/raw (ns per raw byte)");
    let (mut all_t, mut all_raw, mut all_packed) = (0.0, 0usize, 0usize);
    let (mut rule_t, mut rule_packed) = (0.0, 0usize);
    // The sample columns, in the file's order (docs/file-format.md).
    for name in
        ["sequence", "time", "load", "setpoint", "displacement", "current", "voltage", "segment", "resistivity_change"]
    {
        let ds = g.dataset(name)?;
        let size = ds.dtype()?.size();
        let bytes: Vec<u8> = match size {
            1 => ds.read_raw::<u8>()?,
            // Read in the stored type: HDF5 would convert a float to an integer by value.
            8 if name == "sequence" => ds.read_raw::<u64>()?.iter().flat_map(|v| v.to_ne_bytes()).collect(),
            8 => ds.read_raw::<f64>()?.iter().flat_map(|v| v.to_ne_bytes()).collect(),
            _ => return Err(format!("{name}: element size {size}").into()),
        };
        let chunks: Vec<Vec<u8>> = bytes.chunks(rows * size).map(|ch| shuffle(ch, size)).collect();
        let (t, packed) = best_of(|| chunks.iter().map(|ch| deflate(&mut c, ch, &mut out)).sum());
        all_t += t;
        all_raw += bytes.len();
        all_packed += packed;
        let mut line = format!(
            "{name:<16} {:6.2} {:5.2} {:6.0}  |",
            bytes.len() as f64 / 1e6,
            bytes.len() as f64 / packed as f64,
            bytes.len() as f64 / t / 1e6
        );
        let mut leading = 0;
        let mut still_leading = true;
        for j in 0..size {
            let planes: Vec<&[u8]> =
                chunks.iter().map(|ch| &ch[j * ch.len() / size..(j + 1) * ch.len() / size]).collect();
            let raw: usize = planes.iter().map(|p| p.len()).sum();
            let (t, packed) = best_of(|| planes.iter().map(|p| deflate(&mut c, p, &mut out)).sum());
            let ratio = packed as f64 / raw as f64;
            // The writer's rule (chunk_write.rs): leading planes deflate leaves above 0.95 are stored.
            still_leading &= ratio > 0.95 && j + 1 < size;
            leading += usize::from(still_leading);
            line += &format!(" {j}: {ratio:.2} ({:.1})", t / raw as f64 * 1e9);
        }
        // The rule applied: leading planes copied, the rest deflated.
        let (t, packed) = best_of(|| {
            chunks
                .iter()
                .map(|ch| {
                    let cut = leading * ch.len() / size;
                    out.clear();
                    out.extend_from_slice(&ch[..cut]);
                    cut + deflate(&mut c, &ch[cut..], &mut out)
                })
                .sum()
        });
        rule_t += t;
        rule_packed += packed;
        line += &format!(
            "  | {leading} stored: {:.2} {:.0} MB/s",
            bytes.len() as f64 / packed as f64,
            bytes.len() as f64 / t / 1e6
        );
        println!("{line}");
    }
    println!(
        "all              {:6.2} {:5.2} {:6.0}  | stored-plane rule: {:.2} {:.0} MB/s",
        all_raw as f64 / 1e6,
        all_raw as f64 / all_packed as f64,
        all_raw as f64 / all_t / 1e6,
        all_raw as f64 / rule_packed as f64,
        all_raw as f64 / rule_t / 1e6
    );
    Ok(())
}
