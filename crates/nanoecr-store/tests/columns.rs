//! `read_run_columns`: a selection reads exactly the selected columns, with the same values
//! `read_run` gives (which reads the chunks off the library lock and is checked against h5py in
//! `chunk_read.rs`), and leaves the others empty.

use nanoecr_core::{Diagnostics, EndReason, RunConfig, Sample, Segment};
use nanoecr_store::{
    read_run, read_run_blocks, read_run_columns, BlockConsumer, ColumnSelection, InstrumentInfo, RowBlock, RunHeader,
    RunWriter,
};

const DEMO: &str = include_str!("../../../config/demo.toml");

fn cfg() -> RunConfig {
    nanoecr_core::config::parse(DEMO, None).expect("demo config valid")
}

#[test]
fn a_selection_reads_the_selected_columns_and_leaves_the_others_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cols.h5");
    let info = InstrumentInfo { backend: "sim".into(), frame: "LOADFRAME0 test".into(), smu: "SMU0 test".into() };
    let mut w = RunWriter::create(&path, &cfg(), &info).expect("create");
    // Several chunks' worth (the demo's 1 kHz chunk is 512 rows) and a partial last chunk.
    let rows = 5_300u64;
    let (s, r): (Vec<Sample>, Vec<f64>) = (0..rows)
        .map(|i| {
            let s = Sample {
                seq: i,
                time_s: i as f64 * 1e-3,
                setpoint_un: 2.0 * i as f64,
                load_un: i as f64 + 0.25,
                disp_nm: (i as f64).sqrt(),
                current_a: 1e-6 + (i % 7) as f64 * 1e-12,
                voltage_v: 5.0,
                segment: if i < 100 { Segment::Settle } else { Segment::Load },
                flags: 0,
            };
            (s, if i < 100 { f64::NAN } else { i as f64 * 1e-7 })
        })
        .unzip();
    w.append(&s, &r).expect("append");
    w.finish(&EndReason::Completed, &Diagnostics::default(), None).expect("finish");

    let all = read_run(&path).expect("read all");
    assert_eq!(all.data.len(), rows as usize);
    let analysis = ColumnSelection {
        time: true,
        displacement: true,
        load: true,
        sequence: false,
        setpoint: false,
        current: true,
        voltage: false,
        segment: true,
        delta_rho: false,
    };
    let some = read_run_columns(&path, analysis).expect("read some");
    let d = &some.data;
    assert_eq!((&d.time_s, &d.disp_nm, &d.load_un), (&all.data.time_s, &all.data.disp_nm, &all.data.load_un));
    assert_eq!((&d.current_a, &d.segment), (&all.data.current_a, &all.data.segment));
    assert!(d.seq.is_empty() && d.setpoint_un.is_empty() && d.voltage_v.is_empty() && d.delta_rho.is_empty());
    // What was written, read back (the fixture's own values, not the reader's).
    assert_eq!(d.disp_nm[5_299], 5_299f64.sqrt());
    assert_eq!(all.data.setpoint_un[4_000], 8_000.0);
    assert_eq!(all.data.delta_rho[200].to_bits(), (200.0 * 1e-7f64).to_bits());
    assert_eq!(some.peak_load_un, all.peak_load_un);
}

/// Collects what `read_run_blocks` hands out: every block's rows appended, and each start.
#[derive(Default)]
struct Collect {
    starts: Vec<usize>,
    time_s: Vec<f64>,
    disp_nm: Vec<f64>,
    current_a: Vec<f64>,
    load_un: Vec<f64>,
    segment: Vec<u8>,
}

impl BlockConsumer for Collect {
    fn block(&mut self, b: RowBlock<'_>) {
        let m = b.time_s.len();
        assert!([b.disp_nm.len(), b.current_a.len(), b.load_un.len(), b.segment.len()].iter().all(|&l| l == m));
        assert_eq!(b.start, self.time_s.len(), "blocks in row order, each row once");
        self.starts.push(b.start);
        self.time_s.extend_from_slice(b.time_s);
        self.disp_nm.extend_from_slice(b.disp_nm);
        self.current_a.extend_from_slice(b.current_a);
        self.load_un.extend_from_slice(b.load_un);
        self.segment.extend_from_slice(b.segment);
    }
}

/// The columns the analysis keeps when it re-detects: current only as it goes by.
const STREAMED: ColumnSelection = ColumnSelection {
    time: true,
    displacement: true,
    load: true,
    sequence: false,
    setpoint: false,
    current: false,
    voltage: false,
    segment: true,
    delta_rho: false,
};

/// What a caller that only detects keeps: none of the detector's columns.
const DETECT_ONLY: ColumnSelection =
    ColumnSelection { time: false, displacement: false, load: false, segment: false, ..STREAMED };

/// `read_run_blocks` on `path`: the header it showed, the blocks, and the file.
fn read_blocks(path: &std::path::Path) -> (RunHeader, Collect, nanoecr_store::RunFile) {
    read_blocks_keeping(path, STREAMED)
}

/// [`read_blocks`] keeping `cols`.
fn read_blocks_keeping(path: &std::path::Path, cols: ColumnSelection) -> (RunHeader, Collect, nanoecr_store::RunFile) {
    let mut seen = None;
    let (rf, c) = read_run_blocks(path, cols, |h| {
        seen = Some(h.clone());
        Some(Collect::default())
    })
    .expect("read in blocks");
    (seen.expect("the header comes first"), c.expect("a consumer was made"), rf)
}

/// A closed run file (the pool decodes the blocks while the consumer takes them): every row of
/// the five columns once, in order, equal to what `read_run` reads, over several blocks and a
/// partial last one; current is handed out but not kept.
#[test]
fn blocks_hand_out_every_row_once_in_order_as_read_run_reads_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("blocks.h5");
    let info = InstrumentInfo { backend: "sim".into(), frame: "LOADFRAME0 test".into(), smu: "SMU0 test".into() };
    let mut w = RunWriter::create(&path, &cfg(), &info).expect("create");
    let rows = 70_001u64;
    let (s, r): (Vec<Sample>, Vec<f64>) = (0..rows)
        .map(|i| {
            let s = Sample {
                seq: i,
                time_s: i as f64 * 1e-3,
                setpoint_un: 0.0,
                load_un: i as f64 * 0.5,
                disp_nm: (i as f64).sqrt(),
                current_a: 1e-6 + (i % 11) as f64 * 1e-12,
                voltage_v: 5.0,
                segment: if i < 2_000 { Segment::Settle } else { Segment::Hold },
                flags: 0,
            };
            (s, f64::NAN)
        })
        .unzip();
    w.append(&s, &r).expect("append");
    w.finish(&EndReason::Completed, &Diagnostics::default(), None).expect("finish");

    let all = read_run(&path).expect("read all");
    let (header, got, rf) = read_blocks(&path);
    assert_eq!(header.rate_hz, Some(1000.0));
    assert_eq!(header.rows, rows as usize);
    assert_eq!(header.pillar, all.pillar);
    assert!(got.starts.len() >= 3, "several blocks: {:?}", got.starts);
    assert_eq!(got.time_s.len(), rows as usize);
    assert_eq!((&got.time_s, &got.disp_nm, &got.load_un), (&all.data.time_s, &all.data.disp_nm, &all.data.load_un));
    assert_eq!((&got.current_a, &got.segment), (&all.data.current_a, &all.data.segment));
    // The fixture's own values, not only the reader's agreement with itself.
    assert_eq!(got.current_a[70_000], 1e-6 + (70_000 % 11) as f64 * 1e-12);
    assert_eq!((got.segment[1_999], got.segment[2_000]), (Segment::Settle as u8, Segment::Hold as u8));
    let d = &rf.data;
    assert_eq!((&d.time_s, &d.load_un, &d.segment), (&all.data.time_s, &all.data.load_un, &all.data.segment));
    assert!(d.current_a.is_empty() && d.delta_rho.is_empty(), "current handed out, not kept");
    // No consumer: a plain read.
    let (plain, none) = read_run_blocks(&path, STREAMED, |_| None::<Collect>).expect("plain read");
    assert!(none.is_none());
    assert_eq!(plain.data, rf.data);
    assert_lean_read_hands_out_the_same_rows(&path, &all);
}

/// Keeping none of the detector's columns: the consumer still gets every row of all five (they
/// pass through recycled block buffers), the file keeps them empty, and the rows, the rate and
/// the peak load are those of a full read.
fn assert_lean_read_hands_out_the_same_rows(path: &std::path::Path, all: &nanoecr_store::RunFile) {
    let (_, got, rf) = read_blocks_keeping(path, DETECT_ONLY);
    let what = path.display();
    assert_eq!((&got.time_s, &got.disp_nm, &got.load_un), (&all.data.time_s, &all.data.disp_nm, &all.data.load_un));
    assert_eq!((&got.current_a, &got.segment), (&all.data.current_a, &all.data.segment), "{what}");
    let d = &rf.data;
    assert!(d.time_s.is_empty() && d.disp_nm.is_empty() && d.load_un.is_empty() && d.segment.is_empty(), "{what}");
    assert_eq!((d.len(), rf.rate_hz, rf.peak_load_un), (all.data.len(), all.rate_hz, all.peak_load_un), "{what}");
    assert!(rf.peak_load_un.is_some_and(|p| p > 0.0) && rf.rate_hz.is_some_and(|r| (r - 1000.0).abs() < 1e-6));
    // Without a consumer too.
    let plain = read_run_columns(path, DETECT_ONLY).expect("plain lean read");
    assert_eq!((plain.data.len(), plain.rate_hz, plain.peak_load_un), (all.data.len(), all.rate_hz, all.peak_load_un));
    assert!(plain.data.time_s.is_empty() && plain.data.load_un.is_empty(), "{what}");
}

/// Files the block decoder does not take whole: a chunk never written (the fill value, through
/// libhdf5) in a column it decodes, and a float32 current it does not decode at all (the columns
/// are then read whole first). Either way the blocks carry what h5py wrote.
#[test]
fn blocks_of_files_off_the_fast_path_carry_what_h5py_wrote() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = r#"
import sys, h5py, numpy as np
n, c = 70000, 1000
for path, cur_type, rate in [(sys.argv[1], "f8", True), (sys.argv[2], "f4", True), (sys.argv[3], "f8", False)]:
    with h5py.File(path, "w") as f:
        d = f.create_group("entry/data")
        kw = dict(chunks=(c,), shuffle=True, compression="gzip", compression_opts=1)
        t = np.arange(n) / 1000.0
        d.create_dataset("time", data=t, **kw)
        d.create_dataset("displacement", data=t * 10, **kw)
        d.create_dataset("load", data=t * 100, **kw)
        d.create_dataset("segment", data=(np.arange(n) // 30000).astype("u1"), **kw)
        cur = d.create_dataset("current", shape=(n,), dtype=cur_type, fillvalue=7.0, **kw)
        cur[:3 * c] = 1e-6
        cur[4 * c:] = 2e-6   # chunk 3 never written: the fill value
        if rate:
            f.create_group("entry/instrument")["rate_hz"] = 1000.0
        s = f.create_group("entry/sample")
        s["height_um"] = 5.0; s["diameter_um"] = 2.0; s["poisson_ratio"] = 0.36
"#;
    let (a, b, c) = (dir.path().join("unwritten.h5"), dir.path().join("f4.h5"), dir.path().join("no_rate.h5"));
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&a)
        .arg(&b)
        .arg(&c)
        .output()
        .expect("python3 must be installed (scripts/setup.sh)");
    assert!(out.status.success(), "h5py: {}", String::from_utf8_lossy(&out.stderr));
    for path in [a, b] {
        let (header, got, _) = read_blocks(&path);
        assert_eq!(header.rate_hz, Some(1000.0), "{}", path.display());
        assert_eq!(got.time_s.len(), 70_000);
        let expect_cur = |i: usize| {
            if i < 3_000 {
                1e-6
            } else if i < 4_000 {
                7.0
            } else {
                2e-6
            }
        };
        for i in [0, 2_999, 3_000, 3_999, 4_000, 69_999] {
            assert_eq!(got.current_a[i] as f32, expect_cur(i) as f32, "{} row {i}", path.display());
            assert_eq!(got.time_s[i], i as f64 / 1000.0);
            assert_eq!(got.segment[i], (i / 30_000) as u8);
        }
        let all = read_run(&path).expect("read all");
        assert_eq!(got.current_a, all.data.current_a, "{}", path.display());
        assert_eq!(got.load_un, all.data.load_un);
        assert_lean_read_hands_out_the_same_rows(&path, &all);
    }
    // No rate recorded: taken from the first and last time, also when time is not kept (here
    // the blocks are decoded as they are consumed).
    let (header, _, _) = read_blocks(&c);
    assert_eq!(header.rate_hz, None);
    let all = read_run(&c).expect("read all");
    assert_eq!(all.rate_hz, Some(69_999.0 / (69_999.0 / 1000.0)));
    assert_lean_read_hands_out_the_same_rows(&c, &all);
}
