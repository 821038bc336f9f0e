//! `nanoecr run` as an operator uses it, checked by an independent HDF5 reader (h5py).

use std::path::Path;
use std::process::Command;

/// `nanoecr` with a rig-lock directory of its own: tests here run in parallel (and beside any
/// other run on this machine), and one master per rig would otherwise refuse all but one of them.
fn nanoecr() -> Command {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let locks = std::env::temp_dir().join(format!("nanoecr-test-locks-{}-{n}", std::process::id()));
    let mut c = Command::new(env!("CARGO_BIN_EXE_nanoecr"));
    c.env("NANOECR_LOCK_DIR", locks);
    c
}

fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// Runs a Python snippet; the test fails (never skips) when python3 or h5py is missing, because
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

#[test]
fn the_demo_run_writes_a_complete_file_that_h5py_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = nanoecr()
        .current_dir(workspace())
        .args(["run", "config/demo.toml", "--fast", "--json", "--quiet", "--out-dir"])
        .arg(dir.path())
        .output()
        .expect("nanoecr runs");
    assert!(out.status.success(), "nanoecr run failed: {}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json prints one JSON object");
    let file = summary["file"].as_str().expect("summary has `file`");
    assert_eq!(summary["status"], "complete");
    assert_eq!(summary["dropped"], 0);
    assert_eq!(summary["samples"], 32_000);

    let check = r#"
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
e = f["entry"]
assert e.attrs["status"] in ("complete", b"complete"), e.attrs["status"]
d = e["data"]
n = d["time"].shape[0]
for name in ["time", "load", "setpoint", "displacement", "current", "voltage", "segment", "resistivity_change"]:
    assert d[name].shape[0] == n, name
    assert "units" in d[name].attrs, name
assert 31900 <= n <= 32100, n
seg = d["segment"][:]
load = d["load"][:]
sp = d["setpoint"][:]
rho = d["resistivity_change"][:]
t = d["time"][:]
after = seg != 0
# Load within 1% of the trapezoid after settle, against the trapezoid itself (not the stored setpoint).
tri = np.where(t < 2, 0, np.where(t < 12, 600 * (t - 2), np.where(t < 22, 6000, 6000 - 600 * (t - 22))))
rms = np.sqrt(np.mean((load[after] - tri[after]) ** 2))
assert rms < 60, rms
assert np.all(np.isnan(rho[seg == 0]))
assert np.isfinite(rho[after]).mean() > 0.99
print(n, rms)
"#;
    let printed = python(check, &[file]);
    assert!(!printed.trim().is_empty());
}

#[test]
fn an_invalid_config_is_refused_with_its_location_and_exit_code_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(workspace().join("config/demo.toml"))
        .expect("demo config")
        .replace("rate_hz = 1000", "rate_hz = 0");
    std::fs::write(&cfg, text).expect("write");
    let out = nanoecr().args(["run", "--fast", "--out-dir"]).arg(dir.path()).arg(&cfg).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:") && err.contains("acquisition.rate_hz") && err.contains("Hz"), "{err}");
    // Nothing was written.
    let h5 = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "h5")))
        .count();
    assert_eq!(h5, 0);
}

/// A device or a FIFO given as the config is refused at once (exit 2), never read without end or
/// waited on: the loader opens with O_NONBLOCK and checks the file type before reading.
#[test]
fn a_device_or_fifo_as_config_is_refused_at_once_with_exit_code_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("run.toml");
    assert!(Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    for (path, what) in [(Path::new("/dev/zero"), "a character device"), (fifo.as_path(), "a FIFO")] {
        let out = nanoecr().args(["run", "--fast", "--out-dir"]).arg(dir.path()).arg(path).output().expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(&format!("it is {what}, not a regular file")), "{err}");
        assert!(err.contains(&path.display().to_string()), "names the file: {err}");
    }
}
