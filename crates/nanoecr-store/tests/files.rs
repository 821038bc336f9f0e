//! Run files as other tools see them: read back by our reader and by h5py (independent), checked
//! by nexusformat, followed live by an h5py SWMR reader, and after a kill -9 in the middle of a run.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

use nanoecr_core::{
    Diagnostics, EndReason, Event, EventKind, LatenessSplit, RunConfig, RunStatus, Sample, Segment, Sign,
};
use nanoecr_store::{read_run, recover, InstrumentInfo, Pacing, RunWriter};

const DEMO: &str = include_str!("../../../config/demo.toml");

fn cfg() -> RunConfig {
    nanoecr_core::config::parse(DEMO, None).expect("demo config valid")
}

fn info() -> InstrumentInfo {
    InstrumentInfo { backend: "sim".into(), frame: "LOADFRAME0 test".into(), smu: "SMU0 test".into() }
}

/// Sample i of a deterministic fixture: settle for the first 100, then load.
fn sample(i: u64) -> (Sample, f64) {
    let seg = if i < 100 { Segment::Settle } else { Segment::Load };
    let s = Sample {
        seq: i,
        time_s: i as f64 * 1e-3,
        setpoint_un: i as f64,
        load_un: i as f64 + 0.25,
        disp_nm: i as f64 * 0.01,
        current_a: 1e-6 + i as f64 * 1e-12,
        voltage_v: 5.0,
        segment: seg,
        flags: 0,
    };
    let rho = if seg == Segment::Settle { f64::NAN } else { i as f64 * 1e-7 };
    (s, rho)
}

fn append_range(w: &mut RunWriter, from: u64, to: u64) {
    let (s, r): (Vec<Sample>, Vec<f64>) = (from..to).map(sample).unzip();
    w.append(&s, &r).expect("append");
}

fn event(t: f64, m: f64) -> Event {
    Event::spike(t, t + 0.0005, 0.0012, m, Segment::Load, 800.0)
}

/// One test of this file at a time. libhdf5 opens files without `O_CLOEXEC`, so a process
/// spawned by one test (python, h5dump, the kill -9 child) inherits the descriptors of the files
/// other tests have open at that moment, with their `flock`s: a long-lived child then holds a
/// freshly written file's lock and h5py fails with "unable to lock file, errno = 11", or
/// `recover` finds the file in use (both seen as intermittent failures of this file on a loaded
/// machine). Serialising the tests removes the race rather than its symptoms.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    // A failed test poisons the lock; the next one may still run.
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs Python; fails the test (never skips) when python3, h5py or nexusformat is missing:
/// scripts/setup.sh installs them.
fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 must be installed (scripts/setup.sh)");
    assert!(
        out.status.success(),
        "python check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write_complete(path: &Path, rows: u64) -> Vec<Event> {
    let mut w = RunWriter::create(path, &cfg(), &info()).expect("create");
    let mut at = 0;
    while at < rows {
        let to = (at + 3001).min(rows);
        append_range(&mut w, at, to);
        w.flush().expect("flush");
        at = to;
    }
    let events = vec![event(0.2, 7e-4), event(0.5, -9e-4)];
    w.append_events(&events).expect("events");
    let mut diag = Diagnostics {
        ticks: rows,
        ring_capacity: 16384,
        ring_high_water: 12,
        ring_full_waits: 345,
        rate_hz: 1000.0,
        smu_pacing: "timer".into(),
        smu_misalignment_max_us: Some(12.5),
        lateness_split: LatenessSplit {
            lower_us: [0.0, 30.0, 1000.0, 1000.0],
            wakeups: [4990, 7, 0, 3],
            missed: [1, 2, 0, 40],
        },
        control_cpu_us: 81_250.5,
        smu_lag_max_ms: 21.0,
        ..Default::default()
    };
    diag.loop_lateness.record_us(12.0);
    let gt = vec![event(0.2, 7.1e-4), event(0.5, -9.2e-4), event(0.9, 1.5e-4)];
    w.finish(&EndReason::Completed, &diag, Some(&gt)).expect("finish");
    events
}

#[test]
fn round_trip_through_our_reader() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("rt.h5");
    let events = write_complete(&path, 10_000);
    let f = read_run(&path).expect("read");
    assert_eq!(f.status, RunStatus::Complete);
    assert_eq!(f.end_reason.as_deref(), Some("completed"));
    assert_eq!(f.data.len(), 10_000);
    for i in [0usize, 99, 100, 4321, 9999] {
        let (s, r) = sample(i as u64);
        assert_eq!(f.data.seq[i], s.seq);
        assert_eq!(f.data.time_s[i], s.time_s);
        assert_eq!(f.data.load_un[i], s.load_un);
        assert_eq!(f.data.setpoint_un[i], s.setpoint_un);
        assert_eq!(f.data.disp_nm[i], s.disp_nm);
        assert_eq!(f.data.current_a[i], s.current_a);
        assert_eq!(f.data.segment[i], s.segment.code());
        assert_eq!(f.data.delta_rho[i].to_bits(), r.to_bits());
    }
    assert_eq!(f.events.len(), 2);
    assert_eq!(f.events[1].sign, Sign::N);
    assert_eq!(f.events[1].magnitude, events[1].magnitude);
    assert_eq!(f.events[0].kind, EventKind::Spike);
    let gt = [event(0.2, 7.1e-4), event(0.5, -9.2e-4), event(0.9, 1.5e-4)];
    // Compared as printed: `linked_delta_rho` is NaN for spikes, and NaN ≠ NaN.
    assert_eq!(format!("{:?}", f.ground_truth.as_deref()), format!("{:?}", Some(&gt[..])), "the ground truth");
    let d = f.diagnostics.expect("diagnostics");
    assert_eq!(d.ticks, 10_000);
    assert_eq!(d.loop_lateness.total, 1);
    assert_eq!((d.smu_pacing.as_str(), d.smu_misalignment_max_us), ("timer", Some(12.5)));
    assert_eq!((d.lateness_split.wakeups, d.lateness_split.missed), ([4990, 7, 0, 3], [1, 2, 0, 40]));
    assert_eq!(d.control_cpu_us, 81_250.5);
    assert_eq!(d.ring_full_waits, 345);
    assert_eq!(d.smu_lag_max_ms, 21.0);
    assert_eq!(f.pillar.diameter_um, 2.0);
    assert_eq!(f.rate_hz, Some(1000.0));
    assert!(f.config_toml.as_deref().is_some_and(|t| t.contains("peak_load_un = 6000.0")));
}

#[test]
fn h5py_reads_every_dataset_with_units_and_nexusformat_finds_the_plot() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("py.h5");
    write_complete(&path, 5000);
    let script = r#"
import sys, json, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
e = f["entry"]
def s(v): return v.decode() if isinstance(v, bytes) else v
assert s(e.attrs["NX_class"]) == "NXentry"
assert s(e.attrs["status"]) == "complete"
for a in ["start_time", "end_time", "config_toml", "software_version", "end_reason"]:
    assert a in e.attrs, a
d = e["data"]
assert s(d.attrs["NX_class"]) == "NXdata"
assert s(d.attrs["signal"]) == "resistivity_change" and s(d.attrs["axes"]) == "time"
names = ["sequence", "time", "load", "setpoint", "displacement", "current", "voltage", "segment", "resistivity_change"]
n = d["time"].shape[0]
assert n == 5000, n
for k in names:
    assert d[k].shape == (n,), k
    assert "units" in d[k].attrs, k
    assert d[k].chunks is not None and d[k].compression == "gzip", k
assert s(d["load"].attrs["units"]) == "uN" and s(d["displacement"].attrs["units"]) == "nm"
seg = d["segment"][:]; rho = d["resistivity_change"][:]
assert np.all(np.isnan(rho[seg == 0])) and np.all(np.isfinite(rho[seg != 0]))
assert d["load"][1234] == 1234.25 and d["sequence"][4999] == 4999
assert d["segment"].dtype == np.uint8 and d["sequence"].dtype == np.uint64
for g in ["sample", "instrument", "events", "diagnostics", "ground_truth"]:
    assert g in e, g
assert e["sample/diameter_um"][()] == 2.0 and s(e["sample/diameter_um"].attrs["units"]) == "um"
assert e["events/magnitude"].shape == (2,) and e["ground_truth/events/onset_time"].shape == (3,)
for k in e["events"]:
    assert "units" in e["events"][k].attrs, k
assert e["diagnostics/ticks"][()] == 5000
assert e["diagnostics/smu_timer_trigger"][()] == 1 and e["diagnostics/smu_misalignment_max_us"][()] == 12.5
assert s(e["diagnostics/smu_misalignment_max_us"].attrs["units"]) == "us"
dg = e["diagnostics"]
assert list(dg["lateness_class_lower_us"][:]) == [0.0, 30.0, 1000.0, 1000.0]
assert s(dg["lateness_class_lower_us"].attrs["units"]) == "us"
assert list(dg["wakeups_by_lateness"][:]) == [4990, 7, 0, 3] and list(dg["missed_by_lateness"][:]) == [1, 2, 0, 40]
assert dg["missed_by_lateness"].dtype == np.uint64
assert dg["control_cpu_us"][()] == 81250.5 and s(dg["control_cpu_us"].attrs["units"]) == "us"
assert dg["ring_full_waits"][()] == 345 and dg["ring_full_waits"].dtype == np.uint64
assert e["diagnostics/smu_lag_max_ms"][()] == 21.0 and s(e["diagnostics/smu_lag_max_ms"].attrs["units"]) == "ms"
from nexusformat.nexus import nxload
root = nxload(sys.argv[1])
data = root["entry/data"]
assert data.nxsignal is not None and data.nxsignal.nxname == "resistivity_change"
assert data.nxaxes and data.nxaxes[0].nxname == "time"
print("ok")
"#;
    assert_eq!(python(script, &[path.to_str().expect("utf-8 path")]).trim(), "ok");
}

#[test]
fn an_unfinished_writer_leaves_status_running_with_its_rows() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("drop.h5");
    {
        let mut w = RunWriter::create(&path, &cfg(), &info()).expect("create");
        append_range(&mut w, 0, 1234);
    }
    let f = read_run(&path).expect("read");
    assert_eq!(f.status, RunStatus::Running);
    assert_eq!(f.data.len(), 1234);
    assert!(f.diagnostics.is_none());
}

#[test]
fn recovering_a_file_whose_attributes_went_dense_keeps_it_as_it_is_instead_of_crashing() {
    let _serial = serial();
    // libhdf5 1.10's H5Ocopy crashes on dense string attributes (HDFGroup/hdf5#2414): a file with
    // dead space that some tool gave more than eight attributes on /entry must be marked failed
    // and left uncompacted, not take the process down.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dense.h5");
    {
        let mut w = RunWriter::create(&path, &cfg(), &info()).expect("create");
        for b in 0..320 {
            append_range(&mut w, b * 100, b * 100 + 100);
            w.flush().expect("flush");
        }
    }
    let add = r#"
import sys, h5py
with h5py.File(sys.argv[1], "r+") as f:
    for k in range(3):
        f["entry"].attrs["note_%d" % k] = "added by another tool"
    print(len(f["entry"].attrs))
"#;
    let n: usize = python(add, &[path.to_str().expect("utf-8")]).trim().parse().expect("count");
    assert!(n > 8, "{n} attributes: not dense");
    let before = std::fs::metadata(&path).expect("stat").len();
    let stored: u64 = python(STORED_BYTES, &[path.to_str().expect("utf-8")]).trim().parse().expect("bytes");
    assert!(before > stored * 3 / 2 + (1 << 20), "no dead space to tempt compaction: {before} for {stored}");
    let outcome = recover(&path).expect("recover");
    assert!(outcome.changed);
    assert_eq!(outcome.compacted, None);
    let f = read_run(&path).expect("readable");
    assert_eq!((f.status, f.data.len()), (RunStatus::Failed, 32_000));
}

#[test]
fn creating_in_a_missing_directory_is_a_clear_error_and_existing_files_are_not_overwritten() {
    let _serial = serial();
    let e = RunWriter::create(Path::new("/nonexistent-dir/x.h5"), &cfg(), &info()).expect_err("must fail");
    assert!(e.to_string().contains("/nonexistent-dir/x.h5"), "{e}");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("once.h5");
    write_complete(&path, 10);
    assert!(RunWriter::create(&path, &cfg(), &info()).is_err(), "an existing run must never be overwritten");
    assert_eq!(read_run(&path).expect("still readable").status, RunStatus::Complete);
}

#[test]
fn a_foreign_file_with_the_documented_minimum_is_readable() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("foreign.h5");
    let script = r#"
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "w") as f:
    d = f.create_group("entry/data")
    t = np.arange(2000) / 1000.0
    d["time"] = t; d["displacement"] = t * 10; d["current"] = np.full(2000, 1e-6, dtype=np.float32); d["load"] = t * 100
    s = f.create_group("entry/sample")
    s["height_um"] = 5.0; s["diameter_um"] = 2.0; s["poisson_ratio"] = 0.36
"#;
    python(script, &[path.to_str().expect("utf-8")]);
    let f = read_run(&path).expect("foreign file readable");
    assert_eq!(f.data.len(), 2000);
    assert_eq!(f.pillar.poisson_ratio, 0.36);
    assert!((f.rate_hz.expect("rate from time") - 1000.0).abs() < 1e-6);
    assert!(f.data.delta_rho.iter().all(|x| x.is_nan()));
    assert_eq!(f.data.seq[1999], 1999);
    assert!((f.data.current_a[5] - 1e-6).abs() < 1e-12);
    // A file without the minimum names what is missing.
    let bad = dir.path().join("bad.h5");
    python(
        "import sys, h5py\nwith h5py.File(sys.argv[1], 'w') as f: f.create_group('entry/data')['time'] = [0.0, 1.0]",
        &[bad.to_str().expect("utf-8")],
    );
    let e = read_run(&bad).expect_err("missing columns");
    assert!(e.to_string().contains("displacement") || e.to_string().contains("sample"), "{e}");
}

/// Child half of the crash test: writes blocks, flushes, and reports each flush on stdout until
/// killed. Runs only when the parent test starts it with `NANOECR_CRASH_CHILD` set.
#[test]
#[ignore = "helper process for kill_9_mid_run_keeps_every_flushed_row; started by that test"]
fn crash_child_writer() {
    let Ok(path) = std::env::var("NANOECR_CRASH_CHILD") else { return };
    let mut w = RunWriter::create(Path::new(&path), &cfg(), &info()).expect("create");
    let mut rows = 0;
    // Bounded: the parent kills us long before this ends.
    for _ in 0..100_000 {
        append_range(&mut w, rows, rows + 500);
        rows += 500;
        w.flush().expect("flush");
        println!("flushed {rows}");
        // Unflushed rows that a crash may lose.
        append_range(&mut w, rows, rows + 123);
        rows += 123;
    }
}

#[test]
fn kill_9_mid_run_keeps_every_flushed_row_and_recover_marks_it_failed() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("crash.h5");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--ignored", "--exact", "crash_child_writer", "--nocapture", "--test-threads=1"])
        .env("NANOECR_CRASH_CHILD", &path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("piped");
    let mut flushed = 0u64;
    // Kept open until the child is dead: closing the pipe first would make the child's next
    // print fail and its unwinding flush the file, which is not a crash.
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.expect("child output");
        if let Some(n) = line.strip_prefix("flushed ") {
            flushed = n.trim().parse().expect("row count");
            if flushed >= 400 * 500 {
                break;
            }
        }
    }
    // SIGKILL: no destructor, no flush, no close.
    let pid = child.id() as libc::pid_t;
    assert_eq!(unsafe_free_kill(pid), 0, "kill -9 the writer");
    let _ = child.wait();
    drop(lines);
    assert!(flushed >= 200_000, "child reported {flushed} flushed rows");

    // The superblock still says "open for writing": only a SWMR reader opens the file before
    // recovery (a plain open fails with "file is already open for write").
    let check = r#"
import sys, h5py
f = h5py.File(sys.argv[1], "r", libver="latest", swmr=True)
e = f["entry"]
st = e.attrs["status"]; st = st.decode() if isinstance(st, bytes) else st
n = e["data/time"].shape[0]
assert all(e["data"][k].shape[0] == n for k in e["data"])
# Every row that made it is intact (full chunks stored by the compression worker included).
import numpy as np
assert (e["data/sequence"][:] == np.arange(n)).all()
assert (e["data/load"][:] == np.arange(n) + 0.25).all()
print(st, n)
"#;
    let out = python(check, &[path.to_str().expect("utf-8")]);
    let mut parts = out.split_whitespace();
    assert_eq!(parts.next(), Some("running"));
    let rows: u64 = parts.next().and_then(|n| n.parse().ok()).expect("row count");
    assert!(rows >= flushed, "h5py sees {rows} rows but {flushed} were flushed");

    // Our reader opens it too (in SWMR mode), as `nanoecr analyze` does.
    let before = read_run(&path).expect("crashed file readable before recovery");
    assert_eq!(before.status, RunStatus::Running);
    assert_eq!(before.data.len() as u64, rows);

    let crashed_size = std::fs::metadata(&path).expect("stat").len();
    let outcome = recover(&path).expect("recover");
    assert_eq!(outcome.status_before, RunStatus::Running);
    assert!(outcome.changed);
    assert!(outcome.cleared_flag, "a crashed SWMR writer leaves the superblock flags set");
    assert_eq!(outcome.rows, rows);
    // Any reader now: a plain (non-SWMR) h5py open.
    let plain = r#"
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    e = f["entry"]
    st = e.attrs["status"]; st = st.decode() if isinstance(st, bytes) else st
    r = e.attrs["end_reason"]; r = r.decode() if isinstance(r, bytes) else r
    print(st, e["data/time"].shape[0], r)
"#;
    let out = python(plain, &[path.to_str().expect("utf-8")]);
    let mut parts = out.split_whitespace();
    assert_eq!(parts.next(), Some("failed"), "{out}");
    assert_eq!(parts.next().and_then(|n| n.parse::<u64>().ok()), Some(rows), "{out}");
    assert!(out.contains("without closing"), "{out}");
    let f = read_run(&path).expect("readable after recovery");
    assert_eq!(f.status, RunStatus::Failed);
    assert_eq!(f.data.len() as u64, rows);
    assert!(f.end_reason.as_deref().is_some_and(|r| r.contains("without closing")));
    let h5dump = Command::new("h5dump").arg("-H").arg(&path).output().expect("h5dump (hdf5-tools) installed");
    assert!(h5dump.status.success(), "h5dump -H failed: {}", String::from_utf8_lossy(&h5dump.stderr));
    // The crashed writer's rewritten partial chunks left dead space; recovery compacts it away
    // as a closed run's `finish` does (sizes from h5py's own storage accounting).
    let size = std::fs::metadata(&path).expect("stat").len();
    let stored: u64 = python(STORED_BYTES, &[path.to_str().expect("utf-8")]).trim().parse().expect("bytes");
    assert!(crashed_size > stored * 3 / 2 + 64 * 1024, "no dead space to test: {crashed_size} for {stored}");
    // (Recovery itself rewrites the superblock and /entry's attributes before compacting, so
    // the size it compacted from is within a few KiB of the crashed file's.)
    let (from, to) = outcome.compacted.expect("compacted");
    assert_eq!(to, size, "stored {stored}");
    assert!(from.abs_diff(crashed_size) < 64 * 1024, "compacted from {from}, crashed file {crashed_size}");
    assert!(size < stored * 3 / 2 + 64 * 1024, "{size} bytes on disk for {stored} bytes of data");
    // Recovering again changes nothing: not a byte, not the modification time (a read-write
    // open would write the superblock, and fails on a closed file the caller may only read).
    let (bytes, mtime) =
        (std::fs::read(&path).expect("read"), std::fs::metadata(&path).and_then(|m| m.modified()).expect("mtime"));
    let again = recover(&path).expect("second recover");
    assert!(!again.changed && again.compacted.is_none());
    assert_eq!((again.status_before, again.rows), (RunStatus::Failed, rows));
    assert!(std::fs::read(&path).expect("read") == bytes, "a second recover rewrote the file");
    assert_eq!(
        std::fs::metadata(&path).and_then(|m| m.modified()).expect("mtime"),
        mtime,
        "a second recover wrote to the file"
    );
}

/// Prints the bytes every dataset of the file stores (h5py's `get_storage_size`).
const STORED_BYTES: &str = r#"
import sys, h5py
total = 0
def visit(name, obj):
    global total
    if isinstance(obj, h5py.Dataset): total += obj.id.get_storage_size()
with h5py.File(sys.argv[1], "r") as f:
    f.visititems(visit)
print(total)
"#;

/// The python half of the live-reading test: opens the file in SWMR mode while the run is being
/// written, prints what it sees, and on each `refresh` line refreshes and prints again; on
/// `close` it closes, reopens the file normally and prints the final state.
const LIVE_READER: &str = r#"
import sys, h5py
def s(v): return v.decode() if isinstance(v, bytes) else str(v)
f = h5py.File(sys.argv[1], "r", libver="latest", swmr=True)
e = f["entry"]; d = e["data"]; ev = e["events/kind"]
def report():
    for k in d: d[k].refresh()
    ev.refresh()
    lens = sorted({d[k].shape[0] for k in d})
    last = int(d["sequence"][-1]) if d["sequence"].shape[0] else -1
    print("rows", ",".join(map(str, lens)), "last", last, "events", ev.shape[0], "status", s(e.attrs["status"]), flush=True)
report()
while True:
    cmd = sys.stdin.readline().strip()
    if cmd == "refresh":
        report()
    else:
        break
f.close()
with h5py.File(sys.argv[1], "r") as g:
    e = g["entry"]
    print("final", s(e.attrs["status"]), e["data/time"].shape[0], int(e["diagnostics/ticks"][()]), e["events/kind"].shape[0], flush=True)
"#;

struct Py {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Py {
    fn start(script: &str, path: &Path) -> Self {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 must be installed (scripts/setup.sh)");
        let stdin = child.stdin.take().expect("piped");
        let lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        Self { child, stdin, lines }
    }

    /// The next line the script prints; fails the test with its stderr when it ended instead.
    fn line(&mut self) -> String {
        match self.lines.next() {
            Some(Ok(l)) => l,
            _ => {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                let _ = self.child.wait();
                panic!("the python reader ended early:\n{err}");
            }
        }
    }

    fn send(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").expect("python reader's stdin");
        self.stdin.flush().expect("python reader's stdin");
    }
}

#[test]
fn h5py_follows_a_run_live_in_swmr_mode() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("live.h5");
    let mut w = RunWriter::create(&path, &cfg(), &info()).expect("create");
    append_range(&mut w, 0, 1000);
    w.flush().expect("flush");

    let mut py = Py::start(LIVE_READER, &path);
    assert_eq!(py.line(), "rows 1000 last 999 events 0 status running");

    // Across a chunk boundary (8192 rows), with events.
    append_range(&mut w, 1000, 10_000);
    w.append_events(&[event(0.2, 7e-4), event(0.5, -9e-4)]).expect("events");
    w.flush().expect("flush");
    py.send("refresh");
    assert_eq!(py.line(), "rows 10000 last 9999 events 2 status running");

    // Appended but not flushed: not in the file yet.
    append_range(&mut w, 10_000, 10_500);
    py.send("refresh");
    assert_eq!(py.line(), "rows 10000 last 9999 events 2 status running");

    // Our own reader reads the live file (SWMR), and recovery refuses to touch it.
    // In this process it may see more: the compression worker stores each chunk as soon as it is
    // full (here the one ending at row 10 240), flush or not; every row it sees is right.
    let live = read_run(&path).expect("live file readable");
    assert_eq!(live.status, RunStatus::Running);
    assert!((10_000..=10_500).contains(&live.data.len()), "{} rows", live.data.len());
    assert!(live.data.seq.iter().enumerate().all(|(i, &s)| s == i as u64));
    let e = recover(&path).expect_err("a file being written must not be recovered");
    assert!(matches!(e, nanoecr_store::StoreError::InUse { .. }), "{e}");

    // Finishing with the reader still attached.
    let diag = Diagnostics { ticks: 10_500, rate_hz: 1000.0, ..Default::default() };
    w.finish(&EndReason::Completed, &diag, Some(&[event(0.2, 7.1e-4)])).expect("finish");
    py.send("close");
    assert_eq!(py.line(), "final complete 10500 10500 2");
    let status = py.child.wait().expect("python reader exit");
    assert!(status.success(), "python reader: {status}");
    let f = read_run(&path).expect("read");
    assert_eq!((f.status, f.data.len()), (RunStatus::Complete, 10_500));
    assert_eq!(f.ground_truth.map(|g| g.len()), Some(1));
}

#[test]
fn a_slow_run_flushed_every_100_rows_ends_without_dead_space() {
    let _serial = serial();
    // SWMR never frees the old place of a rewritten (partial, compressed) chunk; `finish` compacts.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("slow.h5");
    let mut w = RunWriter::create(&path, &cfg(), &info()).expect("create");
    for b in 0..320 {
        append_range(&mut w, b * 100, b * 100 + 100);
        w.flush().expect("flush");
    }
    let live_size = std::fs::metadata(&path).expect("stat").len();
    w.finish(&EndReason::Completed, &Diagnostics::default(), None).expect("finish");
    let size = std::fs::metadata(&path).expect("stat").len();
    let stored = r#"
import sys, h5py
total = 0
def visit(name, obj):
    global total
    if isinstance(obj, h5py.Dataset): total += obj.id.get_storage_size()
with h5py.File(sys.argv[1], "r") as f:
    f.visititems(visit)
    assert f["entry/data/time"].shape[0] == 32000
print(total)
"#;
    let stored: u64 = python(stored, &[path.to_str().expect("utf-8")]).trim().parse().expect("bytes");
    assert!(
        size < stored * 3 / 2 + 64 * 1024,
        "{size} bytes on disk for {stored} bytes of data (was {live_size} live)"
    );
    assert!(size < live_size, "compaction did not shrink the file: {size} vs {live_size}");
    assert_eq!(read_run(&path).expect("read").data.len(), 32_000);
}

/// `kill(pid, SIGKILL)` through the `kill` command: keeps `unsafe` out of the test.
fn unsafe_free_kill(pid: libc::pid_t) -> i32 {
    Command::new("kill").arg("-9").arg(pid.to_string()).status().map_or(-1, |s| s.code().unwrap_or(-1))
}

/// A live 1 kHz file flushed every 100 ms (the pipeline's default) must not grow to many times its
/// data: SWMR keeps every rewritten copy of a partial chunk, so the growth is bounded by the
/// chunk size. With 8192-row chunks, 20 s of 1 kHz samples left a ≈ 20 MB live file (≈ 1 KB a
/// sample; measured 0.96 MB/s in real runs); with rate-sized chunks it is a few times the data.
#[test]
fn a_live_1khz_file_flushed_every_100_ms_stays_within_a_few_times_its_data() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("live.h5");
    let mut w = RunWriter::create(&path, &cfg(), &info()).expect("create");
    let rows: u64 = 20_000;
    // Measured-like values: a linear ramp compresses to nothing, real signals carry noise.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut noise = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    for block in 0..rows / 100 {
        let (mut s, r): (Vec<Sample>, Vec<f64>) = (block * 100..block * 100 + 100).map(sample).unzip();
        for smp in &mut s {
            smp.load_un += noise();
            smp.disp_nm += 0.01 * noise();
            smp.current_a *= 1.0 + 1e-4 * noise();
        }
        let r: Vec<f64> = r.iter().map(|v| v + 1e-5 * noise()).collect();
        w.append(&s, &r).expect("append");
        w.flush().expect("flush");
    }
    let live_bytes = std::fs::metadata(&path).expect("stat").len();
    let per_sample = live_bytes as f64 / rows as f64;
    eprintln!("live 1 kHz file: {per_sample:.0} B/sample after {rows} rows in 100-row flushes");
    // Closed files hold ≈ 25–35 B a sample (docs/file-format.md); allow 8× that live.
    assert!(per_sample < 250.0, "live file {live_bytes} B for {rows} rows = {per_sample:.0} B/sample");
    drop(w);
}

/// xorshift64: values whose every byte plane is noise, so deflate cannot shrink their chunks.
fn noise(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Chunks are shuffled and deflated by the writer's own worker and stored with H5Dwrite_chunk;
/// a partial chunk at a flush is stored padded with zeros and replaced once full.
/// h5py (its own libhdf5 build) and h5dump must read every value of every column type back
/// without plugins, and chunks that deflate cannot shrink must be stored with the deflate bit of
/// their filter mask set.
#[test]
fn directly_written_chunks_read_back_bit_for_bit_in_h5py_and_h5dump() {
    let _serial = serial();
    // Real time at 1 kHz: 512-row chunks; unpaced (`--fast`): 8192-row chunks.
    direct_chunks_round_trip(Pacing::RealTime, 512);
    direct_chunks_round_trip(Pacing::Unpaced, 8192);
}

fn direct_chunks_round_trip(pacing: Pacing, chunk_rows: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("direct.h5");
    let rows: u64 = 40_000;
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    let samples: Vec<(Sample, f64)> = (0..rows)
        .map(|i| {
            let (mut s, _) = sample(i);
            // Smooth columns (time, setpoint, load, …) compress; `current` is pure noise (every
            // bit pattern, NaNs included) and `voltage` a noisy measurement.
            s.current_a = f64::from_bits(noise(&mut state));
            s.voltage_v = 5.0 + (noise(&mut state) % 1000) as f64 * 1e-6;
            s.segment = Segment::from_code((i / 700 % 5) as u8).expect("segment code");
            (s, (i as f64).sqrt() * 1e-5)
        })
        .collect();
    let mut w = RunWriter::create_with(&path, &cfg(), &info(), pacing).expect("create");
    let mut at = 0usize;
    // Blocks that straddle chunk boundaries, with flushes in between, so partial (padded)
    // chunks are stored and later replaced by full ones.
    for (k, block) in [777usize, 100, 2048, 5, 4096, 333].iter().cycle().enumerate() {
        if at as u64 >= rows {
            break;
        }
        let end = (at + block).min(rows as usize);
        let (s, r): (Vec<Sample>, Vec<f64>) = samples[at..end].iter().copied().unzip();
        w.append(&s, &r).expect("append");
        if k % 2 == 0 {
            w.flush().expect("flush");
        }
        at = end;
    }
    // A ground truth over more than one of its 8192-row chunks (the writer encodes it itself),
    // with noisy magnitudes of both signs.
    let gt: Vec<Event> =
        (0..9000u64).map(|i| event(i as f64 * 1e-3, (noise(&mut state) % 2001) as f64 * 1e-6 - 1e-3)).collect();
    w.finish(&EndReason::Completed, &Diagnostics::default(), Some(&gt)).expect("finish");

    // The expected values as raw native bytes, one file per column, for numpy to compare.
    let dump = |name: &str, bytes: Vec<u8>| std::fs::write(dir.path().join(name), bytes).expect("write expected");
    let f64s = |f: &dyn Fn(&(Sample, f64)) -> f64| samples.iter().flat_map(|x| f(x).to_ne_bytes()).collect::<Vec<u8>>();
    dump("sequence", samples.iter().flat_map(|x| x.0.seq.to_ne_bytes()).collect());
    dump("time", f64s(&|x| x.0.time_s));
    dump("load", f64s(&|x| x.0.load_un));
    dump("setpoint", f64s(&|x| x.0.setpoint_un));
    dump("displacement", f64s(&|x| x.0.disp_nm));
    dump("current", f64s(&|x| x.0.current_a));
    dump("voltage", f64s(&|x| x.0.voltage_v));
    dump("segment", samples.iter().map(|x| x.0.segment.code()).collect());
    dump("resistivity_change", f64s(&|x| x.1));
    dump("gt_onset_time", gt.iter().flat_map(|e| e.onset_time_s.to_ne_bytes()).collect());
    dump("gt_magnitude", gt.iter().flat_map(|e| e.magnitude.to_ne_bytes()).collect());
    dump("gt_sign", gt.iter().map(|e| e.sign as u8).collect());
    let script = r#"
import sys, os, h5py, numpy as np
path, exp_dir, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
types = {"sequence": np.uint64, "segment": np.uint8}
masks = {}
with h5py.File(path, "r") as f:
    d = f["entry/data"]
    for k in ["sequence", "time", "load", "setpoint", "displacement", "current", "voltage", "segment", "resistivity_change"]:
        ds = d[k]
        t = types.get(k, np.float64)
        assert ds.dtype == t, (k, ds.dtype)
        assert ds.shuffle and ds.compression == "gzip" and ds.chunks == (chunk,), (k, ds.chunks)
        exp = np.fromfile(os.path.join(exp_dir, k), dtype=t)
        got = ds[:]
        assert got.shape == exp.shape, (k, got.shape, exp.shape)
        ui = np.uint8 if t == np.uint8 else np.uint64
        bad = np.nonzero(got.view(ui) != exp.view(ui))[0]
        assert bad.size == 0, (k, bad[:5], got[bad[:5]], exp[bad[:5]])
        # The last chunk is partial, stored padded with zeros, which deflate does shrink.
        last = ds.shape[0] // ds.chunks[0] * ds.chunks[0]
        infos = [ds.id.get_chunk_info(i) for i in range(ds.id.get_num_chunks())]
        assert len(infos) == -(-ds.shape[0] // ds.chunks[0]), k
        masks[k] = sorted({c.filter_mask for c in infos if c.chunk_offset[0] != last})
        if k == "voltage":
            # Full deflated chunks whose stream opens with a stored block: the writer's noisy low
            # byte planes (RFC 1950: 2-byte zlib header; RFC 1951 3.2.3: the block header's first
            # three bits are BFINAL and BTYPE, 0 and 00 for a stored block that is not last).
            opens_stored = sum(
                ds.id.read_direct_chunk((c.chunk_offset[0],))[1][2] & 7 == 0
                for c in infos if c.chunk_offset[0] != last and c.filter_mask == 0
            )
    g = f["entry/ground_truth/events"]
    for k, t in [("onset_time", np.float64), ("magnitude", np.float64), ("sign", np.uint8)]:
        exp = np.fromfile(os.path.join(exp_dir, "gt_" + k), dtype=t)
        got = g[k][:]
        assert g[k].shuffle and g[k].compression == "gzip", k
        assert got.shape == exp.shape and (got.view(np.uint8) == exp.view(np.uint8)).all(), ("ground truth", k)
print(" ".join(f"{k}={','.join(map(str, v))}" for k, v in masks.items()), f"voltage_opens_stored={opens_stored}")
"#;
    let chunk = chunk_rows.to_string();
    let out = python(script, &[path.to_str().expect("utf-8"), dir.path().to_str().expect("utf-8"), &chunk]);
    // Noise does not deflate: stored shuffled with bit 1 (deflate) set; smooth columns deflate.
    assert!(out.contains("current=2"), "{out}");
    assert!(out.contains("time=0 ") && out.contains("sequence=0 "), "{out}");
    // …and a noisy measurement's random low byte planes travel as stored blocks inside deflate
    // streams, which h5py (its own zlib) read back bit for bit above.
    let opens_stored: usize = out
        .split_whitespace()
        .find_map(|t| t.strip_prefix("voltage_opens_stored="))
        .and_then(|n| n.parse().ok())
        .expect("count of stored-block chunks");
    assert!(opens_stored > 0, "{out}");

    // h5dump (the system libhdf5 1.10) decodes the same chunks: a value deep inside the file.
    for (column, expect) in [("sequence", "39999"), ("segment", format!("{}", 39_999 / 700 % 5).as_str())] {
        let out = Command::new("h5dump")
            .args(["-d", &format!("/entry/data/{column}"), "-s", "39999", "-c", "1"])
            .arg(&path)
            .output()
            .expect("h5dump (hdf5-tools) installed");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "h5dump {column}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains(&format!("(39999): {expect}")), "h5dump {column}:\n{text}");
    }
    let f = read_run(&path).expect("read");
    assert_eq!(f.data.len() as u64, rows);
    assert_eq!(f.data.current_a[12_345].to_bits(), samples[12_345].0.current_a.to_bits());
}
