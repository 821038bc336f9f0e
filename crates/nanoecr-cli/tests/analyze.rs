//! `nanoecr analyze --json` and `nanoecr score --json` on a freshly simulated run: one JSON object,
//! events with exactly the promised keys, a score against the ground truth.

use std::process::Command;

fn nanoecr() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nanoecr"))
}

fn config() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/demo.toml")
}

#[test]
fn analyze_json_has_event_keys_and_score_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = nanoecr()
        .args(["run"])
        .arg(config())
        .args(["--fast", "--seed", "3", "--json", "--out-dir"])
        .arg(dir.path())
        .output()
        .expect("run nanoecr run");
    assert!(out.status.success(), "run failed: {}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("run --json");
    let file = summary["file"].as_str().expect("summary has file").to_string();

    let plots = dir.path().join("analysis");
    let out = nanoecr().args(["analyze", &file, "--json", "--out-dir"]).arg(&plots).output().expect("analyze");
    assert!(out.status.success(), "analyze failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let events = v["events"].as_array().expect("events array");
    assert!(!events.is_empty(), "a 6000 µN demo run has spikes");
    for e in events {
        let obj = e.as_object().expect("event object");
        for key in ["kind", "sign", "onset_time", "peak_time", "duration", "magnitude", "segment"] {
            assert!(obj.contains_key(key), "event lacks {key}: {e}");
        }
        assert!(matches!(obj["kind"].as_str(), Some("spike" | "popin")), "{e}");
        assert!(matches!(obj["sign"].as_str(), Some("p" | "n")), "{e}");
        assert!(matches!(obj["segment"].as_str(), Some("settle" | "load" | "hold" | "unload" | "safe_unload")), "{e}");
    }
    assert!(v["sign_balance"].as_array().is_some_and(|b| b.len() == 3));
    assert!(plots.join("report.md").exists() && plots.join("magnitudes_ccdf.png").exists());
    // The text summary shows the measurement-aware fit whenever the JSON has one.
    let text = nanoecr().args(["analyze", &file]).output().expect("analyze (text)");
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    let has_measured = v["measured_fit"].is_object();
    assert_eq!(text.contains("measurement-aware above"), has_measured, "{text}");

    let out = nanoecr().args(["score", &file, "--json"]).output().expect("score");
    assert!(out.status.success(), "score failed: {}", String::from_utf8_lossy(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("score JSON");
    let recall = s["aggregate"]["recall_big"].as_f64().expect("recall_big");
    assert!((0.0..=1.0).contains(&recall));
}
