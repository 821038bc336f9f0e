//! Figures of one run, each as PNG and SVG: h and Δρ/ρ vs time with events marked, zooms on the
//! largest event of each segment, the magnitude CCDF (log-log) with the fitted truncated power
//! law, waiting-time histograms with the exponential fit, and p − n bars per segment.
//!
//! plotters is built without its system-font feature (no fontconfig), so DejaVu Sans ships in
//! `assets/` (licence in `assets/DejaVuSans-LICENSE.txt`) and is registered before any drawing:
//! without a registered font, drawing text panics.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::powerlaw::TruncatedPowerLawFit;
use crate::run::{RunAnalysis, RunInput};
use crate::AnalysisError;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

/// Register the bundled font under the family names plotters asks for.
fn register_font() {
    REGISTER.call_once(|| {
        for family in ["sans-serif", "serif", "monospace"] {
            for style in [FontStyle::Normal, FontStyle::Bold] {
                // The bytes are a valid TTF compiled in; a failure would leave text undrawable,
                // which the drawing calls then report as errors rather than panics.
                let _ = plotters::style::register_font(family, style, FONT);
            }
        }
    });
}

const W: u32 = 1200;
const H: u32 = 700;
const P_COLOR: RGBColor = RGBColor(200, 30, 30);
const N_COLOR: RGBColor = RGBColor(30, 80, 200);

type DrawResult = Result<(), String>;

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// Draw one figure with a generic `fn(&DrawingArea<DB, Shift>, args…) -> DrawResult` to both
/// `<stem>.png` and `<stem>.svg`, returning the two paths.
macro_rules! emit {
    ($dir:expr, $stem:expr, $size:expr, $draw:ident $(, $arg:expr)*) => {{
        let png = $dir.join(format!("{}.png", $stem));
        let svg = $dir.join(format!("{}.svg", $stem));
        let werr = |p: &Path, m: String| AnalysisError::Write { path: p.display().to_string(), message: m };
        {
            let root = BitMapBackend::new(&png, $size).into_drawing_area();
            root.fill(&WHITE).map_err(|e| werr(&png, err(e)))?;
            $draw(&root $(, $arg)*).map_err(|m| werr(&png, m))?;
            root.present().map_err(|e| werr(&png, err(e)))?;
        }
        {
            let root = SVGBackend::new(&svg, $size).into_drawing_area();
            root.fill(&WHITE).map_err(|e| werr(&svg, err(e)))?;
            $draw(&root $(, $arg)*).map_err(|m| werr(&svg, m))?;
            root.present().map_err(|e| werr(&svg, err(e)))?;
        }
        vec![png, svg]
    }};
}

/// Min/max decimation into `buckets` so ms-long spikes stay visible in a 30 s trace.
fn decimate(t: &[f64], y: &[f64], lo: f64, hi: f64, buckets: usize) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(buckets * 2);
    let width = (hi - lo) / buckets as f64;
    // (bucket, lowest point, highest point) of the bucket being filled.
    type Bucket = (usize, (f64, f64), (f64, f64));
    let mut cur: Option<Bucket> = None;
    for (&ti, &yi) in t.iter().zip(y) {
        if !(ti >= lo && ti <= hi && yi.is_finite()) {
            continue;
        }
        let b = ((ti - lo) / width) as usize;
        match cur {
            Some((cb, mn, mx)) if cb == b => {
                cur = Some((cb, if yi < mn.1 { (ti, yi) } else { mn }, if yi > mx.1 { (ti, yi) } else { mx }));
            }
            _ => {
                if let Some((_, mn, mx)) = cur {
                    if mn.0 <= mx.0 {
                        out.extend([mn, mx]);
                    } else {
                        out.extend([mx, mn]);
                    }
                }
                cur = Some((b, (ti, yi), (ti, yi)));
            }
        }
    }
    if let Some((_, mn, mx)) = cur {
        if mn.0 <= mx.0 {
            out.extend([mn, mx]);
        } else {
            out.extend([mx, mn]);
        }
    }
    out
}

fn range_of(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for x in v.filter(|x| x.is_finite()) {
        lo = lo.min(x);
        hi = hi.max(x);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 1.0, hi + 1.0);
    }
    let pad = 0.05 * (hi - lo);
    (lo - pad, hi + pad)
}

fn event_color(e: &crate::run::EventJson) -> RGBColor {
    if e.kind == "popin" {
        BLACK
    } else if e.sign == "p" {
        P_COLOR
    } else {
        N_COLOR
    }
}

/// One panel of a series vs time between t0 and t1, events marked at their peak.
#[allow(clippy::too_many_arguments)]
fn series_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    input: &RunInput,
    a: &RunAnalysis,
    y: &[f64],
    t0: f64,
    t1: f64,
    y_label: &str,
    caption: &str,
    mark_delta_rho: bool,
) -> DrawResult {
    let pts = decimate(&input.time_s, y, t0, t1, 3000);
    let (ylo, yhi) = range_of(pts.iter().map(|p| p.1));
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(8)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(t0..t1, ylo..yhi)
        .map_err(err)?;
    chart.configure_mesh().x_desc("time (s)").y_desc(y_label).draw().map_err(err)?;
    chart.draw_series(LineSeries::new(pts, BLACK.mix(0.7))).map_err(err)?;
    let marks: Vec<(f64, f64, RGBColor)> = a
        .events
        .iter()
        .filter(|e| e.peak_time >= t0 && e.peak_time <= t1)
        .map(|e| {
            let yv = if mark_delta_rho && e.kind == "spike" { e.magnitude } else { yhi - 0.04 * (yhi - ylo) };
            (e.peak_time, yv.clamp(ylo, yhi), event_color(e))
        })
        .collect();
    chart.draw_series(marks.into_iter().map(|(x, yv, c)| Circle::new((x, yv), 4, c.stroke_width(2)))).map_err(err)?;
    Ok(())
}

fn draw_timeseries<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, input: &RunInput, a: &RunAnalysis) -> DrawResult {
    let (t0, t1) = range_of(input.time_s.iter().copied());
    let panels = root.split_evenly((2, 1));
    series_panel(&panels[0], input, a, &input.disp_nm, t0, t1, "h (nm)", "displacement (● pop-ins)", false)?;
    series_panel(&panels[1], input, a, &input.delta_rho, t0, t1, "Δρ/ρ", "Δρ/ρ (● p red, n blue, pop-in black)", true)
}

fn draw_zooms<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, input: &RunInput, a: &RunAnalysis) -> DrawResult {
    let panels = root.split_evenly((3, 1));
    for (panel, seg) in panels.iter().zip(["load", "hold", "unload"]) {
        let best = a
            .events
            .iter()
            .filter(|e| e.segment == seg && e.kind == "spike")
            .max_by(|x, y| x.magnitude.abs().total_cmp(&y.magnitude.abs()));
        let centre = match best {
            Some(e) => e.peak_time,
            None => {
                // No event: show the middle of the segment.
                let code = match seg {
                    "load" => 1,
                    "hold" => 2,
                    _ => 3,
                };
                let ts: Vec<f64> =
                    input.time_s.iter().zip(&input.segment).filter(|(_, &s)| s == code).map(|(t, _)| *t).collect();
                if ts.is_empty() {
                    continue;
                }
                0.5 * (ts[0] + ts[ts.len() - 1])
            }
        };
        let caption = format!("{seg}: 0.2 s around the largest spike");
        series_panel(panel, input, a, &input.delta_rho, centre - 0.1, centre + 0.1, "Δρ/ρ", &caption, true)?;
    }
    Ok(())
}

fn draw_ccdf<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, a: &RunAnalysis) -> DrawResult {
    let pts = a.ccdf();
    if pts.is_empty() {
        root.draw(&Text::new("no spikes", (50, 50), ("sans-serif", 24))).map_err(err)?;
        return Ok(());
    }
    let x_hi = pts.iter().map(|p| p.0).fold(1e-3, f64::max) * 1.5;
    let y_lo = (1.0 / pts.len() as f64) * 0.5;
    let mut chart = ChartBuilder::on(root)
        .caption("CCDF of |Δρ/ρ| with fits (log-log)", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((1e-4..x_hi).log_scale(), (y_lo..1.0f64).log_scale())
        .map_err(err)?;
    chart.configure_mesh().x_desc("|Δρ/ρ|").y_desc("P(X ≥ x)").draw().map_err(err)?;
    chart
        .draw_series(pts.iter().map(|&(x, y)| Circle::new((x, y), 2, BLACK.mix(0.6).filled())))
        .map_err(err)?
        .label("data")
        .legend(|(x, y)| Circle::new((x, y), 3, BLACK.filled()));
    let n_all = pts.len() as f64;
    let curve = |fit: &TruncatedPowerLawFit, observed: bool| -> Vec<(f64, f64)> {
        // The fitted CCDF above x_min, scaled by the data fraction above x_min so it overlays.
        let frac = pts.iter().filter(|p| p.0 >= fit.x_min).count() as f64 / n_all;
        (0..200)
            .map(|i| {
                let x = fit.x_min * (x_hi / fit.x_min).powf(i as f64 / 199.0);
                let s = 1.0 - crate::powerlaw::tpl_cdf(x, fit.alpha, fit.xc, fit.x_min);
                let _ = observed;
                (x, (frac * s).max(y_lo))
            })
            .collect()
    };
    if let Some(t) = &a.diagnostics.naive {
        chart
            .draw_series(LineSeries::new(curve(t, false), P_COLOR.stroke_width(2)))
            .map_err(err)?
            .label(format!("TPL α = {:.2}, xc = {:.2e} (x ≥ {:.1e})", t.alpha, t.xc, t.x_min))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], P_COLOR));
        if let Some(e) = &a.diagnostics.efficiency_aware {
            chart
                .draw_series(LineSeries::new(curve(e, true), N_COLOR.stroke_width(2)))
                .map_err(err)?
                .label(format!("efficiency-aware α = {:.2}, xc = {:.2e} (true distribution)", e.alpha, e.xc))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], N_COLOR));
        }
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(err)?;
    Ok(())
}

fn draw_waiting<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, a: &RunAnalysis) -> DrawResult {
    let panels = root.split_evenly((1, 2));
    for (panel, sign) in panels.iter().zip(["p", "n"]) {
        let Some(w) = a.waiting_times.iter().find(|w| w.segment == "all" && w.sign == sign) else {
            continue;
        };
        let t_max = w.waits_s.iter().copied().fold(0.0, f64::max).max(1e-3);
        let nb = 20usize;
        let width = t_max / nb as f64;
        let mut counts = vec![0u32; nb];
        for &t in &w.waits_s {
            counts[((t / width) as usize).min(nb - 1)] += 1;
        }
        let n = w.waits_s.len().max(1) as f64;
        let density: Vec<f64> = counts.iter().map(|&c| c as f64 / (n * width)).collect();
        let y_hi = density.iter().copied().fold(w.rate_per_s.max(0.0), f64::max).max(1e-3) * 1.1;
        let caption = format!(
            "{sign}→{sign} waiting times: λ = {:.2} /s [{:.2}, {:.2}]",
            w.rate_per_s, w.rate_ci_per_s[0], w.rate_ci_per_s[1]
        );
        let mut chart = ChartBuilder::on(panel)
            .caption(caption, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..t_max, 0.0..y_hi)
            .map_err(err)?;
        chart.configure_mesh().x_desc("Δt (s)").y_desc("density (1/s)").draw().map_err(err)?;
        let c = if sign == "p" { P_COLOR } else { N_COLOR };
        chart
            .draw_series(density.iter().enumerate().map(|(i, &d)| {
                Rectangle::new([(i as f64 * width, 0.0), ((i + 1) as f64 * width, d)], c.mix(0.4).filled())
            }))
            .map_err(err)?;
        if w.rate_per_s.is_finite() {
            let line: Vec<(f64, f64)> = (0..200)
                .map(|i| t_max * i as f64 / 199.0)
                .map(|t| (t, w.rate_per_s * (-w.rate_per_s * t).exp()))
                .collect();
            chart.draw_series(LineSeries::new(line, BLACK.stroke_width(2))).map_err(err)?;
        }
    }
    Ok(())
}

fn draw_balance<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, a: &RunAnalysis) -> DrawResult {
    let b = &a.sign_balance;
    let lim = b.iter().map(|s| s.difference.abs() as f64 + 2.0 * s.sigma).fold(3.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(root)
        .caption("p − n per segment (± √(p + n))", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5..(b.len() as f64 - 0.5), -lim..lim)
        .map_err(err)?;
    let names: Vec<String> = b.iter().map(|s| s.segment.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(b.len())
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("p − n")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(b.iter().enumerate().map(|(i, s)| {
            let c = if s.difference >= 0 { P_COLOR } else { N_COLOR };
            Rectangle::new([(i as f64 - 0.3, 0.0), (i as f64 + 0.3, s.difference as f64)], c.mix(0.6).filled())
        }))
        .map_err(err)?;
    chart
        .draw_series(b.iter().enumerate().map(|(i, s)| {
            let d = s.difference as f64;
            PathElement::new(vec![(i as f64, d - s.sigma), (i as f64, d + s.sigma)], BLACK.stroke_width(2))
        }))
        .map_err(err)?;
    Ok(())
}

/// Write every figure of one run into `dir` (created if missing). Returns the files written.
pub fn write_run_plots(input: &RunInput, a: &RunAnalysis, dir: &Path) -> Result<Vec<PathBuf>, AnalysisError> {
    register_font();
    std::fs::create_dir_all(dir)
        .map_err(|e| AnalysisError::Write { path: dir.display().to_string(), message: e.to_string() })?;
    let mut files = Vec::new();
    files.extend(emit!(dir, "timeseries", (W, H), draw_timeseries, input, a));
    files.extend(emit!(dir, "zooms", (W, 900), draw_zooms, input, a));
    files.extend(emit!(dir, "magnitudes_ccdf", (900, 700), draw_ccdf, a));
    files.extend(emit!(dir, "waiting_times", (W, 500), draw_waiting, a));
    files.extend(emit!(dir, "p_minus_n", (700, 500), draw_balance, a));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{analyze_run, AnalysisOptions};

    #[test]
    fn plots_are_valid_png_and_svg() {
        let input = crate::run::tests::synthetic_input(4);
        let a = analyze_run(&input, &AnalysisOptions::default());
        let dir = tempfile::tempdir().expect("tempdir");
        let files = write_run_plots(&input, &a, dir.path()).expect("plots");
        assert_eq!(files.len(), 10);
        for f in files {
            let bytes = std::fs::read(&f).expect("read");
            assert!(bytes.len() > 1000, "{} is {} bytes", f.display(), bytes.len());
            if f.extension().is_some_and(|e| e == "png") {
                assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", f.display());
            } else {
                let text = String::from_utf8_lossy(&bytes);
                assert!(text.contains("<svg"), "{}", f.display());
                assert!(text.contains("<text"), "{} has no text", f.display());
            }
        }
    }
}
