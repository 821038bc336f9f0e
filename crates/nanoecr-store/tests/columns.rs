//! `read_run_columns`: a selection reads exactly the selected columns, with the same values
//! `read_run` gives (which reads the chunks off the library lock and is checked against h5py in
//! `chunk_read.rs`), and leaves the others empty.

use nanoecr_core::{Diagnostics, EndReason, RunConfig, Sample, Segment};
use nanoecr_store::{read_run, read_run_columns, ColumnSelection, InstrumentInfo, RunWriter};

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
