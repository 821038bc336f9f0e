//! Smoke test: a tiny run of the bench writes a JSON report of the documented shape.
//!
//! No figure is checked against anything: speed targets belong in the bench's output, never in
//! a test (a loaded CI machine would fail them at random).

use std::process::Command;

#[test]
fn tiny_run_writes_a_report_of_the_documented_shape() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = dir.path().join("report.json");
    let md = dir.path().join("report.md");
    let run = Command::new(env!("CARGO_BIN_EXE_nanoecr-bench"))
        .args(["--smoke", "--only", "ring,detector", "--out"])
        .arg(&out)
        .arg("--markdown")
        .arg(&md)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("running nanoecr-bench");
    assert!(
        run.status.success(),
        "nanoecr-bench --smoke failed: {}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    let table = String::from_utf8_lossy(&run.stdout);
    assert!(table.starts_with("section"), "the table goes to stdout:\n{table}");

    let text = std::fs::read_to_string(&out).expect("report written");
    let v: serde_json::Value = serde_json::from_str(&text).expect("report is JSON");
    assert!(v["command"].as_str().is_some_and(|c| c.contains("nanoecr-bench")));
    assert!(v["machine"]["nproc"].as_u64().is_some_and(|n| n >= 1));
    for key in ["cpu_model", "kernel", "loadavg_start", "loadavg_end"] {
        assert!(v["machine"][key].is_string(), "machine.{key} missing");
    }
    assert_eq!(v["smoke"], serde_json::json!(true));
    assert_eq!(v["sections"], serde_json::json!(["ring", "detector"]));
    assert!(v["bench_wall_s"].as_f64().is_some());
    assert!(v["details"]["detector"].is_object());

    let rows = v["rows"].as_array().expect("rows");
    // Ring: 3 rings × 2 batch sizes; detector: 2 rates × (process_slice, process, detect_columns).
    assert_eq!(rows.iter().filter(|r| r["section"] == "ring").count(), 6);
    assert_eq!(rows.iter().filter(|r| r["section"] == "detector").count(), 6);
    for r in rows {
        for key in ["section", "figure", "unit", "target", "note"] {
            assert!(r[key].is_string(), "row {r} lacks {key}");
        }
        let samples = r["samples"].as_array().expect("samples");
        assert_eq!(r["runs"].as_u64(), Some(samples.len() as u64), "row {r}");
        assert!(r["value"].as_f64().is_some_and(|x| x > 0.0), "row {r} has no figure");
        assert!(
            r["verdict"].is_null() || r["verdict"] == "met" || r["verdict"] == "missed",
            "row {r} has an unknown verdict"
        );
        // A figure with a target has a verdict, and only then.
        assert_eq!(r["target"] == "", r["verdict"].is_null(), "row {r}");
    }
    let md = std::fs::read_to_string(&md).expect("markdown written");
    assert_eq!(md.lines().count(), 2 + rows.len(), "one Markdown line per row");
}
