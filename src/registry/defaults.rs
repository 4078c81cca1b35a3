//! Per-feature defaults: the literal a definition gives (`default = 0.0` in TOML, any
//! JSON literal over HTTP) turned into a [`Value`] of the feature's dtype.
//!
//! Checked at registration, so a registered default always converts; converted once
//! more when a registry snapshot is built ([`super::Registry::default_value`]), never
//! per read.

use crate::types::{DType, Value};

/// The value of `literal` as a `dtype` value, or why it does not fit.
pub fn parse_default(literal: &serde_json::Value, dtype: DType) -> Result<Value, String> {
    use serde_json::Value as J;
    let bad = || format!("default {literal} is not a {dtype} value");
    Ok(match (dtype, literal) {
        (DType::Int64, J::Number(n)) => Value::Int64(n.as_i64().ok_or_else(bad)?),
        (DType::Float64, J::Number(n)) => Value::Float64(n.as_f64().ok_or_else(bad)?),
        (DType::Float32, J::Number(n)) => Value::Float32(n.as_f64().ok_or_else(bad)? as f32),
        (DType::Bool, J::Bool(b)) => Value::Bool(*b),
        (DType::String, J::String(s)) => Value::String(s.clone()),
        (DType::Bytes, J::String(s)) => Value::parse_text(s, DType::Bytes)?,
        (DType::Float32Vector { dim }, J::Array(items)) => {
            let parts: Option<Vec<f32>> =
                items.iter().map(|x| x.as_f64().map(|x| x as f32)).collect();
            let parts = parts.ok_or_else(bad)?;
            if parts.len() != dim as usize {
                return Err(format!(
                    "default has {} components, the feature's dimension is {dim}",
                    parts.len()
                ));
            }
            Value::Float32Vector(parts)
        }
        _ => return Err(bad()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_convert_per_dtype() {
        assert_eq!(parse_default(&json!(3), DType::Int64), Ok(Value::Int64(3)));
        assert_eq!(
            parse_default(&json!(0.5), DType::Float32),
            Ok(Value::Float32(0.5))
        );
        assert_eq!(
            parse_default(&json!(true), DType::Bool),
            Ok(Value::Bool(true))
        );
        assert_eq!(
            parse_default(&json!([0, 1]), DType::Float32Vector { dim: 2 }),
            Ok(Value::Float32Vector(vec![0.0, 1.0]))
        );
        assert!(parse_default(&json!([0]), DType::Float32Vector { dim: 2 }).is_err());
        assert!(parse_default(&json!(1.5), DType::Int64).is_err());
        assert!(parse_default(&json!("x"), DType::Float64).is_err());
        assert_eq!(
            parse_default(&json!("0a"), DType::Bytes),
            Ok(Value::Bytes(vec![10]))
        );
    }
}
