//! NaN-safe float fields. JSON has no NaN or infinity and serde_json writes them as `null`, which
//! it then refuses to read back into an `f64`. Δρ/ρ is NaN during settle (by design), so every
//! float on the wire that may be undefined goes through these helpers: non-finite → `null`,
//! `null` → NaN.

use serde::{Deserialize, Deserializer, Serializer};

/// `#[serde(with = "nanoecr_proto::float::nan_null")]` for an `f64`.
pub mod nan_null {
    use super::*;

    /// Write a finite value as a number and anything else as `null`.
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    /// Read a number, or `null` as NaN.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// `#[serde(with = "nanoecr_proto::float::nan_null_vec")]` for a `Vec<f64>`.
pub mod nan_null_vec {
    use super::*;
    use serde::ser::SerializeSeq;

    /// Write each element as [`super::nan_null`] does.
    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for x in v {
            seq.serialize_element(&x.is_finite().then_some(*x))?;
        }
        seq.end()
    }

    /// Read numbers, with `null` elements as NaN.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<Option<f64>>::deserialize(d)?.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
    }
}
