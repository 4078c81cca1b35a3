//! Feast-compatible streamed writes: `POST /push` (`{"push_source_name", "df", "to"}`)
//! and `POST /write-to-online-store` (`{"feature_view_name", "df"}`, what the Feast
//! SDK's remote online store sends for `write_to_online_store` and `push`), mapped onto
//! featstore push events (`crate::store::stream`).
//!
//! # Mapping
//!
//! * The push source (or feature view) names a featstore feature group; the events are
//!   of the group's entity type.
//! * `df` is column form. The entity is keyed by the join key `T_id` (or `T`) of its
//!   type, or of each component of a composite type; the event time is the
//!   `event_timestamp` column (or `event_time`): RFC 3339 text, naive ISO text (read as
//!   UTC, as the SDK sends it), or epoch milliseconds. `created` is ignored. Every
//!   other column must be a feature of the group, typed by its registered dtype
//!   (`null` is an explicit null; a whole float such as `3.0` is accepted for int64,
//!   as pandas writes integer columns holding nulls).
//! * `to` must be `online` (the default): featstore has no offline store, and a write
//!   meant for one is refused rather than half done.
//!
//! # Retries are harmless
//!
//! The Feast SDK retries a POST three times on 429 and 5xx, so one push may arrive
//! more than once, also after it was applied (a 5xx after the write, or a lost
//! answer). A retried push changes nothing:
//! * latest values: event time decides, and a value of the same event time that is not
//!   greater than the stored one is ignored, so the second copy of every value is
//!   `ignored_older`;
//! * windowed aggregates, which would count a value twice: each event carries an event
//!   id derived from its content ([`event_id`]: group, entity, event time and values),
//!   and the store skips an event whose id it has seen for that entity, so the copy is
//!   a `duplicate`. Two genuinely distinct events of one entity with the same event
//!   time and the same values are therefore counted once.
//!
//! Pure; stateless; safe from any thread. Parsers never panic on input.

use hyper::StatusCode;
use serde::Deserialize;

use super::feast::{Columns, FeastError, entity_text, join_key};
use crate::registry::Registry;
use crate::registry::defaults::parse_default;
use crate::registry::entity::composite_id;
use crate::store::stream::PushEvent;
use crate::types::{DType, TimestampMs, Value, parse_timestamp_ms};

/// Columns read as the event time, in order of preference.
pub const TIME_COLUMNS: [&str; 2] = ["event_timestamp", "event_time"];

/// Columns that are neither keys nor features and are ignored.
pub const IGNORED_COLUMNS: [&str; 1] = ["created"];

/// Which endpoint the body came to (they differ in field names and error classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushKind {
    /// `POST /push`.
    Push,
    /// `POST /write-to-online-store`.
    WriteToOnlineStore,
}

#[derive(Deserialize)]
struct RawPush {
    #[serde(default)]
    push_source_name: Option<String>,
    #[serde(default)]
    feature_view_name: Option<String>,
    df: Columns,
    #[serde(default)]
    to: Option<String>,
}

/// Parses a `/push` or `/write-to-online-store` body into the push events it means.
pub fn parse_push(
    registry: &Registry,
    kind: PushKind,
    body: &[u8],
) -> Result<Vec<PushEvent>, FeastError> {
    let raw: RawPush = serde_json::from_slice(body)
        .map_err(|e| FeastError::bad_request(format!("invalid request body: {e}")))?;
    let (source, field) = match kind {
        PushKind::Push => (raw.push_source_name, "push_source_name"),
        PushKind::WriteToOnlineStore => (raw.feature_view_name, "feature_view_name"),
    };
    let group = source.ok_or_else(|| FeastError::bad_request(format!("`{field}` is missing")))?;
    match raw.to.as_deref() {
        None | Some("online") => {}
        Some(other) => {
            return Err(FeastError::bad_request(format!(
                "`to: {other}` is refused: featstore serves online only (use `to: online`)"
            )));
        }
    }
    let Some(info) = registry.group(&group) else {
        return Err(match kind {
            PushKind::Push => FeastError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "PushSourceNotFoundException",
                format!("no feature group `{group}` to push to"),
            ),
            PushKind::WriteToOnlineStore => {
                FeastError::unknown_view(format!("Feature view {group} does not exist"))
            }
        });
    };
    let df = raw.df;
    let rows = df.rows()?;
    let entity_type = info.entity_type.clone();
    let components = match registry.catalog().entity_type(&entity_type) {
        Some(c) => c.components.clone(),
        None => vec![entity_type.clone()],
    };
    let mut keys = Vec::with_capacity(components.len());
    for c in &components {
        let key = join_key(&df, c).ok_or_else(|| {
            FeastError::bad_request(format!(
                "group `{group}` is keyed by entity type `{c}`: give its join key `{c}_id`"
            ))
        })?;
        keys.push(key);
    }
    let time_column = TIME_COLUMNS
        .iter()
        .find(|c| df.get(c).is_some())
        .ok_or_else(|| {
            FeastError::bad_request(format!(
                "give the event time as column `{}`",
                TIME_COLUMNS[0]
            ))
        })?;
    let mut features = Vec::new();
    for (name, values) in &df.0 {
        if keys.contains(&name.as_str())
            || name == time_column
            || IGNORED_COLUMNS.contains(&name.as_str())
        {
            continue;
        }
        let def = registry
            .resolve(name)
            .filter(|d| d.spec.group == group)
            .ok_or_else(|| {
                FeastError::bad_request(format!("column `{name}` is not a feature of `{group}`"))
            })?;
        features.push((name.as_str(), def.spec.dtype, values.as_slice()));
    }
    if features.is_empty() {
        return Err(FeastError::bad_request("`df` holds no feature column"));
    }
    let mut events = Vec::with_capacity(rows);
    for row in 0..rows {
        let mut parts = Vec::with_capacity(keys.len());
        for key in &keys {
            let v = &df.get(key).unwrap_or_default()[row];
            parts.push(entity_text(v).ok_or_else(|| {
                FeastError::bad_request(format!(
                    "join key `{key}` row {row}: {v} is not a string or an integer"
                ))
            })?);
        }
        let entity_id = if parts.len() == 1 {
            parts.swap_remove(0)
        } else {
            let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
            composite_id(&parts)
        };
        let time = &df.get(time_column).unwrap_or_default()[row];
        let event_time = event_time(time)
            .map_err(|e| FeastError::bad_request(format!("`{time_column}` row {row}: {e}")))?;
        let mut values = Vec::with_capacity(features.len());
        for (name, dtype, column) in &features {
            let value = typed(&column[row], *dtype)
                .map_err(|e| FeastError::bad_request(format!("`{name}` row {row}: {e}")))?;
            values.push(((*name).to_owned(), value));
        }
        let id = event_id(&group, &entity_id, event_time, &values);
        events.push(PushEvent {
            entity_type: entity_type.clone(),
            entity_id,
            event_time,
            features: values,
            event_id: Some(id),
        });
    }
    Ok(events)
}

/// The event time of a `df` cell.
fn event_time(value: &serde_json::Value) -> Result<TimestampMs, String> {
    match value {
        serde_json::Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("{n} is not an integer of epoch milliseconds")),
        serde_json::Value::String(s) => parse_timestamp_ms(s)
            // Naive ISO text (`2026-11-30T10:00:00`) is UTC, as the SDK sends it.
            .or_else(|e| parse_timestamp_ms(&format!("{s}Z")).map_err(|_| e.to_string())),
        other => Err(format!("{other} is not a timestamp")),
    }
}

/// A `df` cell as a value of `dtype`.
fn typed(value: &serde_json::Value, dtype: DType) -> Result<Value, String> {
    match (value, dtype) {
        (serde_json::Value::Null, _) => Ok(Value::Null),
        (serde_json::Value::Number(n), DType::Int64) if n.as_i64().is_none() => match n.as_f64() {
            Some(x) if x.fract() == 0.0 && x.abs() < 9.007_199_254_740_992e15 => {
                Ok(Value::Int64(x as i64))
            }
            _ => Err(format!("{n} is not an int64 value")),
        },
        _ => parse_default(value, dtype).map_err(|e| e.replacen("default ", "", 1)),
    }
}

/// The id of an event made from its content: retries of one push carry the same ids.
/// FNV-1a (64 bits) over length-prefixed fields, as 16 hex digits.
pub fn event_id(
    group: &str,
    entity_id: &str,
    event_time: TimestampMs,
    values: &[(String, Value)],
) -> String {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    h.field(group.as_bytes());
    h.field(entity_id.as_bytes());
    h.field(&event_time.to_le_bytes());
    for (name, value) in values {
        h.field(name.as_bytes());
        let text = format!("{value:?}");
        h.field(text.as_bytes());
    }
    format!("feast-{:016x}", h.0)
}

struct Fnv(u64);

impl Fnv {
    fn field(&mut self, bytes: &[u8]) {
        for b in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_type_by_dtype() {
        assert_eq!(
            typed(&serde_json::json!(3.0), DType::Int64),
            Ok(Value::Int64(3))
        );
        assert!(typed(&serde_json::json!(3.5), DType::Int64).is_err());
        assert_eq!(
            typed(&serde_json::json!(null), DType::Float64),
            Ok(Value::Null)
        );
        assert_eq!(
            typed(&serde_json::json!(2), DType::Float64),
            Ok(Value::Float64(2.0))
        );
        assert!(typed(&serde_json::json!("x"), DType::Float64).is_err());
    }

    #[test]
    fn event_times_accept_feast_forms() {
        assert_eq!(
            event_time(&serde_json::json!("2023-11-14T22:13:20")),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            event_time(&serde_json::json!("2023-11-14T22:13:20.5+00:00")),
            Ok(1_700_000_000_500)
        );
        assert_eq!(
            event_time(&serde_json::json!(1_700_000_000_000_i64)),
            Ok(1_700_000_000_000)
        );
        assert!(event_time(&serde_json::json!("yesterday")).is_err());
        assert!(event_time(&serde_json::json!(true)).is_err());
    }

    #[test]
    fn event_ids_follow_content() {
        let v = |x: f64| vec![("price".to_owned(), Value::Float64(x))];
        let a = event_id("g", "p1", 5, &v(1.0));
        assert_eq!(a, event_id("g", "p1", 5, &v(1.0)));
        assert_ne!(a, event_id("g", "p1", 5, &v(2.0)));
        assert_ne!(a, event_id("g", "p1", 6, &v(1.0)));
        assert_ne!(a, event_id("g", "p2", 5, &v(1.0)));
        assert_ne!(a, event_id("h", "p1", 5, &v(1.0)));
    }
}
