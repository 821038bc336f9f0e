//! A campaign against peak stress: each stress group's headline α and xc with their 95 %
//! intervals and its p − n per segment per run, next to the paper's values — the data of the
//! campaign figure (`plots::write_campaign_plots`) and of its table in campaign.md.

use serde::{Deserialize, Serialize};

use crate::run::CampaignAnalysis;

/// The paper's α (Yang et al., Sci. Rep. 2014; shared/science.md): 1.5 ± 0.1.
pub const PAPER_ALPHA: f64 = 1.5;
/// The ± on [`PAPER_ALPHA`].
pub const PAPER_ALPHA_PM: f64 = 0.1;
/// The paper's cutoff xc ≈ 10⁻³.
pub const PAPER_XC: f64 = 1e-3;
/// How figures and reports name the paper.
pub const PAPER_LABEL: &str = "Yang et al. 2014";

/// The paper's values drawn next to a campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaperValues {
    /// Where they come from.
    pub source: String,
    /// α.
    pub alpha: f64,
    /// ± on α.
    pub alpha_pm: f64,
    /// xc.
    pub xc: f64,
    /// The sign balance per segment, in words (the paper gives no numbers).
    pub p_minus_n: String,
}

impl Default for PaperValues {
    fn default() -> Self {
        Self {
            source: PAPER_LABEL.into(),
            alpha: PAPER_ALPHA,
            alpha_pm: PAPER_ALPHA_PM,
            xc: PAPER_XC,
            p_minus_n: "p > n loading, p ≈ n hold, p < n unloading".into(),
        }
    }
}

/// p − n of one segment per run of a stress group (the group's pooled count over its runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentBalancePerRun {
    /// "load", "hold" or "unload".
    pub segment: String,
    /// (p − n) / runs.
    pub p_minus_n: f64,
    /// √(p + n) / runs (Poisson).
    pub sigma: f64,
}

/// One stress group as the figure plots it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StressPoint {
    /// Peak stress of the group (rounded to 10 MPa), MPa.
    pub peak_stress_mpa: f64,
    /// Runs pooled.
    pub runs: usize,
    /// The group's headline α (its `headline.alpha`).
    pub alpha: f64,
    /// Its 95 % interval.
    pub alpha_ci: [f64; 2],
    /// The group's headline xc.
    pub xc: f64,
    /// Its 95 % interval (an open end is `null`).
    pub xc_ci: [f64; 2],
    /// Whether the group's data constrain α (`headline.constrained`).
    pub constrained: bool,
    /// Magnitudes in the headline fit (0: no fit, nothing to plot for α and xc).
    pub n: usize,
    /// p − n per run for load, hold and unload.
    pub p_minus_n_per_run: Vec<SegmentBalancePerRun>,
}

/// A campaign against peak stress, with the paper's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StressSeries {
    /// The paper's values.
    pub paper: PaperValues,
    /// One point per stress group, in increasing stress.
    pub points: Vec<StressPoint>,
}

/// The figure's data from a campaign: headlines as they are, p − n divided by the group's runs
/// so groups with different numbers of runs compare.
pub fn stress_series(c: &CampaignAnalysis) -> StressSeries {
    let points = c
        .groups
        .iter()
        .map(|g| {
            let runs = g.files.len().max(1);
            let r = runs as f64;
            StressPoint {
                peak_stress_mpa: g.peak_stress_mpa,
                runs: g.files.len(),
                alpha: g.headline.alpha,
                alpha_ci: g.headline.alpha_ci,
                xc: g.headline.xc,
                xc_ci: g.headline.xc_ci,
                constrained: g.headline.constrained,
                n: g.headline.n,
                p_minus_n_per_run: g
                    .sign_balance
                    .iter()
                    .map(|b| SegmentBalancePerRun {
                        segment: b.segment.clone(),
                        p_minus_n: b.difference as f64 / r,
                        sigma: b.sigma / r,
                    })
                    .collect(),
            }
        })
        .collect();
    StressSeries { paper: PaperValues::default(), points }
}
