//! The one table the bench prints and writes as JSON: one [`Row`] per figure, each the median of
//! several runs, next to its target and whether the target was met.

use serde::Serialize;

/// Whether a figure meets its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The target is met.
    Met,
    /// The target is missed (docs/performance.md says why).
    Missed,
}

impl Verdict {
    /// `Met` when `ok`, else `Missed`.
    pub fn from_ok(ok: bool) -> Self {
        if ok {
            Self::Met
        } else {
            Self::Missed
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Met => "met",
            Self::Missed => "MISSED",
        }
    }
}

/// One figure of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Section name (`ring`, `detector`, `e2e`, …).
    pub section: String,
    /// What was measured, in words.
    pub figure: String,
    /// The median over `runs` measurements (NaN when the figure could not be measured).
    pub value: f64,
    /// Unit of `value`.
    pub unit: String,
    /// Number of measurements the median is taken over.
    pub runs: usize,
    /// Every measurement, in the order taken.
    pub samples: Vec<f64>,
    /// The target, in words (empty when the figure is context, not a target).
    pub target: String,
    /// Whether the target is met (`None` for context figures).
    pub verdict: Option<Verdict>,
    /// Anything a reader needs to interpret the number.
    pub note: String,
}

impl Row {
    /// A context figure (no target) from its measurements; the value is their median.
    pub fn new(section: &str, figure: impl Into<String>, unit: &str, samples: Vec<f64>) -> Self {
        Self {
            section: section.to_string(),
            figure: figure.into(),
            value: median(&samples),
            unit: unit.to_string(),
            runs: samples.len(),
            samples,
            target: String::new(),
            verdict: None,
            note: String::new(),
        }
    }

    /// Attach a target and judge the median with `ok`.
    pub fn target(mut self, target: impl Into<String>, ok: impl FnOnce(f64) -> bool) -> Self {
        self.target = target.into();
        self.verdict = Some(Verdict::from_ok(self.value.is_finite() && ok(self.value)));
        self
    }

    /// Attach a note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }
}

/// Median of the finite values (NaN when there are none).
pub fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// A number for humans: engineering suffixes for large values, enough digits for small ones.
pub fn human(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let a = x.abs();
    if a >= 1e9 {
        format!("{:.2} G", x / 1e9)
    } else if a >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if a >= 1e4 {
        format!("{:.1} k", x / 1e3)
    } else if a >= 100.0 || a == 0.0 || x.fract() == 0.0 {
        format!("{x:.0}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else if a >= 1e-3 {
        format!("{x:.4}")
    } else {
        format!("{x:.3e}")
    }
}

/// The table as aligned plain text.
pub fn render(rows: &[Row]) -> String {
    let header = ["section", "figure", "median", "unit", "n", "target", "verdict"];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.section.clone(),
                r.figure.clone(),
                human(r.value),
                r.unit.clone(),
                r.runs.to_string(),
                r.target.clone(),
                r.verdict.map_or(String::new(), |v| v.label().to_string()),
            ]
        })
        .collect();
    let mut width = header.map(|h| h.chars().count());
    for c in &cells {
        for (w, s) in width.iter_mut().zip(c.iter()) {
            *w = (*w).max(s.chars().count());
        }
    }
    let line = |c: &[String]| -> String {
        let mut s = String::new();
        for (i, (cell, w)) in c.iter().zip(width.iter()).enumerate() {
            let pad = w - cell.chars().count();
            // Numbers right-aligned, words left-aligned.
            if i == 2 || i == 4 {
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
            } else {
                s.push_str(cell);
                s.push_str(&" ".repeat(pad));
            }
            s.push_str("  ");
        }
        s.trim_end().to_string()
    };
    let mut out = line(&header.map(String::from));
    out.push('\n');
    out.push_str(&"-".repeat(width.iter().sum::<usize>() + 2 * (width.len() - 1)));
    out.push('\n');
    for c in &cells {
        out.push_str(&line(c));
        out.push('\n');
    }
    out
}

/// The table as Markdown (for docs/performance.md).
pub fn render_markdown(rows: &[Row]) -> String {
    let mut out = String::from("| section | figure | median | unit | n | target | verdict | note |\n");
    out.push_str("| --- | --- | ---: | --- | ---: | --- | --- | --- |\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.section,
            r.figure,
            human(r.value),
            r.unit,
            r.runs,
            r.target,
            r.verdict.map_or("", |v| v.label()),
            r.note.replace('|', "/")
        ));
    }
    out
}

/// The machine the figures were taken on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs available.
    pub nproc: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// `uname -r`.
    pub kernel: String,
    /// Total memory from /proc/meminfo, kB.
    pub mem_total_kb: u64,
    /// /proc/loadavg when the bench started (the machine may be shared).
    pub loadavg_start: String,
    /// /proc/loadavg when the bench ended.
    pub loadavg_end: String,
    /// `kernel.sched_rt_runtime_us` / `kernel.sched_rt_period_us`: the real-time bandwidth
    /// limit a SCHED_FIFO thread that never sleeps runs into.
    pub sched_rt_runtime_us: String,
    /// See `sched_rt_runtime_us`.
    pub sched_rt_period_us: String,
}

/// The first line of a /proc file, trimmed ("" when unreadable).
pub fn proc_line(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default().lines().next().unwrap_or("").trim().to_string()
}

impl Machine {
    /// Read from /proc (fields stay empty where unreadable: the bench still runs elsewhere).
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_string())
            })
            .unwrap_or_default();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
        let mem_total_kb = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("MemTotal:").map(|r| r.trim().trim_end_matches("kB").trim().parse().unwrap_or(0))
            })
            .unwrap_or(0);
        Self {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            kernel,
            mem_total_kb,
            loadavg_start: proc_line("/proc/loadavg"),
            loadavg_end: String::new(),
            sched_rt_runtime_us: proc_line("/proc/sys/kernel/sched_rt_runtime_us"),
            sched_rt_period_us: proc_line("/proc/sys/kernel/sched_rt_period_us"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_nan() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[f64::NAN, 5.0]), 5.0);
        assert!(median(&[]).is_nan());
    }
}
