//! Figures of one run, each as PNG and SVG: h and Δρ/ρ vs time with events marked, zooms on the
//! largest event of each segment, the magnitude CCDF (log-log) with the fitted truncated power
//! law, waiting-time histograms with the exponential fit, and p − n bars per segment; for a
//! campaign, α, xc and p − n against peak stress next to the paper's values
//! ([`write_campaign_plots`]).
//!
//! Conventions a reviewer expects: log axes tick and label every decade (10⁻⁴, 10⁻³, …) with
//! light lines at 2–9 × each; fit curves span their fitted range only; legends sit in a strip of
//! their own beside or below the chart, never over data; every axis names its unit.
//!
//! plotters is built without its system-font feature (no fontconfig), so DejaVu Sans ships in
//! `assets/` (licence in `assets/DejaVuSans-LICENSE.txt`) and is registered before any drawing:
//! without a registered font, drawing text panics.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use plotters::coord::combinators::{BindKeyPoints, LogCoord, WithKeyPoints};

use crate::powerlaw::TruncatedPowerLawFit;
use crate::run::{RunAnalysis, RunInput};
use crate::stress::StressSeries;
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
const FIT_COLOR: RGBColor = RGBColor(20, 130, 60);
const HOLD_COLOR: RGBColor = RGBColor(90, 90, 90);
const PAPER_COLOR: RGBColor = RGBColor(230, 150, 20);

type DrawResult = Result<(), String>;

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// [lo, hi] widened to whole decades, at least one decade wide, so both ends carry a label.
fn decade_bounds(lo: f64, hi: f64) -> (f64, f64) {
    let a = 10f64.powf(lo.log10().floor());
    let b = 10f64.powf(hi.log10().ceil());
    (a, if b > a { b } else { 10.0 * a })
}

/// The decades 10^k of [lo, hi] widened by [`decade_bounds`] (the labelled ticks), the light
/// points 2–9 × 10^k between them, and the widened range.
fn decades(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>, (f64, f64)) {
    let (lo, hi) = decade_bounds(lo, hi);
    let k0 = lo.log10().round() as i32;
    let k1 = hi.log10().round() as i32;
    let bold: Vec<f64> = (k0..=k1).map(|k| 10f64.powi(k)).collect();
    let light = (k0..k1).flat_map(|k| (2..=9).map(move |m| m as f64 * 10f64.powi(k))).collect();
    (bold, light, (lo, hi))
}

/// A log range over [lo, hi] widened to whole decades, with the decades as ticks.
fn log_axis(lo: f64, hi: f64) -> WithKeyPoints<LogCoord<f64>> {
    let (bold, light, (lo, hi)) = decades(lo, hi);
    (lo..hi).log_scale().with_key_points(bold).with_light_points(light)
}

/// "10⁻³" for 1e-3; other values in short scientific notation.
fn decade_label(v: f64) -> String {
    let k = v.log10().round();
    if (v / 10f64.powf(k) - 1.0).abs() > 1e-9 {
        return format!("{v:.1e}");
    }
    let sup: String = format!("{}", k as i32)
        .chars()
        .map(|c| match c {
            '-' => '⁻',
            '0' => '⁰',
            '1' => '¹',
            '2' => '²',
            '3' => '³',
            '4' => '⁴',
            '5' => '⁵',
            '6' => '⁶',
            '7' => '⁷',
            '8' => '⁸',
            _ => '⁹',
        })
        .collect();
    format!("10{sup}")
}

/// How a legend entry is drawn.
#[derive(Clone, Copy)]
enum Mark {
    Dot(RGBColor),
    Ring(RGBColor),
    Line(RGBColor),
    Dashed(RGBColor),
    Band(RGBColor),
}

/// A legend in an area of its own (beside or below a chart), one entry per line.
fn draw_legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, entries: &[(Mark, String)]) -> DrawResult {
    let font = ("sans-serif", 15).into_font();
    for (i, (mark, text)) in entries.iter().enumerate() {
        let y = 20 + 24 * i as i32;
        let x = 10;
        match *mark {
            Mark::Dot(c) => area.draw(&Circle::new((x + 12, y), 4, c.filled())).map_err(err)?,
            Mark::Ring(c) => area.draw(&Circle::new((x + 12, y), 4, c.stroke_width(2))).map_err(err)?,
            Mark::Line(c) => area.draw(&PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(2))).map_err(err)?,
            Mark::Dashed(c) => {
                for j in 0..3 {
                    area.draw(&PathElement::new(vec![(x + 9 * j, y), (x + 9 * j + 5, y)], c.stroke_width(2)))
                        .map_err(err)?;
                }
            }
            Mark::Band(c) => {
                area.draw(&Rectangle::new([(x, y - 6), (x + 24, y + 6)], c.mix(0.3).filled())).map_err(err)?
            }
        }
        area.draw(&Text::new(text.clone(), (x + 34, y - 8), font.clone())).map_err(err)?;
    }
    Ok(())
}

/// A dashed polyline in data coordinates (plotters 0.3 has no dashed path for every backend).
fn dashed(points: &[(f64, f64)], c: RGBColor) -> Vec<PathElement<(f64, f64)>> {
    points.windows(2).step_by(2).map(|w| PathElement::new(vec![w[0], w[1]], c.stroke_width(2))).collect()
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
    // Room for the event strips above and below the trace.
    let (ylo, yhi) = (ylo - 0.06 * (yhi - ylo), yhi + 0.06 * (yhi - ylo));
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(8)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(t0..t1, ylo..yhi)
        .map_err(err)?;
    chart.configure_mesh().light_line_style(BLACK.mix(0.04)).x_desc("time (s)").y_desc(y_label).draw().map_err(err)?;
    chart.draw_series(LineSeries::new(pts, BLACK.mix(0.7))).map_err(err)?;
    // Events in strips along the top (p-type, pop-ins) and bottom (n-type) of the panel, where they
    // hide no data: the trace's baseline drifts, so a mark at the spike's own size would not sit
    // on the spike. The displacement panel marks pop-ins only.
    let marks: Vec<(f64, f64, RGBColor)> = a
        .events
        .iter()
        .filter(|e| e.peak_time >= t0 && e.peak_time <= t1 && (mark_delta_rho || e.kind == "popin"))
        .map(|e| {
            let top = e.kind == "popin" || e.sign == "p";
            let yv = if top { yhi - 0.03 * (yhi - ylo) } else { ylo + 0.03 * (yhi - ylo) };
            (e.peak_time, yv, event_color(e))
        })
        .collect();
    chart.draw_series(marks.into_iter().map(|(x, yv, c)| Circle::new((x, yv), 4, c.stroke_width(2)))).map_err(err)?;
    Ok(())
}

fn draw_timeseries<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, input: &RunInput, a: &RunAnalysis) -> DrawResult {
    let (t0, t1) = range_of(input.time_s.iter().copied());
    let panels = root.split_evenly((2, 1));
    series_panel(&panels[0], input, a, &input.disp_nm, t0, t1, "h (nm)", "displacement (○ pop-ins, top)", false)?;
    let caption = "Δρ/ρ (○ p-type spikes red, top; n-type blue, bottom; pop-ins black, top)";
    series_panel(&panels[1], input, a, &input.delta_rho, t0, t1, "Δρ/ρ (dimensionless)", caption, true)
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
        series_panel(
            panel,
            input,
            a,
            &input.delta_rho,
            centre - 0.1,
            centre + 0.1,
            "Δρ/ρ (dimensionless)",
            &caption,
            true,
        )?;
    }
    Ok(())
}

fn draw_ccdf<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, a: &RunAnalysis) -> DrawResult {
    let pts = a.ccdf();
    if pts.is_empty() {
        root.draw(&Text::new("no spikes", (50, 50), ("sans-serif", 24))).map_err(err)?;
        return Ok(());
    }
    let (chart_area, legend_area) = root.split_vertically(root.dim_in_pixel().1 - 100);
    let x_data_lo = pts.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let x_data_hi = pts.iter().map(|p| p.0).fold(0.0, f64::max);
    // Whole decades at both ends, so each end of the axis carries a label.
    let (x_lo, x_hi) = decade_bounds(x_data_lo, x_data_hi * 1.01);
    let y_lo = decade_bounds(0.5 / pts.len() as f64, 1.0).0;
    let mut chart = ChartBuilder::on(&chart_area)
        .caption("Spike magnitudes: complementary CDF with fits", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(45)
        .y_label_area_size(75)
        .build_cartesian_2d(log_axis(x_lo, x_hi), log_axis(y_lo, 1.0))
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(BLACK.mix(0.04))
        .x_desc("|Δρ/ρ| (dimensionless)")
        .y_desc("P(|Δρ/ρ| ≥ x) (fraction of spikes)")
        .x_label_formatter(&|v| decade_label(*v))
        .y_label_formatter(&|v| decade_label(*v))
        .draw()
        .map_err(err)?;
    chart.draw_series(pts.iter().map(|&(x, y)| Circle::new((x, y), 2, BLACK.mix(0.6).filled()))).map_err(err)?;
    let mut legend = vec![(Mark::Dot(BLACK), format!("detected spikes (n = {})", pts.len()))];
    let n_all = pts.len() as f64;
    // The fitted CCDF over the fitted range only (x_min to the largest magnitude), scaled by the
    // share of spikes above x_min so it overlays the data.
    let curve = |fit: &TruncatedPowerLawFit| -> Vec<(f64, f64)> {
        let frac = pts.iter().filter(|p| p.0 >= fit.x_min).count() as f64 / n_all;
        let top = x_data_hi.max(fit.x_min);
        (0..200)
            .map(|i| {
                let x = fit.x_min * (top / fit.x_min).powf(i as f64 / 199.0);
                let s = 1.0 - crate::powerlaw::tpl_cdf(x, fit.alpha, fit.xc, fit.x_min);
                (x, (frac * s).max(y_lo))
            })
            .collect()
    };
    let fit_text = |f: &TruncatedPowerLawFit| {
        format!("α = {:.2}, xc = {}, x ≥ {}", f.alpha, crate::report::sig2(f.xc), crate::report::sig2(f.x_min))
    };
    if let Some(t) = &a.diagnostics.naive {
        chart.draw_series(LineSeries::new(curve(t), P_COLOR.stroke_width(2))).map_err(err)?;
        legend.push((Mark::Line(P_COLOR), format!("naive fit above completeness: {}", fit_text(t))));
    }
    if let Some(e) = &a.diagnostics.efficiency_aware {
        chart.draw_series(LineSeries::new(curve(e), N_COLOR.stroke_width(2))).map_err(err)?;
        legend.push((Mark::Line(N_COLOR), format!("efficiency-aware fit (true-magnitude law): {}", fit_text(e))));
    }
    if let Some(m) = &a.diagnostics.measurement_aware {
        chart.draw_series(dashed(&curve(m), FIT_COLOR)).map_err(err)?;
        let state = if a.headline.constrained { "" } else { ", α not constrained" };
        legend.push((
            Mark::Dashed(FIT_COLOR),
            format!("headline, measurement-aware (true-magnitude law{state}): {}", fit_text(m)),
        ));
    }
    draw_legend(&legend_area, &legend)
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
            "{sign}→{sign} waiting times; line: exponential fit, λ = {:.2} /s [{:.2}, {:.2}]",
            w.rate_per_s, w.rate_ci_per_s[0], w.rate_ci_per_s[1]
        );
        let mut chart = ChartBuilder::on(panel)
            .caption(caption, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..t_max, 0.0..y_hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(BLACK.mix(0.04))
            .x_desc("waiting time Δt (s)")
            .y_desc("probability density (1/s)")
            .draw()
            .map_err(err)?;
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
        .caption("p − n per segment (bars: ± √(p + n), Poisson)", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5..(b.len() as f64 - 0.5), -lim..lim)
        .map_err(err)?;
    let names: Vec<String> = b.iter().map(|s| s.segment.clone()).collect();
    chart
        .configure_mesh()
        .light_line_style(BLACK.mix(0.04))
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
        .x_desc("segment")
        .y_desc("p − n (spikes)")
        .draw()
        .map_err(err)?;
    chart.draw_series(LineSeries::new(vec![(-0.5, 0.0), (b.len() as f64 - 0.5, 0.0)], BLACK.mix(0.5))).map_err(err)?;
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

/// A stress group's point: a black dot when its fit constrains α, else a hollow ring in the
/// "not constrained" colour (white fill under a coloured outline).
fn group_marker(x: f64, y: f64, constrained: bool) -> Vec<Circle<(f64, f64), i32>> {
    if constrained {
        vec![Circle::new((x, y), 5, BLACK.filled())]
    } else {
        vec![Circle::new((x, y), 5, WHITE.filled()), Circle::new((x, y), 5, HOLD_COLOR.stroke_width(2))]
    }
}

/// The value axis an error bar is clipped to: [lo, hi], logarithmic or not.
#[derive(Clone, Copy)]
struct YAxis {
    lo: f64,
    hi: f64,
    log: bool,
}

/// Vertical error bar from `lo` to `hi` at `x`, clipped to the axis; an end past the axis (or
/// open, ∞) gets an arrowhead so a clipped interval does not look closed.
fn error_bar(x: f64, lo: f64, hi: f64, axis: YAxis, dx: f64, c: RGBColor) -> Vec<PathElement<(f64, f64)>> {
    let YAxis { lo: y0, hi: y1, log } = axis;
    let (l, h) = (lo.max(y0), if hi.is_finite() { hi.min(y1) } else { y1 });
    let mut v = vec![PathElement::new(vec![(x, l), (x, h)], c.stroke_width(2))];
    let tip = |y: f64, up: bool| {
        let f = if log { (y1 / y0).powf(0.03) } else { 0.03 * (y1 - y0) };
        let back = match (log, up) {
            (true, true) => y / f,
            (true, false) => y * f,
            (false, true) => y - f,
            (false, false) => y + f,
        };
        vec![(x - dx, back), (x, y), (x + dx, back)]
    };
    if lo < y0 {
        v.push(PathElement::new(tip(l, false), c.stroke_width(2)));
    } else {
        v.push(PathElement::new(vec![(x - dx, l), (x + dx, l)], c.stroke_width(2)));
    }
    if hi.is_finite() && hi <= y1 {
        v.push(PathElement::new(vec![(x - dx, h), (x + dx, h)], c.stroke_width(2)));
    } else {
        v.push(PathElement::new(tip(h, true), c.stroke_width(2)));
    }
    v
}

/// α, xc and p − n per run against peak stress, with the paper's values: three panels sharing
/// the stress axis, each with its legend in a strip on the right.
fn draw_campaign<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, series: &StressSeries) -> DrawResult {
    let pts = &series.points;
    let paper = &series.paper;
    let s_hi = pts.iter().map(|p| p.peak_stress_mpa).fold(0.0, f64::max);
    let x_hi = ((s_hi * 1.08) / 250.0).ceil().max(1.0) * 250.0;
    let dx = x_hi / 150.0;
    let (top, rest) = root.split_vertically(40);
    top.draw(&Text::new(
        format!(
            "Campaign against peak stress ({} stress groups, {} runs) next to {}",
            pts.len(),
            pts.iter().map(|p| p.runs).sum::<usize>(),
            paper.source
        ),
        (20, 10),
        ("sans-serif", 20),
    ))
    .map_err(err)?;
    let rows = rest.split_evenly((3, 1));
    let split = |a: &DrawingArea<DB, Shift>| a.split_horizontally(a.dim_in_pixel().0 - 330);
    let fitted: Vec<_> = pts.iter().filter(|p| p.n > 0 && p.alpha.is_finite()).collect();

    // α with its 95 % interval; the paper's 1.5 ± 0.1 as a band.
    let (area, legend_area) = split(&rows[0]);
    // Every estimate is on the axis (a marker pinned to the edge would lie), and every
    // constrained interval; unconstrained intervals may run off it (arrows).
    let a_lo = fitted
        .iter()
        .filter(|p| p.constrained)
        .map(|p| p.alpha_ci[0])
        .chain(fitted.iter().map(|p| p.alpha - 0.1))
        .fold(paper.alpha - 0.5, f64::min)
        .max(-1.0);
    let a_hi = fitted
        .iter()
        .filter(|p| p.constrained)
        .map(|p| p.alpha_ci[1])
        .chain(fitted.iter().map(|p| p.alpha + 0.1))
        .fold(paper.alpha + 0.8, f64::max)
        .min(4.0);
    let (a_lo, a_hi) = ((a_lo * 4.0).floor() / 4.0, (a_hi * 4.0).ceil() / 4.0);
    let mut chart = ChartBuilder::on(&area)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_hi, a_lo..a_hi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(BLACK.mix(0.04))
        .x_desc("peak stress (MPa)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_desc("α (dimensionless)")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(0.0, paper.alpha - paper.alpha_pm), (x_hi, paper.alpha + paper.alpha_pm)],
            PAPER_COLOR.mix(0.3).filled(),
        )))
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(vec![(0.0, paper.alpha), (x_hi, paper.alpha)], PAPER_COLOR.stroke_width(2)))
        .map_err(err)?;
    for p in &fitted {
        let c = if p.constrained { BLACK } else { HOLD_COLOR };
        chart
            .draw_series(error_bar(
                p.peak_stress_mpa,
                p.alpha_ci[0],
                p.alpha_ci[1],
                YAxis { lo: a_lo, hi: a_hi, log: false },
                dx,
                c,
            ))
            .map_err(err)?;
        chart.draw_series(group_marker(p.peak_stress_mpa, p.alpha.clamp(a_lo, a_hi), p.constrained)).map_err(err)?;
    }
    draw_legend(
        &legend_area,
        &[
            (Mark::Dot(BLACK), "headline α, 95 % interval".into()),
            (Mark::Ring(HOLD_COLOR), "not constrained by the group".into()),
            (Mark::Band(PAPER_COLOR), format!("{}: α = {} ± {}", paper.source, paper.alpha, paper.alpha_pm)),
        ],
    )?;

    // xc with its 95 % interval on a log axis; the paper's ≈ 10⁻³ as a line.
    let (area, legend_area) = split(&rows[1]);
    let finite = |v: f64| v.is_finite() && v > 0.0;
    let xc_vals = fitted.iter().flat_map(|p| [p.xc, p.xc_ci[0], p.xc_ci[1]]).filter(|v| finite(*v));
    let (mut c_lo, mut c_hi) = (paper.xc / 3.0, paper.xc * 3.0);
    for v in xc_vals {
        c_lo = c_lo.min(v);
        c_hi = c_hi.max(v);
    }
    let (c_lo, c_hi) = decade_bounds(c_lo.max(1e-7), c_hi.min(10.0));
    let mut chart = ChartBuilder::on(&area)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_hi, log_axis(c_lo, c_hi))
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(BLACK.mix(0.04))
        .x_desc("peak stress (MPa)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_desc("xc (|Δρ/ρ|, dimensionless)")
        .y_label_formatter(&|v| decade_label(*v))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(dashed(&(0..=40).map(|i| (x_hi * i as f64 / 40.0, paper.xc)).collect::<Vec<_>>(), PAPER_COLOR))
        .map_err(err)?;
    for p in &fitted {
        if !finite(p.xc) {
            continue;
        }
        let c = if p.constrained { BLACK } else { HOLD_COLOR };
        chart
            .draw_series(error_bar(
                p.peak_stress_mpa,
                p.xc_ci[0],
                p.xc_ci[1],
                YAxis { lo: c_lo, hi: c_hi, log: true },
                dx,
                c,
            ))
            .map_err(err)?;
        chart.draw_series(group_marker(p.peak_stress_mpa, p.xc.clamp(c_lo, c_hi), p.constrained)).map_err(err)?;
    }
    draw_legend(
        &legend_area,
        &[
            (Mark::Dot(BLACK), "headline xc, 95 % interval".into()),
            (Mark::Ring(HOLD_COLOR), "α not constrained by the group".into()),
            (Mark::Dashed(PAPER_COLOR), format!("{}: xc ≈ {}", paper.source, decade_label(paper.xc))),
            (Mark::Line(BLACK), "arrow: interval open or off the axis".into()),
        ],
    )?;

    // p − n per run and segment, ± its Poisson σ; the paper gives only the signs.
    let (area, legend_area) = split(&rows[2]);
    let all = pts.iter().flat_map(|p| p.p_minus_n_per_run.iter().map(|b| b.p_minus_n.abs() + b.sigma));
    let lim = all.fold(2.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(&area)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_hi, -lim..lim)
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(BLACK.mix(0.04))
        .x_desc("peak stress (MPa)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_desc("p − n per run (spikes)")
        .draw()
        .map_err(err)?;
    chart.draw_series(LineSeries::new(vec![(0.0, 0.0), (x_hi, 0.0)], BLACK.mix(0.5))).map_err(err)?;
    let segs = [("load", P_COLOR, -1.0), ("hold", HOLD_COLOR, 0.0), ("unload", N_COLOR, 1.0)];
    for (seg, c, off) in segs {
        let line: Vec<(f64, f64)> = pts
            .iter()
            .filter_map(|p| {
                p.p_minus_n_per_run.iter().find(|b| b.segment == seg).map(|b| (p.peak_stress_mpa + off * dx, b))
            })
            .map(|(x, b)| (x, b.p_minus_n))
            .collect();
        chart.draw_series(LineSeries::new(line.clone(), c.mix(0.6).stroke_width(1))).map_err(err)?;
        for p in pts {
            if let Some(b) = p.p_minus_n_per_run.iter().find(|b| b.segment == seg) {
                let x = p.peak_stress_mpa + off * dx;
                chart
                    .draw_series(error_bar(
                        x,
                        b.p_minus_n - b.sigma,
                        b.p_minus_n + b.sigma,
                        YAxis { lo: -lim, hi: lim, log: false },
                        dx * 0.6,
                        c,
                    ))
                    .map_err(err)?;
            }
        }
        chart.draw_series(line.iter().map(|&(x, y)| Circle::new((x, y), 4, c.filled()))).map_err(err)?;
    }
    draw_legend(
        &legend_area,
        &[
            (Mark::Dot(P_COLOR), "loading".into()),
            (Mark::Dot(HOLD_COLOR), "hold".into()),
            (Mark::Dot(N_COLOR), "unloading".into()),
            (Mark::Line(BLACK), "bars: ± √(p + n) per run (Poisson)".into()),
            (Mark::Band(PAPER_COLOR), format!("{}:", paper.source)),
            (Mark::Band(WHITE), paper.p_minus_n.clone()),
        ],
    )
}

/// Write the campaign figure (`campaign_vs_stress.png` and `.svg`) into `dir` (created if
/// missing). Returns the files written.
pub fn write_campaign_plots(series: &StressSeries, dir: &Path) -> Result<Vec<PathBuf>, AnalysisError> {
    register_font();
    std::fs::create_dir_all(dir)
        .map_err(|e| AnalysisError::Write { path: dir.display().to_string(), message: e.to_string() })?;
    Ok(emit!(dir, CAMPAIGN_FIGURE, (1250, 1200), draw_campaign, series))
}

/// File stem of the campaign figure.
pub const CAMPAIGN_FIGURE: &str = "campaign_vs_stress";

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
    fn log_axes_tick_and_label_whole_decades() {
        let (bold, light, range) = decades(5e-4, 8e-3);
        assert_eq!(range, (1e-4, 1e-2));
        assert_eq!(bold.len(), 3);
        for (b, k) in bold.iter().zip([-4, -3, -2]) {
            assert!((b / 10f64.powi(k) - 1.0).abs() < 1e-12, "{bold:?}");
        }
        assert_eq!(light.len(), 16, "2–9 × 10⁻⁴ and × 10⁻³");
        // A range inside one decade still gets two labelled ends.
        let (bold, _, range) = decades(2e-3, 3e-3);
        assert_eq!(bold.len(), 2);
        assert!((range.0 - 1e-3).abs() < 1e-15 && (range.1 - 1e-2).abs() < 1e-15, "{range:?}");
        assert_eq!(decade_label(1e-3), "10⁻³");
        assert_eq!(decade_label(1.0), "10⁰");
        assert_eq!(decade_label(100.0), "10²");
        assert_eq!(decade_label(2e-3), "2.0e-3");
    }

    /// Every branch of the campaign figure: a constrained group, an unconstrained one with an
    /// interval off the axis, an xc interval open to ∞, a group without a fit.
    #[test]
    fn campaign_figure_draws_every_kind_of_point() {
        use crate::stress::{PaperValues, SegmentBalancePerRun, StressPoint, StressSeries};
        let bal = |d: f64| {
            ["load", "hold", "unload"]
                .iter()
                .zip([d, 0.0, -d])
                .map(|(s, v)| SegmentBalancePerRun { segment: s.to_string(), p_minus_n: v, sigma: 1.5 })
                .collect::<Vec<_>>()
        };
        let point = |stress: f64, alpha: f64, ci: [f64; 2], xc_ci: [f64; 2], constrained: bool, n: usize| StressPoint {
            peak_stress_mpa: stress,
            runs: 3,
            alpha,
            alpha_ci: ci,
            xc: 1e-3,
            xc_ci,
            constrained,
            n,
            p_minus_n_per_run: bal(stress / 300.0),
        };
        let series = StressSeries {
            paper: PaperValues::default(),
            points: vec![
                point(320.0, 1.48, [1.2, 1.8], [7e-4, 1.6e-3], true, 400),
                point(960.0, 1.9, [-1.0, 3.99], [5e-4, f64::INFINITY], false, 120),
                point(1910.0, f64::NAN, [f64::NAN, f64::NAN], [f64::NAN, f64::NAN], false, 0),
            ],
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let files = write_campaign_plots(&series, dir.path()).expect("campaign figure");
        assert_eq!(files.len(), 2);
        let png = std::fs::read(&files[0]).expect("png");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let svg = std::fs::read_to_string(&files[1]).expect("svg");
        for needle in ["Yang et al. 2014: α = 1.5 ± 0.1", "10⁻³", "peak stress (MPa)", "xc (|Δρ/ρ|, dimensionless)"]
        {
            assert!(svg.contains(needle), "SVG lacks {needle}");
        }
    }

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
