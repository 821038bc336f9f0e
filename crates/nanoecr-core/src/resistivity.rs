//! The relation between displacement, current and the pillar's relative resistivity change.
//!
//! From geometry and Ohm's law in a slightly tapered pillar under compression (Yang et al.):
//!
//! ```text
//! Δρ/ρ = (1 + 3ν) Δε / (1 + ε) − ΔI / I
//! ```
//!
//! where Δ is the change from the reference (contact-established) state, ε = h/H0 is the current
//! engineering strain and I the reference current. Both the detector (forward) and the simulator
//! (inverse) use these two functions, so a noiseless simulated run recovers its true Δρ/ρ exactly.

/// Relative resistivity change Δρ/ρ from the strain and current, relative to a reference state.
///
/// `strain`/`strain_ref` are engineering strains; `current_a`/`current_ref_a` in A.
#[inline]
pub fn resistivity_change(strain: f64, strain_ref: f64, current_a: f64, current_ref_a: f64, poisson_ratio: f64) -> f64 {
    let geometric = (1.0 + 3.0 * poisson_ratio) * (strain - strain_ref) / (1.0 + strain);
    geometric - (current_a - current_ref_a) / current_ref_a
}

/// The current in A that makes [`resistivity_change`] return `delta_rho` exactly: the inverse
/// relation, used by the simulator to turn a true Δρ/ρ into a measured current.
#[inline]
pub fn current_for_resistivity_change(
    delta_rho: f64,
    strain: f64,
    strain_ref: f64,
    current_ref_a: f64,
    poisson_ratio: f64,
) -> f64 {
    let geometric = (1.0 + 3.0 * poisson_ratio) * (strain - strain_ref) / (1.0 + strain);
    current_ref_a * (1.0 + geometric - delta_rho)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_round_trips() {
        for &(d, e) in &[(0.0, 0.0), (5e-4, 0.01), (-2e-3, 0.02), (0.1, 0.005)] {
            let i = current_for_resistivity_change(d, e, 0.001, 1e-6, 1.0 / 3.0);
            let back = resistivity_change(e, 0.001, i, 1e-6, 1.0 / 3.0);
            assert!((back - d).abs() < 1e-12, "{d} -> {back}");
        }
    }

    #[test]
    fn compression_at_constant_resistivity_raises_current() {
        // A shorter, wider pillar conducts better: with Δρ = 0 the current must rise.
        let i = current_for_resistivity_change(0.0, 0.02, 0.0, 1e-6, 1.0 / 3.0);
        assert!(i > 1e-6);
        // And ν = 1/3 gives the paper's approximation 2Δε/(1+ε).
        let rel = (i - 1e-6) / 1e-6;
        assert!((rel - 2.0 * 0.02 / 1.02).abs() < 1e-12);
    }

    #[test]
    fn falling_current_at_constant_strain_is_a_p_type_rise() {
        let d = resistivity_change(0.01, 0.01, 0.999e-6, 1e-6, 0.36);
        assert!((d - 1e-3).abs() < 1e-12);
    }
}
