//! On-demand features: values computed at request time from stored features (cosine
//! similarity or dot product of two embeddings, a ratio of two numbers, the time since
//! an event), defined in the registry rather than in request code.
//!
//! An on-demand feature has a `(name, version)` identity in the same namespace as
//! stored features, a fixed operation, pinned inputs (`name@version` of stored
//! features, resolved once at registration) and a default served with status
//! `defaulted` whenever an input is missing or the result is undefined. Its values are
//! `float64`. Evaluation ([`evaluate`]) is a pure function; the ranking read path calls
//! it per row.

use serde::{Deserialize, Serialize};

use super::definition::validate_identifier;
use crate::types::{DType, TimestampMs, Value};

/// What an on-demand feature computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDemandOp {
    /// `a·b / (|a| |b|)` of two `float32_vector` inputs of one dimension; undefined
    /// (default) when a norm is zero.
    CosineSimilarity,
    /// `a·b` of two `float32_vector` inputs of one dimension.
    DotProduct,
    /// `a / b` of two numeric inputs (`int64`, `float32`, `float64`); undefined
    /// (default) when `b` is zero.
    Ratio,
    /// Seconds from an event to the request time. The one input is an `int64` epoch-ms
    /// timestamp (its value is the event), or any other feature (its event time is).
    TimeSince,
}

impl OnDemandOp {
    /// Number of inputs the operation takes.
    pub fn arity(self) -> usize {
        match self {
            OnDemandOp::TimeSince => 1,
            _ => 2,
        }
    }

    /// The name used in files and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            OnDemandOp::CosineSimilarity => "cosine_similarity",
            OnDemandOp::DotProduct => "dot_product",
            OnDemandOp::Ratio => "ratio",
            OnDemandOp::TimeSince => "time_since",
        }
    }

    /// Why inputs of these dtypes are refused, or `None` if they fit.
    pub fn check_inputs(self, dtypes: &[DType]) -> Option<String> {
        if dtypes.len() != self.arity() {
            return Some(format!(
                "{} takes {} input(s), {} given",
                self.as_str(),
                self.arity(),
                dtypes.len()
            ));
        }
        let numeric = |d: &DType| matches!(d, DType::Int64 | DType::Float32 | DType::Float64);
        match self {
            OnDemandOp::CosineSimilarity | OnDemandOp::DotProduct => match dtypes {
                [
                    DType::Float32Vector { dim: a },
                    DType::Float32Vector { dim: b },
                ] if a == b => None,
                _ => Some(format!(
                    "{} needs two float32_vector inputs of one dimension, got {}",
                    self.as_str(),
                    dtypes
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" and ")
                )),
            },
            OnDemandOp::Ratio => (!dtypes.iter().all(numeric))
                .then(|| "ratio needs two numeric inputs (int64, float32, float64)".to_owned()),
            OnDemandOp::TimeSince => None,
        }
    }
}

/// An on-demand feature as submitted (`[[on_demand]]` in a registry file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnDemandSpec {
    /// Name, in the namespace of stored features.
    pub name: String,
    /// Version; a change of operation, inputs or default needs a new one while a live
    /// feature service uses it.
    #[serde(default = "first_version")]
    pub version: u32,
    /// Owning team.
    pub owner: String,
    /// The operation.
    pub op: OnDemandOp,
    /// Stored features it reads (`name` or `name@version`), in the operation's order.
    pub inputs: Vec<String>,
    /// Value served (status `defaulted`) when an input is missing or the result is
    /// undefined.
    pub default: f64,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

fn first_version() -> u32 {
    1
}

impl OnDemandSpec {
    /// Checks the spec on its own (names, arity), before resolving inputs.
    pub fn validate(&self) -> Result<(), String> {
        validate_identifier("on-demand feature name", &self.name)?;
        if self.version == 0 {
            return Err(format!(
                "on-demand feature `{}`: versions start at 1",
                self.name
            ));
        }
        if self.owner.trim().is_empty() {
            return Err(format!(
                "on-demand feature `{}`: owner must not be empty",
                self.name
            ));
        }
        if self.inputs.len() != self.op.arity() {
            return Err(format!(
                "on-demand feature `{}`: {} takes {} input(s), {} given",
                self.name,
                self.op.as_str(),
                self.op.arity(),
                self.inputs.len()
            ));
        }
        Ok(())
    }
}

/// A registered on-demand feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnDemandDefinition {
    /// When this (name, version) was first registered.
    pub registered_at_ms: TimestampMs,
    /// The inputs pinned at registration, `name@version`, in `spec.inputs` order.
    pub resolved_inputs: Vec<String>,
    /// The definition.
    #[serde(flatten)]
    pub spec: OnDemandSpec,
}

impl OnDemandDefinition {
    /// `name@version`.
    pub fn qualified_name(&self) -> String {
        format!("{}@{}", self.spec.name, self.spec.version)
    }
}

/// Most inputs an on-demand operation takes (its arity is checked at registration).
pub const MAX_INPUTS: usize = 2;

/// A usable input value, borrowed from where the read put it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InputValue<'a> {
    /// An int64 (a count, or a time in ms since the epoch for `time_since`).
    Int64(i64),
    /// A float32 or float64.
    Float(f64),
    /// A float32 vector.
    Vector(&'a [f32]),
    /// Any other type (no operation uses it as a number or vector).
    Other,
}

impl<'a> InputValue<'a> {
    /// The input form of an owned value.
    pub fn of(value: &'a Value) -> Self {
        match value {
            Value::Int64(v) => InputValue::Int64(*v),
            Value::Float32(v) => InputValue::Float(f64::from(*v)),
            Value::Float64(v) => InputValue::Float(*v),
            Value::Float32Vector(v) => InputValue::Vector(v),
            _ => InputValue::Other,
        }
    }

    fn number(self) -> Option<f64> {
        match self {
            InputValue::Int64(v) => Some(v as f64),
            InputValue::Float(v) => Some(v),
            _ => None,
        }
    }
}

/// A usable input: the value and its event time.
pub type Input<'a> = (InputValue<'a>, Option<TimestampMs>);

/// Computes `op` over `inputs` (each `None` when that input has no usable value) at
/// `now`. `None` means "serve the default": an input is missing, has the wrong shape,
/// or the result is undefined (zero norm, division by zero, not finite).
pub fn evaluate(op: OnDemandOp, inputs: &[Option<Input<'_>>], now: TimestampMs) -> Option<f64> {
    let result = match (op, inputs) {
        (OnDemandOp::CosineSimilarity | OnDemandOp::DotProduct, [Some(a), Some(b)]) => {
            let (InputValue::Vector(a), InputValue::Vector(b)) = (a.0, b.0) else {
                return None;
            };
            if a.len() != b.len() {
                return None;
            }
            let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
            for (x, y) in a.iter().zip(b) {
                let (x, y) = (f64::from(*x), f64::from(*y));
                dot += x * y;
                na += x * x;
                nb += y * y;
            }
            if op == OnDemandOp::DotProduct {
                dot
            } else {
                if na == 0.0 || nb == 0.0 {
                    return None;
                }
                dot / (na.sqrt() * nb.sqrt())
            }
        }
        (OnDemandOp::Ratio, [Some(a), Some(b)]) => {
            let (a, b) = (a.0.number()?, b.0.number()?);
            if b == 0.0 {
                return None;
            }
            a / b
        }
        (OnDemandOp::TimeSince, [Some((value, event_time))]) => {
            let at = match value {
                InputValue::Int64(ms) => *ms,
                _ => (*event_time)?,
            };
            now.saturating_sub(at) as f64 / 1000.0
        }
        _ => return None,
    };
    result.is_finite().then_some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(x: &[f32]) -> Value {
        Value::Float32Vector(x.to_vec())
    }

    #[test]
    fn similarity_and_dot_product() {
        let (a, b) = (v(&[1.0, 0.0]), v(&[1.0, 1.0]));
        let inputs = [
            Some((InputValue::of(&a), None)),
            Some((InputValue::of(&b), None)),
        ];
        let cos = evaluate(OnDemandOp::CosineSimilarity, &inputs, 0).expect("defined");
        assert!((cos - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-12);
        assert_eq!(evaluate(OnDemandOp::DotProduct, &inputs, 0), Some(1.0));
        let zero = v(&[0.0, 0.0]);
        assert_eq!(
            evaluate(
                OnDemandOp::CosineSimilarity,
                &[
                    Some((InputValue::of(&a), None)),
                    Some((InputValue::of(&zero), None))
                ],
                0
            ),
            None
        );
        assert_eq!(
            evaluate(
                OnDemandOp::DotProduct,
                &[Some((InputValue::of(&a), None)), None],
                0
            ),
            None
        );
    }

    #[test]
    fn ratio_and_time_since() {
        let (a, b, z) = (Value::Int64(3), Value::Float32(4.0), Value::Float64(0.0));
        assert_eq!(
            evaluate(
                OnDemandOp::Ratio,
                &[
                    Some((InputValue::of(&a), None)),
                    Some((InputValue::of(&b), None))
                ],
                0
            ),
            Some(0.75)
        );
        assert_eq!(
            evaluate(
                OnDemandOp::Ratio,
                &[
                    Some((InputValue::of(&a), None)),
                    Some((InputValue::of(&z), None))
                ],
                0
            ),
            None
        );
        let visit = Value::Int64(10_000);
        assert_eq!(
            evaluate(
                OnDemandOp::TimeSince,
                &[Some((InputValue::of(&visit), Some(1)))],
                70_000
            ),
            Some(60.0)
        );
        let other = Value::Float32(1.0);
        assert_eq!(
            evaluate(
                OnDemandOp::TimeSince,
                &[Some((InputValue::of(&other), Some(40_000)))],
                70_000
            ),
            Some(30.0)
        );
    }

    #[test]
    fn input_types_are_checked() {
        let vec8 = DType::Float32Vector { dim: 8 };
        let vec4 = DType::Float32Vector { dim: 4 };
        assert_eq!(
            OnDemandOp::CosineSimilarity.check_inputs(&[vec8, vec8]),
            None
        );
        assert!(
            OnDemandOp::CosineSimilarity
                .check_inputs(&[vec8, vec4])
                .is_some()
        );
        assert!(
            OnDemandOp::Ratio
                .check_inputs(&[DType::String, DType::Int64])
                .is_some()
        );
        assert_eq!(OnDemandOp::TimeSince.check_inputs(&[DType::Bool]), None);
        assert!(OnDemandOp::TimeSince.check_inputs(&[]).is_some());
    }
}
