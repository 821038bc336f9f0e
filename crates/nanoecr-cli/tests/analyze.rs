//! `nanoecr analyze --json` and `nanoecr score --json` on a freshly simulated run: one JSON object,
//! events with exactly the promised keys, a score against the ground truth.

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

fn config() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/demo.toml")
}

#[test]
fn analyze_json_has_event_keys_and_score_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Each test its own rig lock directory: the tests run in parallel on the same "default" rig.
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
    assert_headline_matches_its_diagnostics(&v);
    // One 6000 µN demo run has ≈ 50 spikes above the detector floor: α's 95 % interval is ≈ 3
    // wide, so the headline must say so instead of printing it.
    assert_eq!(v["headline"]["constrained"], false, "{}", v["headline"]);
    let text = nanoecr().args(["analyze", &file]).output().expect("analyze (text)");
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    let headline = text.lines().nth(1).expect("the headline is the second line");
    assert!(headline.contains("α, xc: not constrained by this run: pool a campaign"), "{text}");
    assert!(headline.contains("measurement-aware fit") && !headline.contains('['), "{text}");
    let diagnostics = text.find("diagnostics:").expect("a diagnostics section");
    assert!(text[diagnostics..].contains("naive (n = "), "{text}");
    let md = std::fs::read_to_string(plots.join("report.md")).expect("report.md");
    assert!(md.find("pool a campaign") < md.find("## Diagnostics"), "{md}");

    let out = nanoecr().args(["score", &file, "--json"]).output().expect("score");
    assert!(out.status.success(), "score failed: {}", String::from_utf8_lossy(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("score JSON");
    let recall = s["aggregate"]["recall_big"].as_f64().expect("recall_big");
    assert!((0.0..=1.0).contains(&recall));
}

/// `headline` has exactly the promised keys and repeats the diagnostics entry of its method.
fn assert_headline_matches_its_diagnostics(v: &serde_json::Value) {
    let h = v["headline"].as_object().unwrap_or_else(|| panic!("no headline in {v}"));
    let mut keys: Vec<&str> = h.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["alpha", "alpha_ci", "constrained", "method", "n", "x_min", "xc", "xc_ci"]);
    let method = h["method"].as_str().expect("method");
    assert_eq!(method, "measurement_aware", "docs/accuracy.md: the unbiased fit with ≥ 90 % coverage");
    let fit = &v["diagnostics"][method];
    assert!(fit.is_object(), "diagnostics lacks {method}: {v}");
    for key in ["alpha", "alpha_ci", "xc", "xc_ci", "n", "x_min"] {
        assert_eq!(h[key], fit[key], "headline.{key} vs diagnostics.{method}.{key}");
    }
    let [lo, hi] = [0, 1].map(|i| h["alpha_ci"][i].as_f64().expect("finite interval"));
    assert_eq!(h["constrained"].as_bool(), Some(hi - lo <= 1.0 && lo > -0.99 && hi < 3.99));
    for old in ["magnitudes", "measured_fit", "measurement_model"] {
        assert!(v.get(old).is_none(), "{old} moved under diagnostics");
    }
}

/// One simulated `--fast` demo run in `dir` with `seed`; returns its path.
fn simulate(dir: &std::path::Path, seed: u64) -> String {
    let out = nanoecr()
        .args(["run"])
        .arg(config())
        .args(["--fast", "--seed", &seed.to_string(), "--json", "--out-dir"])
        .arg(dir)
        .output()
        .expect("run nanoecr run");
    assert!(out.status.success(), "run failed: {}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("run --json");
    summary["file"].as_str().expect("summary has file").to_string()
}

#[test]
fn files_analysed_in_parallel_are_reported_in_the_order_given_and_json_mode_is_quiet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = simulate(dir.path(), 5);
    let b = simulate(dir.path(), 6);
    let missing = dir.path().join("missing.h5").display().to_string();
    // b before a, an unreadable file in between, and a again: the order of the arguments, not
    // of completion on the thread pool, must come back.
    let order = [b.clone(), missing.clone(), a.clone(), b.clone()];
    let out = nanoecr().arg("analyze").args(&order).arg("--json").output().expect("analyze");
    assert_eq!(out.status.code(), Some(1), "one file is missing: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let files: Vec<&str> =
        v["runs"].as_array().expect("runs").iter().map(|r| r["file"].as_str().expect("file")).collect();
    let name = |p: &str| std::path::Path::new(p).file_name().map(|n| n.to_string_lossy().into_owned());
    let got: Vec<_> = files.iter().map(|f| name(f)).collect();
    assert_eq!(got, vec![name(&b), name(&a), name(&b)]);
    // Both analyses of b are the same numbers: nothing is shared between the workers.
    assert_eq!(v["runs"][0], v["runs"][2]);
    assert_ne!(v["runs"][0], v["runs"][1]);
    for run in v["runs"].as_array().expect("runs") {
        assert_headline_matches_its_diagnostics(run);
    }
    let groups = v["campaign"]["groups"].as_array().expect("groups");
    assert!(!groups.is_empty());
    for g in groups {
        assert_headline_matches_its_diagnostics(g);
    }
    let errors = v["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["file"].as_str(), Some(missing.as_str()));
    // In --json mode stderr carries the error line of the missing file and no progress display.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.lines().all(|l| l.starts_with("error:")), "stderr: {stderr}");

    let out = nanoecr().arg("score").args([&a, &b, &a]).arg("--json").output().expect("score");
    assert!(out.status.success(), "score failed: {}", String::from_utf8_lossy(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("score JSON");
    let per_file: Vec<_> =
        s["files"].as_array().expect("files").iter().map(|f| name(f["file"].as_str().expect("file"))).collect();
    assert_eq!(per_file, vec![name(&a), name(&b), name(&a)]);
    assert_eq!(s["files"][0], s["files"][2]);
    assert!(out.stderr.is_empty(), "score --json wrote to stderr: {}", String::from_utf8_lossy(&out.stderr));
}
