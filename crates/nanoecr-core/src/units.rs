//! Pillar geometry and the mechanical conversions used everywhere (engineering stress and strain).

use serde::{Deserialize, Serialize};

/// Geometry and elastic constants of one micropillar. All conversions are engineering values:
/// stress on the initial cross-section A0 = π d²/4, strain on the initial height H0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Pillar {
    /// Top diameter d in µm.
    pub diameter_um: f64,
    /// Initial height H0 in µm.
    pub height_um: f64,
    /// Poisson's ratio ν (dimensionless).
    pub poisson_ratio: f64,
    /// Young's modulus E in GPa.
    pub youngs_modulus_gpa: f64,
}

impl Pillar {
    /// Initial cross-section A0 in µm².
    pub fn area_um2(&self) -> f64 {
        std::f64::consts::PI * self.diameter_um * self.diameter_um / 4.0
    }

    /// Engineering stress in MPa for a load in µN.
    ///
    /// 1 µN / 1 µm² = 1 MPa, so no further factor is needed.
    pub fn stress_mpa(&self, load_un: f64) -> f64 {
        load_un / self.area_um2()
    }

    /// Load in µN that gives an engineering stress in MPa.
    pub fn load_un_for_stress(&self, stress_mpa: f64) -> f64 {
        stress_mpa * self.area_um2()
    }

    /// Initial height H0 in nm.
    pub fn height_nm(&self) -> f64 {
        self.height_um * 1000.0
    }

    /// Engineering strain ε = h / H0 for a displacement in nm.
    pub fn strain(&self, disp_nm: f64) -> f64 {
        disp_nm / self.height_nm()
    }

    /// Elastic displacement in nm of the pillar under a load in µN (σ/E · H0).
    pub fn elastic_disp_nm(&self, load_un: f64) -> f64 {
        // MPa / (GPa · 1000) is dimensionless strain.
        self.stress_mpa(load_un) / (self.youngs_modulus_gpa * 1000.0) * self.height_nm()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paper_pillar() -> Pillar {
        Pillar { diameter_um: 2.0, height_um: 5.0, poisson_ratio: 1.0 / 3.0, youngs_modulus_gpa: 88.0 }
    }

    #[test]
    fn paper_peak_stress_is_about_1_9_gpa() {
        // science.md: 6000 µN on a 2 µm pillar ≈ 1.9 GPa.
        let s = paper_pillar().stress_mpa(6000.0);
        assert!((s - 1909.86).abs() < 0.1, "stress {s} MPa");
        let back = paper_pillar().load_un_for_stress(s);
        assert!((back - 6000.0).abs() < 1e-9);
    }

    #[test]
    fn elastic_displacement_is_sigma_over_e_times_h0() {
        let p = paper_pillar();
        let h = p.elastic_disp_nm(6000.0);
        // 1909.86 MPa / 88 GPa * 5000 nm ≈ 108.5 nm
        assert!((h - 108.51).abs() < 0.05, "h = {h}");
        assert!((p.strain(h) - 1909.86 / 88_000.0).abs() < 1e-6);
    }
}
