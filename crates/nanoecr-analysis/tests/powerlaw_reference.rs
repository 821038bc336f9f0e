//! Check against Python's `powerlaw` package (the reference DESIGN.md names) on a fixed sample:
//! tests/data/tpl_2000.txt, 2000 draws from the truncated power law (α = 1.5, xc = 1e-3,
//! x_min = 1e-4; numpy seed 2014). Reference values from `powerlaw` 2.0.0:
//! `Fit(data, xmin=1e-4, discrete=False)`.

use nanoecr_analysis::powerlaw::analyze_magnitudes;

fn data() -> Vec<f64> {
    let text = include_str!("data/tpl_2000.txt");
    text.lines().filter_map(|l| l.trim().parse::<f64>().ok()).collect()
}

#[test]
fn matches_python_powerlaw_on_a_fixed_sample() {
    let xs = data();
    assert_eq!(xs.len(), 2000);
    let a = analyze_magnitudes(&xs, 1e-4, None).expect("fit");
    let t = &a.truncated_power_law;
    // powerlaw: truncated_power_law.alpha, 1/Lambda.
    assert!((t.alpha - 1.233_631_360_551_156_4).abs() < 1e-5, "α {}", t.alpha);
    assert!((t.xc / 7.118_576_293_682_693e-4 - 1.0).abs() < 1e-5, "xc {}", t.xc);
    // Pure power law and exponential MLEs are closed-form: tight agreement.
    assert!((a.power_law.alpha - 2.046_593_079_040_923).abs() < 1e-6, "PL α {}", a.power_law.alpha);
    assert!((a.exponential.rate / 4_010.102_084_342_793 - 1.0).abs() < 1e-6, "λ {}", a.exponential.rate);
    // distribution_compare('truncated_power_law', 'exponential'): R = 124.72, normalised 6.77, p = 1.26e-11.
    assert!((a.tpl_vs_exponential.log_ratio - 124.722_08).abs() < 1e-3, "{:?}", a.tpl_vs_exponential);
    assert!((a.tpl_vs_exponential.normalized - 6.772_75).abs() < 1e-3, "{:?}", a.tpl_vs_exponential);
    assert!((a.tpl_vs_exponential.p_value / 1.263_551_860_896_684_7e-11 - 1.0).abs() < 1e-3);
    // distribution_compare('truncated_power_law', 'power_law', nested=True): R = 117.07, p ≈ 0.
    assert!((a.tpl_vs_power_law.log_ratio - 117.067_23).abs() < 1e-3, "{:?}", a.tpl_vs_power_law);
    assert!(a.tpl_vs_power_law.p_value < 1e-20);
    // KS distance of the truncated power law: 0.0193.
    assert!((t.ks_distance - 0.019_34).abs() < 1e-4, "D {}", t.ks_distance);
}
