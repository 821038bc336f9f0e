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

    // The text form prints numbers with the precision they carry: exponents to two decimals,
    // medians to two significant figures, not the JSON's full doubles.
    let out = nanoecr().args(["score", &file]).output().expect("score (text)");
    assert!(out.status.success(), "score failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().expect("a line per file");
    let true_alpha = s["files"][0]["fit_vs_truth"]["true_alpha"].as_f64().expect("the simulated α");
    assert!(first.ends_with(&format!("vs true {true_alpha:.2}")), "{first}");
    let long_number =
        |w: &str| w.split(['.', 'e']).nth(1).is_some_and(|f| f.len() > 4 && f.bytes().all(|b| b.is_ascii_digit()));
    for line in text.lines() {
        assert!(
            !line.split([' ', '|', '–']).any(long_number),
            "a number printed with more digits than it carries: {line}"
        );
    }
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

/// The paper's figure for a small seeded campaign (three peak loads of config/campaign, two runs
/// each): `analyze --out-dir` writes it as PNG and SVG, campaign.md links it and tabulates it,
/// and the JSON's `campaign.stress_series` holds what it plots, the groups' own headlines and
/// p − n per run.
#[test]
fn campaign_figure_against_peak_stress_in_png_svg_json_and_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let campaign = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/campaign");
    let mut files = Vec::new();
    // A seed of its own for every run: one seed at every peak would draw the same magnitudes.
    for peak in ["1000", "3000", "6000"] {
        for seed in [format!("{peak}1"), format!("{peak}2")] {
            let out = nanoecr()
                .arg("run")
                .arg(campaign.join(format!("peak_{peak}un.toml")))
                .args(["--fast", "--seed", &seed, "--json", "--out-dir"])
                .arg(dir.path())
                .output()
                .expect("run nanoecr run");
            assert!(out.status.success(), "run failed: {}", String::from_utf8_lossy(&out.stderr));
            let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("run --json");
            files.push(summary["file"].as_str().expect("file").to_string());
        }
    }
    let report = dir.path().join("report");
    let out =
        nanoecr().arg("analyze").args(&files).args(["--json", "--out-dir"]).arg(&report).output().expect("analyze");
    assert!(out.status.success(), "analyze failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");

    let png = std::fs::read(report.join("campaign_vs_stress.png")).expect("PNG written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let svg = std::fs::read_to_string(report.join("campaign_vs_stress.svg")).expect("SVG written");
    for needle in ["<svg", "Yang et al.", "peak stress (MPa)", "p − n per run (spikes)", "α (dimensionless)"] {
        assert!(svg.contains(needle), "SVG lacks {needle}");
    }
    let written: Vec<&str> =
        v["files_written"].as_array().expect("files_written").iter().filter_map(|f| f.as_str()).collect();
    assert!(written.iter().any(|f| f.ends_with("campaign_vs_stress.png")), "{written:?}");
    assert!(written.iter().any(|f| f.ends_with("campaign_vs_stress.svg")), "{written:?}");

    let groups = v["campaign"]["groups"].as_array().expect("groups");
    let series = &v["campaign"]["stress_series"];
    assert_eq!(series["paper"]["alpha"].as_f64(), Some(1.5));
    assert_eq!(series["paper"]["alpha_pm"].as_f64(), Some(0.1));
    assert_eq!(series["paper"]["xc"].as_f64(), Some(1e-3));
    let points = series["points"].as_array().expect("points");
    assert_eq!(points.len(), 3, "three peak stresses");
    assert_eq!(groups.len(), 3);
    let stresses: Vec<f64> = points.iter().map(|p| p["peak_stress_mpa"].as_f64().expect("stress")).collect();
    assert!(stresses.windows(2).all(|w| w[0] < w[1]), "{stresses:?}");
    // 1000 µN on the 2 µm pillar is 318 MPa; grouped to 10 MPa.
    assert!((stresses[0] - 320.0).abs() < 1e-9 && (stresses[2] - 1910.0).abs() < 1e-9, "{stresses:?}");
    for (p, g) in points.iter().zip(groups) {
        assert_eq!(p["peak_stress_mpa"], g["peak_stress_mpa"]);
        assert_eq!(p["runs"].as_u64(), Some(2));
        let h = &g["headline"];
        for (pk, hk) in [
            ("alpha", "alpha"),
            ("alpha_ci", "alpha_ci"),
            ("xc", "xc"),
            ("xc_ci", "xc_ci"),
            ("constrained", "constrained"),
            ("n", "n"),
        ] {
            assert_eq!(p[pk], h[hk], "stress_series.{pk} vs the group's headline.{hk}");
        }
        assert!(p["n"].as_u64().is_some_and(|n| n > 0), "each group has a headline fit: {g}");
        let balance = g["sign_balance"].as_array().expect("sign_balance");
        let per_run = p["p_minus_n_per_run"].as_array().expect("p − n per run");
        assert_eq!(per_run.len(), 3);
        for (b, r) in balance.iter().zip(per_run) {
            assert_eq!(b["segment"], r["segment"]);
            let diff = b["difference"].as_f64().expect("difference");
            // serde_json's default float parsing is not bit-exact: compare to 1e-12.
            let close = |x: Option<f64>, y: f64| x.is_some_and(|x| (x - y).abs() <= 1e-12 * y.abs().max(1.0));
            assert!(close(r["p_minus_n"].as_f64(), diff / 2.0), "{r} vs {b}");
            let sigma = b["sigma"].as_f64().expect("sigma");
            assert!(close(r["sigma"].as_f64(), sigma / 2.0), "{r} vs {b}");
        }
    }

    let md = std::fs::read_to_string(report.join("campaign.md")).expect("campaign.md");
    assert!(md.contains("## Against peak stress"), "{md}");
    assert!(md.contains("(campaign_vs_stress.png)") && md.contains("(campaign_vs_stress.svg)"), "{md}");
    assert!(md.contains("Yang et al. 2014: α = 1.5 ± 0.1"), "{md}");
    for s in ["| 320 | 2 |", "| 960 | 2 |", "| 1910 | 2 |"] {
        assert!(md.contains(s), "campaign.md lacks the row {s}: {md}");
    }
}

/// Where the build found Debian's static libhdf5 (crates/nanoecr-cli/build.rs), `nanoecr` must not
/// load the shared one, nor the network stack Debian's shared build drags in (libcurl, OpenSSL):
/// loading and relocating those 38 objects was ≈ 15 % of a one-run `analyze` (docs/performance.md).
/// The dynamic loader lists what it would load (`LD_TRACE_LOADED_OBJECTS`, what `ldd` uses).
#[test]
fn with_a_static_libhdf5_nanoecr_loads_neither_libhdf5_nor_libcurl() {
    let Some(archive) = option_env!("NANOECR_HDF5_STATIC") else {
        eprintln!("no static libhdf5 at build time: nanoecr links the shared one, nothing to check");
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_nanoecr"))
        .env("LD_TRACE_LOADED_OBJECTS", "1")
        .output()
        .expect("run the dynamic loader on nanoecr");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("libc.so"), "not a loader listing: {listing}");
    for lib in ["libhdf5", "libcurl", "libcrypto", "libssl"] {
        assert!(!listing.contains(lib), "linked against {archive}, yet loads {lib}:\n{listing}");
    }
}

/// `nanoecr analyze FILE | head` and the like: when the reader of stdout has gone, the offline
/// commands end as Unix tools do, killed by SIGPIPE with nothing on stderr (they panicked with a
/// backtrace, exit 101, before). The pipe's read end is closed before the command starts, so
/// its first write meets a closed pipe on any host.
#[test]
fn a_closed_stdout_pipe_ends_analyze_and_score_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = simulate(dir.path(), 8);
    for args in [vec!["analyze", file.as_str()], vec!["analyze", file.as_str(), "--json"], vec!["score", file.as_str()]]
    {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out =
            nanoecr().args(&args).stdout(writer).stderr(std::process::Stdio::piped()).output().expect("start nanoecr");
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {:?}, stderr {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stderr.is_empty(), "{args:?} wrote to stderr: {}", String::from_utf8_lossy(&out.stderr));
    }
}
