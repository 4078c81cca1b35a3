//! Shadow check: before a new version is activated, its values are compared with the
//! active version's on the entities live traffic actually reads (the most-read
//! entities of the group's entity type, from the access counts that also choose the
//! hot segment's entities). Per feature: the share of values that changed, values that
//! appeared or disappeared, and the shift of the values' mean in units of the active
//! version's standard deviation over the same entities.
//!
//! It is part of the validation report and gates nothing by itself: a large share of
//! changed values is normal for a daily feature, and the reader decides. [`compare`] is
//! a pure function of the two versions' stored values; the load pipeline reads them
//! (one RocksDB MultiGet per version, at most [`MAX_KEYS`] keys each).

use serde::{Deserialize, Serialize};

use crate::codec::value::{PAYLOAD_OFFSET, tag};

/// Most-read entities compared, at most.
pub const MAX_ENTITIES: usize = 1_000;
/// Keys read per version, at most (entities x features).
pub const MAX_KEYS: usize = 100_000;

/// The comparison of one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowFeature {
    /// Feature name.
    pub feature: String,
    /// Entities holding a value in both versions.
    pub compared: u64,
    /// Among them, values that differ (event time not counted).
    pub changed: u64,
    /// `changed / compared` (0 when nothing was compared).
    pub changed_share: f64,
    /// Entities with a value in the new version only.
    pub appeared: u64,
    /// Entities with a value in the active version only.
    pub disappeared: u64,
    /// (new mean - active mean) / active std over the compared numeric values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_shift: Option<f64>,
}

/// The shadow check of a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowReport {
    /// The active version compared with.
    pub active_version: u64,
    /// Most-read entities compared.
    pub entities: usize,
    /// Per feature.
    pub features: Vec<ShadowFeature>,
}

/// The numeric value of stored bytes, if numeric and not null.
fn number(stored: &[u8]) -> Option<f64> {
    let payload = stored.get(PAYLOAD_OFFSET..)?;
    match *stored.first()? {
        tag::FLOAT64 => Some(f64::from_le_bytes(payload.try_into().ok()?)),
        tag::FLOAT32 => Some(f64::from(f32::from_le_bytes(payload.try_into().ok()?))),
        tag::INT64 => Some(i64::from_le_bytes(payload.try_into().ok()?) as f64),
        tag::BOOL => Some(f64::from(u8::from(payload == [1]))),
        _ => None,
    }
    .filter(|x: &f64| !x.is_nan())
}

/// The value without its event time: tag and payload.
fn value_part(stored: &[u8]) -> (Option<u8>, &[u8]) {
    (
        stored.first().copied(),
        stored.get(PAYLOAD_OFFSET..).unwrap_or_default(),
    )
}

/// Compares one feature's stored values, entity by entity: `(new, active)` pairs of
/// encoded stored values (`None`: nothing stored).
pub fn compare<'a>(
    feature: &str,
    pairs: impl IntoIterator<Item = (Option<&'a [u8]>, Option<&'a [u8]>)>,
) -> ShadowFeature {
    let mut out = ShadowFeature {
        feature: feature.to_owned(),
        compared: 0,
        changed: 0,
        changed_share: 0.0,
        appeared: 0,
        disappeared: 0,
        mean_shift: None,
    };
    let (mut n, mut sum_new, mut sum_old, mut sq_old) = (0u64, 0.0, 0.0, 0.0);
    for pair in pairs {
        match pair {
            (Some(new), Some(old)) => {
                out.compared += 1;
                if value_part(new) != value_part(old) {
                    out.changed += 1;
                }
                if let (Some(a), Some(b)) = (number(new), number(old)) {
                    n += 1;
                    sum_new += a;
                    sum_old += b;
                    sq_old += b * b;
                }
            }
            (Some(_), None) => out.appeared += 1,
            (None, Some(_)) => out.disappeared += 1,
            (None, None) => {}
        }
    }
    if out.compared > 0 {
        out.changed_share = out.changed as f64 / out.compared as f64;
    }
    if n > 1 {
        let n = n as f64;
        let mean_old = sum_old / n;
        let std_old = (sq_old / n - mean_old * mean_old).max(0.0).sqrt();
        let diff = sum_new / n - mean_old;
        out.mean_shift = Some(if std_old > 0.0 {
            diff / std_old
        } else if diff == 0.0 {
            0.0
        } else {
            f64::INFINITY.copysign(diff)
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::value::encode_value;
    use crate::types::Value;

    fn enc(v: f64, t: i64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_value(&Value::Float64(v), t, &mut out);
        out
    }

    #[test]
    fn changed_values_and_the_mean_shift_are_counted() {
        let old: Vec<Vec<u8>> = (0..100).map(|i| enc(f64::from(i), 1)).collect();
        // Same values with newer event times: nothing changed.
        let same: Vec<Vec<u8>> = (0..100).map(|i| enc(f64::from(i), 2)).collect();
        let report = compare(
            "x",
            same.iter()
                .zip(&old)
                .map(|(a, b)| (Some(a.as_slice()), Some(b.as_slice()))),
        );
        assert_eq!(report.compared, 100);
        assert_eq!(report.changed, 0);
        assert_eq!(report.mean_shift, Some(0.0));
        // A quarter shifted by +100; one entity gone, one new.
        let new: Vec<Vec<u8>> = (0..100)
            .map(|i| enc(f64::from(i) + if i % 4 == 0 { 100.0 } else { 0.0 }, 2))
            .collect();
        type Pair<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);
        let mut pairs: Vec<Pair<'_>> = new
            .iter()
            .zip(&old)
            .map(|(a, b)| (Some(a.as_slice()), Some(b.as_slice())))
            .collect();
        pairs.push((None, Some(old[0].as_slice())));
        pairs.push((Some(new[0].as_slice()), None));
        let report = compare("x", pairs);
        assert_eq!(report.changed, 25);
        assert_eq!(report.changed_share, 0.25);
        assert_eq!((report.appeared, report.disappeared), (1, 1));
        let shift = report.mean_shift.expect("shift");
        // +25 on the mean, std of 0..99 is 28.87.
        assert!((shift - 25.0 / 28.866).abs() < 1e-3, "{shift}");
    }
}
