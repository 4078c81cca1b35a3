//! The single-entity read response (`GET /v1/features/..`), written by hand from the
//! columnar answer ([`EntityAnswer`]) into one pre-sized buffer.
//!
//! The bytes are those of [`super::json::encode_feature_vector`] for the answer's row
//! view (the tests check it value by value): same fields in the same order, numbers
//! formatted as serde_json formats them ([`super::float_json`]), strings escaped as
//! serde_json escapes them, the value mapping of [`super::json`]. This path exists
//! because it skips building one owned reading per feature and serde's per-field
//! dispatch, which were most of the user-space time of a read.
//!
//! Stateless; safe from any thread.

use crate::query::EntityAnswer;
use crate::query::answer::{ColumnData, ColumnValues};
use crate::types::{TimestampMs, Value};

use super::float_json::{push_f32, push_f32_array, push_f64};

/// Writes `s` as a JSON string: straight when nothing needs escaping (the common case
/// for feature names and ids), through serde_json otherwise.
#[inline]
fn push_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing a &str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

#[inline]
fn push_int(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Row 0's value of `column`, `null` where its status carries none.
#[inline]
fn push_value(out: &mut Vec<u8>, column: &ColumnValues) {
    if !column.has_value(0) {
        out.extend_from_slice(b"null");
        return;
    }
    match column.data() {
        ColumnData::Float32(v) => match v.first() {
            Some(x) => push_f32(out, *x),
            None => out.extend_from_slice(b"null"),
        },
        ColumnData::Float64(v) => match v.first() {
            Some(x) => push_f64(out, *x),
            None => out.extend_from_slice(b"null"),
        },
        ColumnData::Int64(v) => match v.first() {
            Some(x) => push_int(out, *x),
            None => out.extend_from_slice(b"null"),
        },
        ColumnData::Bool(v) => match v.first() {
            Some(x) => out.extend_from_slice(if *x { b"true" } else { b"false" }),
            None => out.extend_from_slice(b"null"),
        },
        ColumnData::Float32Vector { .. } => match column.data().vector(0) {
            Some(v) => push_f32_array(out, v),
            None => out.extend_from_slice(b"null"),
        },
        ColumnData::Other(v) => {
            super::rank_json::push_value(out, v.first().and_then(Option::as_ref));
        }
    }
}

/// The text of one `"event_time":..,"age_ms":..` pair (at most 13 + 20 + 10 + 20 bytes).
struct TimesText {
    time: TimestampMs,
    len: usize,
    bytes: [u8; 64],
}

/// Writes `"event_time":..,"age_ms":..` of a value with `event_time` read at `now`.
/// Batch values share their event time: the text of the last one is reused.
#[inline]
fn push_times(
    out: &mut Vec<u8>,
    event_time: Option<TimestampMs>,
    now: TimestampMs,
    last: &mut Option<TimesText>,
) {
    let Some(t) = event_time else {
        out.extend_from_slice(b"\"event_time\":null,\"age_ms\":null");
        return;
    };
    if let Some(text) = last
        && text.time == t
        && let Some(bytes) = text.bytes.get(..text.len)
    {
        out.extend_from_slice(bytes);
        return;
    }
    let start = out.len();
    out.extend_from_slice(b"\"event_time\":");
    push_int(out, t);
    out.extend_from_slice(b",\"age_ms\":");
    push_int(out, now.saturating_sub(t).max(0));
    let written = out.get(start..).unwrap_or_default();
    let mut text = TimesText {
        time: t,
        len: written.len(),
        bytes: [0; 64],
    };
    match text.bytes.get_mut(..written.len()) {
        Some(slot) => {
            slot.copy_from_slice(written);
            *last = Some(text);
        }
        None => *last = None,
    }
}

/// A generous guess of the encoded size, so the buffer rarely grows.
fn estimated_len(answer: &EntityAnswer) -> usize {
    let values: usize = answer
        .columns()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let value = match c.data() {
                ColumnData::Float32Vector { dim, .. } => 16 * dim + 2,
                ColumnData::Other(v) => match v.first().and_then(Option::as_ref) {
                    Some(Value::String(s)) => s.len() + 8,
                    Some(Value::Bytes(b)) => 2 * b.len() + 2,
                    _ => 24,
                },
                _ => 24,
            };
            answer.name(i).len() + value + 80
        })
        .sum();
    let versions: usize = answer.versions().keys().map(|g| g.len() + 24).sum();
    96 + answer.entity_type().len() + answer.entity_id().len() + values + versions
}

/// Encodes the read response for `answer`:
/// `{"entity_type","entity_id","features":[{"name","status","value","event_time","age_ms"}..],"versions":{group: version}}`.
pub fn encode_entity(answer: &EntityAnswer) -> Vec<u8> {
    let mut out = Vec::with_capacity(estimated_len(answer));
    out.extend_from_slice(b"{\"entity_type\":");
    push_str(&mut out, answer.entity_type());
    out.extend_from_slice(b",\"entity_id\":");
    push_str(&mut out, answer.entity_id());
    out.extend_from_slice(b",\"features\":[");
    let now = answer.now_ms();
    let mut last_time = None;
    for (i, column) in answer.columns().iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        push_str(&mut out, answer.name(i));
        out.extend_from_slice(b",\"status\":\"");
        out.extend_from_slice(column.status(0).as_str().as_bytes());
        out.extend_from_slice(b"\",\"value\":");
        push_value(&mut out, column);
        out.push(b',');
        push_times(&mut out, column.event_time(0), now, &mut last_time);
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"versions\":{");
    for (i, (group, version)) in answer.versions().iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_str(&mut out, group);
        out.push(b':');
        out.extend_from_slice(itoa::Buffer::new().format(*version).as_bytes());
    }
    out.extend_from_slice(b"}}");
    out
}
