//! Markdown reports: every number of a run (or a score, or a campaign) as tables, with the plots
//! linked. Plain string building; the report is written next to the plots.

use std::fmt::Write as _;
use std::path::Path;

use crate::run::{CampaignAnalysis, RunAnalysis};
use crate::scoring::ScoreReport;
use crate::AnalysisError;

/// Format a number compactly, "—" for NaN/None.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        if v == f64::INFINITY {
            return "∞".into();
        }
        return "—".into();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-2..1e4).contains(&a) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1} %", 100.0 * v)
    } else {
        "—".into()
    }
}

/// Markdown section with a score.
pub fn score_markdown(s: &ScoreReport) -> String {
    let c = &s.counts;
    let mut m = String::new();
    let _ = writeln!(m, "| metric | value | counts |\n| --- | --- | --- |");
    let _ = writeln!(m, "| recall (all) | {} | {}/{} |", pct(s.recall), c.n_matched, c.n_true);
    let _ = writeln!(m, "| precision (all) | {} | {}/{} |", pct(s.precision), c.n_matched, c.n_detected);
    let _ =
        writeln!(m, "| recall, \\|x\\| ≥ 7e-4 | {} | {}/{} |", pct(s.recall_big), c.n_true_big_matched, c.n_true_big);
    let _ = writeln!(
        m,
        "| precision, \\|x\\| ≥ 7e-4 | {} | {}/{} |",
        pct(s.precision_big),
        c.n_detected_big_matched,
        c.n_detected_big
    );
    let _ = writeln!(m, "| sign accuracy | {} | {}/{} |", pct(s.sign_accuracy), c.n_sign_correct, c.n_matched);
    let _ = writeln!(m, "| median \\|onset error\\| (samples) | {} | |", num(s.onset_error_median_samples));
    let _ = writeln!(m, "| median onset bias (samples) | {} | |", num(s.onset_bias_median_samples));
    let _ = writeln!(m, "| median relative magnitude error | {} | |", num(s.magnitude_error_median));
    let _ = writeln!(m, "| pop-in recall | {} | {}/{} |", pct(s.popin_recall), c.n_matched_popins, c.n_true_popins);
    let _ = writeln!(
        m,
        "| pop-in precision | {} | {}/{} |",
        pct(s.popin_precision),
        c.n_matched_popins,
        c.n_detected_popins
    );
    let _ = writeln!(m, "\nDetection efficiency (tolerance {} samples):\n", num(s.tolerance_samples));
    let _ = writeln!(m, "| true \\|Δρ/ρ\\| | true | detected | recall |\n| --- | --- | --- | --- |");
    for b in s.efficiency.iter().filter(|b| b.n_true > 0) {
        let _ = writeln!(m, "| {}–{} | {} | {} | {} |", num(b.lo), num(b.hi), b.n_true, b.n_detected, pct(b.recall));
    }
    m
}

/// The Markdown report of one run; `plots` says whether the figures were written next to it.
pub fn run_markdown(a: &RunAnalysis, plots: bool) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "# NanoECR run analysis\n");
    let _ = writeln!(m, "| | |\n| --- | --- |");
    let _ = writeln!(m, "| file | `{}` |", a.file);
    let _ = writeln!(m, "| status | {} |", a.status);
    if let Some(r) = &a.end_reason {
        let _ = writeln!(m, "| end reason | {r} |");
    }
    let _ = writeln!(m, "| samples | {} at {} Hz |", a.n_samples, num(a.rate_hz));
    let _ = writeln!(m, "| peak stress | {} MPa |", num(a.peak_stress_mpa));
    let _ = writeln!(m, "| Δρ/ρ noise σ (robust) | {} |", num(a.noise_sigma));
    let _ = writeln!(m, "| spikes / pop-ins / interlocks | {} / {} / {} |", a.n_spikes, a.n_popins, a.n_interlocks);
    let _ = writeln!(m, "| detection threshold | {} |", num(a.detection_threshold));
    let _ = writeln!(m, "| efficiency curve | {} |", a.efficiency_curve.source);
    let _ = writeln!(m, "| completeness (ε ≥ 0.95) | {} |", a.completeness_threshold.map_or("—".into(), num));
    for n in &a.notes {
        let _ = writeln!(m, "\n> {n}");
    }
    if plots {
        let _ = writeln!(m, "\n![h and Δρ/ρ vs time](timeseries.png)\n\n![zooms](zooms.png)");
    }
    let _ = writeln!(m, "\n## Magnitude distribution\n");
    if plots {
        let _ = writeln!(m, "![CCDF](magnitudes_ccdf.png)\n");
    }
    // The measurement-aware fit uses every spike above the detector floor, so it often exists
    // where the naive fit above the completeness threshold has too few magnitudes.
    let mut fits = Vec::new();
    if let Some(mag) = &a.magnitudes {
        fits.push(("truncated power law (naive)", &mag.truncated_power_law));
        if let Some(e) = &mag.efficiency_aware {
            fits.push(("efficiency-aware TPL", e));
        }
    }
    if let Some(e) = &a.measured_fit {
        fits.push(("measurement-aware TPL", &e.fit));
    }
    if let Some(intervals) = fits.first().map(|(_, f)| f.ci_method.clone()) {
        let _ = writeln!(m, "| fit | n | x ≥ | α [95 % CI] | xc [95 % CI] | KS D (p) | log L |");
        let _ = writeln!(m, "| --- | --- | --- | --- | --- | --- | --- |");
        for (name, f) in fits {
            let _ = writeln!(
                m,
                "| {name} | {} | {} | {} [{}, {}] | {} [{}, {}] | {} ({}) | {} |",
                f.n,
                num(f.x_min),
                num(f.alpha),
                num(f.alpha_ci[0]),
                num(f.alpha_ci[1]),
                num(f.xc),
                num(f.xc_ci[0]),
                num(f.xc_ci[1]),
                num(f.ks_distance),
                num(f.ks_p_value),
                num(f.log_likelihood)
            );
        }
        let _ = writeln!(m, "\nIntervals: {}.", intervals);
    }
    if let Some(e) = &a.measured_fit {
        let _ = writeln!(
            m,
            "Measurement-aware model: {}; mean peak bias {}, corr(α, ln xc) = {}. Its KS distance compares \
             reported magnitudes with the model's distribution of reported magnitudes.",
            e.model.source,
            num(e.peak_bias),
            num(e.alpha_ln_xc_correlation)
        );
    }
    if let Some(mag) = &a.magnitudes {
        let _ = writeln!(
            m,
            "Pure power law: α = {} ± {}; exponential: λ = {}.\n",
            num(mag.power_law.alpha),
            num(mag.power_law.alpha_se),
            num(mag.exponential.rate)
        );
        let _ = writeln!(m, "| comparison | R | normalised R | p | favours |\n| --- | --- | --- | --- | --- |");
        for (name, lr) in [
            ("TPL vs power law (nested, χ²₁)", &mag.tpl_vs_power_law),
            ("TPL vs exponential (Vuong)", &mag.tpl_vs_exponential),
        ] {
            let fav = match lr.favours.as_str() {
                "first" => "TPL",
                "second" => "alternative",
                _ => "neither",
            };
            let _ = writeln!(
                m,
                "| {name} | {} | {} | {} | {fav} |",
                num(lr.log_ratio),
                num(lr.normalized),
                num(lr.p_value)
            );
        }
    }
    let _ = writeln!(m, "\nLog-binned histogram of |Δρ/ρ|:\n\n| bin | count | density |\n| --- | --- | --- |");
    for (i, c) in a.histogram.counts.iter().enumerate() {
        let _ = writeln!(
            m,
            "| {}–{} | {c} | {} |",
            num(a.histogram.edges[i]),
            num(a.histogram.edges[i + 1]),
            num(a.histogram.density[i])
        );
    }
    let _ = writeln!(m, "\n## Waiting times between like events\n");
    if plots {
        let _ = writeln!(m, "![waiting times](waiting_times.png)\n");
    }
    let _ = writeln!(
        m,
        "| segment | sign | n | rate (1/s) [95 % CI] | mean (s) | KS D (p) |\n| --- | --- | --- | --- | --- | --- |"
    );
    for w in &a.waiting_times {
        let _ = writeln!(
            m,
            "| {} | {}→{} | {} | {} [{}, {}] | {} | {} ({}) |",
            w.segment,
            w.sign,
            w.sign,
            w.waits_s.len(),
            num(w.rate_per_s),
            num(w.rate_ci_per_s[0]),
            num(w.rate_ci_per_s[1]),
            num(w.mean_s),
            num(w.ks_distance),
            num(w.ks_p_value)
        );
    }
    let _ = writeln!(m, "\n## p − n per segment\n");
    if plots {
        let _ = writeln!(m, "![p − n](p_minus_n.png)\n");
    }
    let _ = writeln!(m, "| segment | p | n | p − n | σ | z |\n| --- | --- | --- | --- | --- | --- |");
    for b in &a.sign_balance {
        let _ =
            writeln!(m, "| {} | {} | {} | {} | {} | {} |", b.segment, b.p, b.n, b.difference, num(b.sigma), num(b.z));
    }
    let _ = writeln!(m, "\n## Pop-ins\n");
    let p = &a.popins;
    let _ = writeln!(
        m,
        "{} pop-ins, {} with a linked spike. Pearson r (log-log) = {}, slope of ln|Δρ/ρ| on ln(Δh/H0) = {}, Δρ/ρ per unit strain jump = {}.\n",
        p.popins.len(),
        p.n_pairs,
        num(p.pearson_r_log),
        num(p.log_slope),
        num(p.linear_slope)
    );
    if !p.popins.is_empty() {
        let _ = writeln!(m, "| onset (s) | Δh (nm) | Δh/H0 | Δρ/ρ | duration (ms) | stress (MPa) | segment |");
        let _ = writeln!(m, "| --- | --- | --- | --- | --- | --- | --- |");
        for q in &p.popins {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} | {} | {} |",
                num(q.onset_time_s),
                num(q.jump_nm),
                num(q.strain_jump),
                num(q.delta_rho),
                num(q.duration_s * 1e3),
                num(q.stress_mpa),
                q.segment
            );
        }
    }
    let g = &a.activation_energy;
    let _ = writeln!(
        m,
        "\n## Activation energy\n\nΔG = kT ln(2ω t_R) = **{} eV** with t_R = median spike duration {} ms ({} spikes), ω = {} /s, T = {} K.",
        num(g.delta_g_ev),
        num(g.median_duration_s * 1e3),
        g.n_spikes,
        num(g.omega_per_s),
        num(g.temperature_k)
    );
    if let Some(s) = &a.score {
        let _ = writeln!(m, "\n## Score against ground truth\n\n{}", score_markdown(s));
    }
    if let Some(f) = &a.fit_vs_truth {
        let _ = writeln!(
            m,
            "\nFitted vs true: naive α = {} (true {}, CI covers: {}), xc = {} (true {}, within ×2: {}); efficiency-aware α = {}, xc = {}; measurement-aware α = {} (CI covers: {}), xc = {} (within ×2: {}).",
            num(f.alpha),
            num(f.true_alpha),
            f.alpha_ci_covers,
            num(f.xc),
            num(f.true_xc),
            f.xc_within_factor_2,
            f.alpha_efficiency_aware.map_or("—".into(), num),
            f.xc_efficiency_aware.map_or("—".into(), num),
            f.alpha_measured.map_or("—".into(), num),
            f.alpha_measured_ci_covers.map_or("—".into(), |b| b.to_string()),
            f.xc_measured.map_or("—".into(), num),
            f.xc_measured_within_factor_2.map_or("—".into(), |b| b.to_string())
        );
    }
    let _ = writeln!(
        m,
        "\n## Events\n\n{} events (spikes and pop-ins) are listed in the JSON output (`--json`).",
        a.events.len()
    );
    m
}

/// The Markdown summary of a campaign (groups by peak stress).
pub fn campaign_markdown(c: &CampaignAnalysis) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "# Campaign by peak stress\n");
    let _ = writeln!(
        m,
        "| peak stress (MPa) | files | spikes | naive α [CI] | naive xc [CI] | measurement-aware α [CI] | measurement-aware xc [CI] | p−n load | p−n hold | p−n unload |"
    );
    let _ = writeln!(m, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for g in &c.groups {
        let fit = g.magnitudes.as_ref().map(|mm| &mm.truncated_power_law);
        let meas = g.measured_fit.as_ref().map(|mm| &mm.fit);
        let bal =
            |i: usize| g.sign_balance.get(i).map_or("—".into(), |b| format!("{} ± {}", b.difference, num(b.sigma)));
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            num(g.peak_stress_mpa),
            g.files.len(),
            g.n_spikes,
            fit.map_or("—".into(), |f| format!("{} [{}, {}]", num(f.alpha), num(f.alpha_ci[0]), num(f.alpha_ci[1]))),
            fit.map_or("—".into(), |f| format!("{} [{}, {}]", num(f.xc), num(f.xc_ci[0]), num(f.xc_ci[1]))),
            meas.map_or("—".into(), |f| format!("{} [{}, {}]", num(f.alpha), num(f.alpha_ci[0]), num(f.alpha_ci[1]))),
            meas.map_or("—".into(), |f| format!("{} [{}, {}]", num(f.xc), num(f.xc_ci[0]), num(f.xc_ci[1]))),
            bal(0),
            bal(1),
            bal(2)
        );
    }
    m
}

/// Write text to a file, naming the file in the error.
pub fn write_text(path: &Path, text: &str) -> Result<(), AnalysisError> {
    std::fs::write(path, text)
        .map_err(|e| AnalysisError::Write { path: path.display().to_string(), message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{analyze_run, AnalysisOptions};

    #[test]
    fn report_lists_the_numbers_and_links_plots() {
        let input = crate::run::tests::synthetic_input(6);
        let a = analyze_run(&input, &AnalysisOptions::default());
        let md = run_markdown(&a, true);
        for needle in
            ["magnitudes_ccdf.png", "truncated power law (naive)", "measurement-aware TPL", "p − n", "ΔG", "Vuong"]
        {
            assert!(md.contains(needle), "missing {needle}");
        }
        let alpha = a.magnitudes.as_ref().expect("fit").truncated_power_law.alpha;
        assert!(md.contains(&num(alpha)));
    }

    #[test]
    fn measurement_aware_fit_is_reported_when_the_naive_fit_has_too_few_magnitudes() {
        // A single short run: too few spikes above the completeness threshold for the naive fit,
        // enough above the detector floor for the measurement-aware one.
        let input = crate::run::tests::measured_synthetic_input(5);
        let opts = AnalysisOptions { x_min_override: Some(0.05), ..Default::default() };
        let a = analyze_run(&input, &opts);
        assert!(a.magnitudes.is_none(), "naive fit should fail above 0.05");
        let f = &a.measured_fit.as_ref().expect("measured fit").fit;
        let md = run_markdown(&a, false);
        assert!(md.contains("measurement-aware TPL"), "{md}");
        assert!(md.contains(&num(f.alpha)), "{md}");
        assert!(!md.contains("Vuong"), "no comparison without the naive fit");
    }
}
