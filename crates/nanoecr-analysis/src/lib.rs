//! # nanoecr-analysis
//!
//! Offline statistics of NanoECR runs, after Yang et al. (Sci. Rep. 2014): the truncated
//! power-law distribution of spike magnitudes, waiting times between like events, the p − n
//! balance per load segment, pop-in strain vs resistivity, the activation energy ΔG, scoring of
//! detection and fits against simulator ground truth, plots and Markdown reports.
//!
//! Layout — pure functions first, thin I/O last:
//! - [`special`]: upper incomplete gamma for any shape, Kolmogorov distribution.
//! - [`optimize`]: golden-section and Nelder–Mead maximisers.
//! - [`powerlaw`]: truncated power-law / power-law / exponential MLE, profile-likelihood intervals,
//!   likelihood-ratio tests, KS distance, efficiency-aware fit, log histograms and CCDFs.
//! - [`measured`]: the measurement-aware fit — the truncated power law seen through the detector's
//!   noise, max-of-samples peak and floor ([`measured::MeasurementModel`]).
//! - [`events`]: waiting times, p − n per segment, pop-in correlation, ΔG.
//! - [`scoring`]: matching detected to true events, recall/precision/sign/onset/magnitude,
//!   detection-efficiency curve.
//! - [`io`]: [`io::load_run`], a run file (via `nanoecr-store`) into a [`RunInput`], optionally re-detected.
//! - [`run`]: one run's analysis from columns and events ([`RunInput`]), campaign grouping,
//!   JSON-ready result types.
//! - [`plots`]: PNG and SVG figures with a bundled DejaVu Sans font.
//! - [`stress`]: a campaign against peak stress (α, xc, p − n per run) with the paper's values.
//! - [`report`]: Markdown reports.

pub mod events;
pub mod io;
pub mod measured;
pub mod optimize;
pub mod plots;
pub mod powerlaw;
pub mod report;
pub mod run;
pub mod scoring;
pub mod special;
pub mod stress;

pub use powerlaw::{EfficiencyCurve, MagnitudeAnalysis, TruncatedPowerLawFit};
pub use run::{analyze_campaign, analyze_run, AnalysisOptions, CampaignAnalysis, RunAnalysis, RunInput};

/// Errors of the analysis: bad input or too little data for a statistic, and file/plot I/O.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// An argument or data set is outside what the statistic accepts.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Not enough events for a statistic.
    #[error("too few {what}: need {needed}, got {got}")]
    TooFewEvents {
        /// Minimum needed.
        needed: usize,
        /// Number available.
        got: usize,
        /// What was counted.
        what: String,
    },
    /// Reading a run file failed.
    #[error("reading {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// Writing an output (plot, report) failed.
    #[error("writing {path}: {message}")]
    Write {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}
