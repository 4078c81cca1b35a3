//! The JSON push body `{"events": [..]}`, parsed in one pass with no document tree.
//!
//! A `serde_json::Value` tree of a push costs about ten times the body (a map node,
//! boxed strings and 32-byte values per event), and the old parser held that tree, the
//! typed events and their validated writes at once. Here each event is deserialized
//! straight into a [`PushEvent`], its values typed by the registered dtype as they are
//! read (strings borrowed from the body where they have no escapes), and handed to the
//! caller before the next one is read; [`FeatureStore::push_json`] validates it at once,
//! so at most one unvalidated event exists at a time, and once an event is rejected
//! no validated write is kept (the answer lists rejections only).
//!
//! What is an error of the body (answered [`PushError::Malformed`]: not JSON, not
//! `{"events": [..]}`) and what is an error of one event (a [`Rejection`] with its
//! index: a field of the wrong type, unknown, missing or given twice; an unknown
//! feature; a value not of the feature's dtype) is as in the API docs: a well-formed
//! body always gets every event judged.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::event::{PushError, PushEvent, PushOutcome, Rejection, prepare};
use crate::FeatureStore;
use crate::registry::Registry;
use crate::types::{DType, TimestampMs, Value, now_ms, parse_timestamp_ms};

/// The body's shape, named in the error when it is not.
const SHAPE: &str = "expected {\"events\": [..]}";

/// Parses a push body, calling `on_event(index, event)` for each event in order as
/// soon as it is read (`Err` holds why that event is invalid). Returns the number of
/// events; [`PushError::Empty`] when there are none.
pub fn for_each_event(
    registry: &Registry,
    body: &[u8],
    mut on_event: impl FnMut(usize, Result<PushEvent, String>),
) -> Result<usize, PushError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut shape_error = false;
    let seed = BodySeed {
        registry,
        on_event: &mut on_event,
        shape_error: &mut shape_error,
    };
    let parsed = seed
        .deserialize(&mut de)
        .and_then(|count| de.end().map(|()| count));
    match parsed {
        Ok(0) => Err(PushError::Empty),
        Ok(count) => Ok(count),
        Err(_) if shape_error => Err(PushError::Malformed(SHAPE.into())),
        Err(e) => Err(PushError::Malformed(e.to_string())),
    }
}

/// Parses a push body into its events, in order (see [`for_each_event`]).
pub fn parse_events(
    registry: &Registry,
    body: &[u8],
) -> Result<Vec<Result<PushEvent, String>>, PushError> {
    let mut events = Vec::new();
    for_each_event(registry, body, |_, event| events.push(event))?;
    Ok(events)
}

impl FeatureStore {
    /// Pushes a JSON body `{"events": [..]}` (the HTTP API's form), with the semantics
    /// of [`FeatureStore::push`]: events that do not parse are rejected with the others'
    /// validation errors, all in one answer. Each event is validated as it is parsed.
    pub fn push_json(&self, body: &[u8]) -> Result<PushOutcome, PushError> {
        self.push_json_checked(body, None)
    }

    /// [`push_json`](Self::push_json) for a caller whose push rules `check` judges
    /// every feature named: one refused feature refuses the whole push
    /// ([`PushError::Denied`]), nothing applied.
    pub fn push_json_checked(
        &self,
        body: &[u8],
        check: Option<super::event::PushCheck<'_>>,
    ) -> Result<PushOutcome, PushError> {
        let started = std::time::Instant::now();
        let result = self.push_json_unobserved(body, check);
        let events = match &result {
            Ok(outcome) => {
                usize::try_from(outcome.accepted + outcome.duplicates).unwrap_or(usize::MAX)
            }
            Err(PushError::Rejected { events, .. }) => *events,
            Err(_) => 0,
        };
        self.report_push(started, events, result)
    }

    fn push_json_unobserved(
        &self,
        body: &[u8],
        check: Option<super::event::PushCheck<'_>>,
    ) -> Result<PushOutcome, PushError> {
        let view = self.view();
        let registry = view.registry();
        let aggregates = self.stream.aggregates.load();
        let now = now_ms();
        let mut prepared = Vec::new();
        let mut rejections: Vec<Rejection> = Vec::new();
        let mut denied = None;
        let events = for_each_event(registry, body, |index, event| {
            if denied.is_some() {
                return;
            }
            if let Ok(e) = &event
                && let Err(d) = super::event::check_event(registry, e, check)
            {
                denied = Some(d);
                return;
            }
            match event.and_then(|e| prepare(registry, &aggregates, &e, now)) {
                Ok(p) if rejections.is_empty() => prepared.push(p),
                // Nothing will be written: keep only what the answer lists.
                Ok(_) => {}
                Err(reason) => {
                    if rejections.is_empty() {
                        prepared = Vec::new();
                    }
                    rejections.push(Rejection { index, reason });
                }
            }
        })?;
        if let Some(denied) = denied {
            return Err(PushError::Denied(denied));
        }
        if !rejections.is_empty() {
            return Err(PushError::Rejected { rejections, events });
        }
        drop(aggregates);
        self.commit_prepared(&view, prepared)
    }
}

/// A string of the body: borrowed when it has no escapes.
struct Text<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Any JSON value, with containers skipped (never built): what a field holds.
enum Scalar<'de> {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer above `i64::MAX`.
    BigInt(u64),
    Float(f64),
    Str(Cow<'de, str>),
    Array,
    Object,
}

impl Scalar<'_> {
    /// How the value reads in an error message (containers are not repeated).
    fn describe(&self) -> String {
        match self {
            Scalar::Null => "null".into(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(n) => n.to_string(),
            Scalar::BigInt(n) => n.to_string(),
            Scalar::Float(x) => describe_float(*x),
            Scalar::Str(s) => {
                serde_json::to_string(s.as_ref()).unwrap_or_else(|_| "a string".into())
            }
            Scalar::Array => "an array".into(),
            Scalar::Object => "an object".into(),
        }
    }
}

/// A float as JSON writes it.
fn describe_float(x: f64) -> String {
    serde_json::Number::from_f64(x).map_or_else(|| x.to_string(), |n| n.to_string())
}

impl<'de> de::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Bool(b))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Int(n))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Scalar<'de>, E> {
        Ok(i64::try_from(n).map_or(Scalar::BigInt(n), Scalar::Int))
    }
    fn visit_f64<E: de::Error>(self, x: f64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Float(x))
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Owned(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Object)
    }
}

/// The top level: exactly one key, `events`, holding an array.
struct BodySeed<'a, F> {
    registry: &'a Registry,
    on_event: &'a mut F,
    /// Set when the body is JSON of another shape (the error then names [`SHAPE`]).
    shape_error: &'a mut bool,
}

impl<'de, F: FnMut(usize, Result<PushEvent, String>)> DeserializeSeed<'de> for BodySeed<'_, F> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, F: FnMut(usize, Result<PushEvent, String>)> Visitor<'de> for BodySeed<'_, F> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SHAPE)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
        let mut count = None;
        while let Some(key) = map.next_key::<Text<'de>>()? {
            if key.0 != "events" || count.is_some() {
                *self.shape_error = true;
                return Err(de::Error::custom(SHAPE));
            }
            count = Some(map.next_value_seed(EventsSeed {
                registry: self.registry,
                on_event: &mut *self.on_event,
                shape_error: &mut *self.shape_error,
            })?);
        }
        count.ok_or_else(|| {
            *self.shape_error = true;
            de::Error::custom(SHAPE)
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<usize, A::Error> {
        *self.shape_error = true;
        Err(de::Error::custom(SHAPE))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<usize, E> {
        self.wrong_shape()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<usize, E> {
        self.wrong_shape()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<usize, E> {
        self.wrong_shape()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<usize, E> {
        self.wrong_shape()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<usize, E> {
        self.wrong_shape()
    }
    fn visit_unit<E: de::Error>(self) -> Result<usize, E> {
        self.wrong_shape()
    }
}

impl<F> BodySeed<'_, F> {
    fn wrong_shape<E: de::Error>(self) -> Result<usize, E> {
        *self.shape_error = true;
        Err(E::custom(SHAPE))
    }
}

/// The `events` array: each element judged by [`EventSeed`] and handed on at once.
struct EventsSeed<'a, F> {
    registry: &'a Registry,
    on_event: &'a mut F,
    shape_error: &'a mut bool,
}

impl<'de, F: FnMut(usize, Result<PushEvent, String>)> DeserializeSeed<'de> for EventsSeed<'_, F> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, F: FnMut(usize, Result<PushEvent, String>)> Visitor<'de> for EventsSeed<'_, F> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut index = 0;
        while let Some(event) = seq.next_element_seed(EventSeed {
            registry: self.registry,
        })? {
            (self.on_event)(index, event);
            index += 1;
        }
        Ok(index)
    }

    fn visit_map<A: MapAccess<'de>>(self, _map: A) -> Result<usize, A::Error> {
        *self.shape_error = true;
        Err(de::Error::custom(SHAPE))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<usize, E> {
        self.wrong_shape()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<usize, E> {
        self.wrong_shape()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<usize, E> {
        self.wrong_shape()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<usize, E> {
        self.wrong_shape()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<usize, E> {
        self.wrong_shape()
    }
    fn visit_unit<E: de::Error>(self) -> Result<usize, E> {
        self.wrong_shape()
    }
}

impl<F> EventsSeed<'_, F> {
    fn wrong_shape<E: de::Error>(self) -> Result<usize, E> {
        *self.shape_error = true;
        Err(E::custom(SHAPE))
    }
}

/// The fields of an event, in the order their errors are reported.
const FIELDS: &str = "entity_type, entity_id, event_time, features, event_id";

/// One event: an object of [`FIELDS`]. A well-formed element that is not a valid event
/// is `Ok(Err(reason))`, so the array goes on.
struct EventSeed<'a> {
    registry: &'a Registry,
}

impl<'de> DeserializeSeed<'de> for EventSeed<'_> {
    type Value = Result<PushEvent, String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// A field seen once, twice, or not at all.
enum Slot<T> {
    Missing,
    Given(T),
    Twice,
}

impl<T> Slot<T> {
    fn set(&mut self, value: T) {
        *self = match self {
            Slot::Missing => Slot::Given(value),
            _ => Slot::Twice,
        };
    }
}

impl<'de> Visitor<'de> for EventSeed<'_> {
    type Value = Result<PushEvent, String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut unknown: Option<String> = None;
        let mut entity_type = Slot::Missing;
        let mut entity_id = Slot::Missing;
        let mut event_time = Slot::Missing;
        let mut event_id = Slot::Missing;
        let mut features = Slot::Missing;
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match key.0.as_ref() {
                "entity_type" => entity_type.set(map.next_value::<Scalar<'de>>()?),
                "entity_id" => entity_id.set(map.next_value::<Scalar<'de>>()?),
                "event_time" => event_time.set(map.next_value::<Scalar<'de>>()?),
                "event_id" => event_id.set(map.next_value::<Scalar<'de>>()?),
                "features" => features.set(map.next_value_seed(FeaturesSeed {
                    registry: self.registry,
                })?),
                other => {
                    if unknown.is_none() {
                        unknown = Some(other.to_owned());
                    }
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(build_event(
            unknown,
            entity_type,
            entity_id,
            event_time,
            event_id,
            features,
        ))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        ScalarVisitor.visit_seq(seq)?;
        Ok(Err(not_an_object()))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err(not_an_object()))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Err(not_an_object()))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Err(not_an_object()))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err(not_an_object()))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Err(not_an_object()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Err(not_an_object()))
    }
}

fn not_an_object() -> String {
    "an event must be a JSON object".into()
}

/// Judges the fields of one event, reporting the first problem in [`FIELDS`] order.
fn build_event(
    unknown: Option<String>,
    entity_type: Slot<Scalar<'_>>,
    entity_id: Slot<Scalar<'_>>,
    event_time: Slot<Scalar<'_>>,
    event_id: Slot<Scalar<'_>>,
    features: Slot<Result<Vec<(String, Value)>, String>>,
) -> Result<PushEvent, String> {
    if let Some(key) = unknown {
        return Err(format!("unknown field `{key}`; expected {FIELDS}"));
    }
    let text = |field: &str, slot: Slot<Scalar<'_>>| -> Result<String, String> {
        match slot {
            Slot::Given(Scalar::Str(s)) => Ok(s.into_owned()),
            Slot::Given(_) => Err(format!("`{field}` must be a string")),
            Slot::Missing => Err(format!("`{field}` is missing")),
            Slot::Twice => Err(given_twice(field)),
        }
    };
    let entity_type = text("entity_type", entity_type)?;
    let entity_id = text("entity_id", entity_id)?;
    let event_time = match event_time {
        Slot::Given(scalar) => parse_event_time(scalar)?,
        Slot::Missing => return Err("`event_time` is missing".into()),
        Slot::Twice => return Err(given_twice("event_time")),
    };
    let features = match features {
        Slot::Given(features) => features?,
        Slot::Missing => return Err(features_shape()),
        Slot::Twice => return Err(given_twice("features")),
    };
    let event_id = match event_id {
        Slot::Missing | Slot::Given(Scalar::Null) => None,
        Slot::Given(Scalar::Str(s)) => Some(s.into_owned()),
        Slot::Given(_) => return Err("`event_id` must be a string".into()),
        Slot::Twice => return Err(given_twice("event_id")),
    };
    Ok(PushEvent {
        entity_type,
        entity_id,
        event_time,
        features,
        event_id,
    })
}

fn given_twice(field: &str) -> String {
    format!("`{field}` is given twice")
}

fn features_shape() -> String {
    "`features` must be an object of name: value".into()
}

fn parse_event_time(scalar: Scalar<'_>) -> Result<TimestampMs, String> {
    match scalar {
        Scalar::Int(ms) => Ok(ms),
        Scalar::BigInt(_) | Scalar::Float(_) => Err(format!(
            "event_time {} is not an integer of milliseconds",
            scalar.describe()
        )),
        Scalar::Str(s) => parse_timestamp_ms(&s).map_err(|e| format!("event_time: {e}")),
        _ => Err("`event_time` must be epoch milliseconds or RFC 3339 text".into()),
    }
}

/// The `features` object: each value typed by its feature's registered dtype while it
/// is read. `Ok(Err(reason))` for the first bad feature; the object is read to its end.
struct FeaturesSeed<'a> {
    registry: &'a Registry,
}

impl<'de> DeserializeSeed<'de> for FeaturesSeed<'_> {
    type Value = Result<Vec<(String, Value)>, String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FeaturesSeed<'_> {
    type Value = Result<Vec<(String, Value)>, String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of name: value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut values = Vec::with_capacity(map.size_hint().unwrap_or(8));
        let mut error: Option<String> = None;
        while let Some(name) = map.next_key::<Text<'de>>()? {
            let dtype = match (&error, self.registry.resolve(&name.0)) {
                (None, Some(def)) => def.spec.dtype,
                (None, None) => {
                    error = Some(format!("unknown feature `{}`", name.0));
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                (Some(_), _) => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            match map.next_value_seed(ValueSeed { dtype })? {
                Ok(value) => values.push((name.0.into_owned(), value)),
                Err(e) => error = Some(format!("feature `{}`: {e}", name.0)),
            }
        }
        Ok(match error {
            Some(e) => Err(e),
            None => Ok(values),
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        ScalarVisitor.visit_seq(seq)?;
        Ok(Err(features_shape()))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err(features_shape()))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Err(features_shape()))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Err(features_shape()))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err(features_shape()))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Err(features_shape()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Err(features_shape()))
    }
}

/// One feature value, typed by `dtype`: `null` for any dtype, a JSON number for the
/// numeric ones (an integer for int64), a bool, a string (hex for bytes), an array of
/// exactly `dim` numbers for a vector.
struct ValueSeed {
    dtype: DType,
}

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Result<Value, String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl ValueSeed {
    fn wrong(&self, got: &Scalar<'_>) -> String {
        format!("{} is not a valid {}", got.describe(), self.dtype)
    }

    fn scalar(self, got: Scalar<'_>) -> Result<Value, String> {
        Ok(match (&got, self.dtype) {
            (Scalar::Null, _) => Value::Null,
            (Scalar::Int(n), DType::Int64) => Value::Int64(*n),
            (Scalar::Int(n), DType::Float64) => Value::Float64(*n as f64),
            (Scalar::BigInt(n), DType::Float64) => Value::Float64(*n as f64),
            (Scalar::Float(x), DType::Float64) => Value::Float64(*x),
            (Scalar::Int(n), DType::Float32) => Value::Float32(*n as f32),
            (Scalar::BigInt(n), DType::Float32) => Value::Float32(*n as f32),
            (Scalar::Float(x), DType::Float32) => Value::Float32(*x as f32),
            (Scalar::Bool(b), DType::Bool) => Value::Bool(*b),
            (Scalar::Str(s), DType::String) => Value::String(s.as_ref().to_owned()),
            (Scalar::Str(s), DType::Bytes) => Value::parse_text(s, DType::Bytes)?,
            _ => return Err(self.wrong(&got)),
        })
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = Result<Value, String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} value", self.dtype)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(self.scalar(Scalar::Null))
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
        Ok(self.scalar(Scalar::Bool(b)))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
        Ok(self.scalar(Scalar::Int(n)))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
        Ok(self.scalar(ScalarVisitor.visit_u64::<E>(n)?))
    }
    fn visit_f64<E: de::Error>(self, x: f64) -> Result<Self::Value, E> {
        Ok(self.scalar(Scalar::Float(x)))
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(self.scalar(Scalar::Str(Cow::Borrowed(s))))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(self.scalar(Scalar::Str(Cow::Borrowed(s))))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        ScalarVisitor.visit_map(map)?;
        Ok(Err(self.wrong(&Scalar::Object)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let DType::Float32Vector { dim } = self.dtype else {
            ScalarVisitor.visit_seq(seq)?;
            return Ok(Err(self.wrong(&Scalar::Array)));
        };
        let dim = dim as usize;
        let mut components = Vec::with_capacity(dim.min(seq.size_hint().unwrap_or(dim)));
        let mut count = 0usize;
        let mut bad: Option<String> = None;
        while let Some(item) = seq.next_element::<Scalar<'de>>()? {
            match item {
                Scalar::Int(n) => components.push(n as f32),
                Scalar::BigInt(n) => components.push(n as f32),
                Scalar::Float(x) => components.push(x as f32),
                other => {
                    if bad.is_none() {
                        bad = Some(format!(
                            "component {count} ({}) of the vector is not a number",
                            other.describe()
                        ));
                    }
                }
            }
            count += 1;
            if count > dim {
                // The error only needs the count: keep no more components.
                components.clear();
            }
        }
        Ok(if count != dim {
            Err(format!(
                "vector has {count} components, the feature's dimension is {dim}"
            ))
        } else if let Some(bad) = bad {
            Err(bad)
        } else {
            Ok(Value::Float32Vector(components))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::file::parse_features_toml;

    fn registry() -> Registry {
        let specs = parse_features_toml(
            r#"
            [[feature]]
            name = "stock"
            entity_type = "product"
            group = "live"
            owner = "t"
            dtype = "int64"

            [[feature]]
            name = "price"
            entity_type = "product"
            group = "live"
            owner = "t"
            dtype = "float32"

            [[feature]]
            name = "score"
            entity_type = "product"
            group = "live"
            owner = "t"
            dtype = "float64"

            [[feature]]
            name = "tags"
            entity_type = "product"
            group = "live"
            owner = "t"
            dtype = "float32_vector[2]"

            [[feature]]
            name = "label"
            entity_type = "product"
            group = "live"
            owner = "t"
            dtype = "string"

            [[feature]]
            name = "blob"
            entity_type = "product"
            group = "live"
            owner = "t"
            dtype = "bytes"

            [[feature]]
            name = "flag"
            entity_type = "product"
            group = "live"
            owner = "t"
            dtype = "bool"
            "#,
            "body tests",
        )
        .expect("specs");
        Registry::from_definitions(specs.into_iter().zip(1..).map(|(spec, id)| {
            crate::registry::FeatureDefinition {
                id,
                registered_at_ms: 0,
                updated_at_ms: 0,
                spec,
            }
        }))
    }

    fn events(body: &str) -> Vec<Result<PushEvent, String>> {
        parse_events(&registry(), body.as_bytes()).expect(body)
    }

    fn reason(body: &str) -> String {
        let mut all = events(body);
        assert_eq!(all.len(), 1, "{body}");
        all.remove(0).expect_err(body)
    }

    #[test]
    fn events_are_typed_by_their_dtype() {
        let all = events(
            r#"{"events": [
              {"entity_type": "product", "entity_id": "p\"1", "event_time": 1700000000000,
               "features": {"stock": 7, "price": 2.5, "score": 3, "tags": [0.5, 1],
                            "label": "  padded \u00e9 ", "blob": "00ff", "flag": true,
                            "stock@1": null},
               "event_id": "e-1"},
              {"event_time": "1970-01-01T00:00:01Z", "entity_id": "p2",
               "features": {}, "entity_type": "product", "event_id": null}
            ]}"#,
        );
        let first = all[0].as_ref().expect("valid");
        assert_eq!(first.entity_type, "product");
        assert_eq!(first.entity_id, "p\"1");
        assert_eq!(first.event_time, 1_700_000_000_000);
        assert_eq!(first.event_id.as_deref(), Some("e-1"));
        assert_eq!(
            first.features,
            vec![
                ("stock".to_owned(), Value::Int64(7)),
                ("price".to_owned(), Value::Float32(2.5)),
                ("score".to_owned(), Value::Float64(3.0)),
                ("tags".to_owned(), Value::Float32Vector(vec![0.5, 1.0])),
                ("label".to_owned(), Value::String("  padded é ".into())),
                ("blob".to_owned(), Value::Bytes(vec![0, 255])),
                ("flag".to_owned(), Value::Bool(true)),
                ("stock@1".to_owned(), Value::Null),
            ]
        );
        let second = all[1].as_ref().expect("valid");
        assert_eq!(second.event_time, 1000);
        assert_eq!(second.event_id, None);
        assert!(second.features.is_empty());
    }

    #[test]
    fn each_bad_event_gets_its_reason_and_the_rest_are_read() {
        let ok =
            r#"{"entity_type":"product","entity_id":"p","event_time":1,"features":{"stock":1}}"#;
        let cases = [
            (r#"[1, {"a": 2}]"#, "must be a JSON object"),
            ("7", "must be a JSON object"),
            (
                r#"{"entity_type":"product","entity_id":"p","event_time":1,"features":{},"extra":{"deep":[1]}}"#,
                "unknown field `extra`",
            ),
            (
                r#"{"entity_id":"p","event_time":1,"features":{}}"#,
                "`entity_type` is missing",
            ),
            (
                r#"{"entity_type":["product"],"entity_id":"p","event_time":1,"features":{}}"#,
                "`entity_type` must be a string",
            ),
            (
                r#"{"entity_type":"product","entity_id":"p","entity_id":"q","event_time":1,"features":{}}"#,
                "`entity_id` is given twice",
            ),
            (
                r#"{"entity_type":"product","entity_id":"p","event_time":1.5,"features":{}}"#,
                "event_time 1.5 is not an integer of milliseconds",
            ),
            (
                r#"{"entity_type":"product","entity_id":"p","event_time":true,"features":{}}"#,
                "must be epoch milliseconds or RFC 3339",
            ),
            (
                r#"{"entity_type":"product","entity_id":"p","event_time":"yesterday","features":{}}"#,
                "event_time:",
            ),
            (
                r#"{"entity_type":"product","entity_id":"p","event_time":1}"#,
                "`features` must be an object",
            ),
            (
                r#"{"entity_type":"product","entity_id":"p","event_time":1,"features":[1]}"#,
                "`features` must be an object",
            ),
            (
                r#"{"entity_type":"product","entity_id":"p","event_time":1,"features":{"nope":{"x":1},"stock":"many"}}"#,
                "unknown feature `nope`",
            ),
            (
                r#"{"entity_type":"product","entity_id":"p","event_time":1,"features":{"stock":"many"}}"#,
                r#"feature `stock`: "many" is not a valid int64"#,
            ),
            (
                r#"{"entity_type":"product","entity_id":"p","event_time":1,"features":{"stock":1.5}}"#,
                "1.5 is not a valid int64",
            ),
            (
                r#"{"entity_type":"product","entity_id":"p","event_time":1,"features":{"stock":9223372036854775808}}"#,
                "9223372036854775808 is not a valid int64",
            ),
            (
                r#"{"entity_type":"product","entity_id":"p","event_time":1,"features":{"tags":[1]}}"#,
                "vector has 1 components, the feature's dimension is 2",
            ),
            (
                r#"{"entity_type":"product","entity_id":"p","event_time":1,"features":{"tags":[1,2,3,4]}}"#,
                "vector has 4 components",
            ),
            (
                r#"{"entity_type":"product","entity_id":"p","event_time":1,"features":{"tags":[1,"x"]}}"#,
                "component 1 (\"x\") of the vector is not a number",
            ),
            (
                r#"{"entity_type":"product","entity_id":"p","event_time":1,"features":{"flag":{"a":1}}}"#,
                "an object is not a valid bool",
            ),
            (
                r#"{"entity_type":"product","entity_id":"p","event_time":1,"features":{"blob":"zz"}}"#,
                "feature `blob`",
            ),
            (
                r#"{"entity_type":"product","entity_id":"p","event_time":1,"features":{},"event_id":5}"#,
                "`event_id` must be a string",
            ),
        ];
        for (bad, needle) in cases {
            let body = format!(r#"{{"events": [{bad}, {ok}]}}"#);
            let all = events(&body);
            assert_eq!(all.len(), 2, "{body}");
            let reason = all[0].as_ref().expect_err(&body);
            assert!(reason.contains(needle), "{bad}: {reason}");
            assert!(all[1].is_ok(), "{body}: the next event is read");
        }
    }

    #[test]
    fn the_first_field_error_in_field_order_wins() {
        let first = reason(r#"{"events": [{"features": 1, "event_time": true, "zzz": 1}]}"#);
        assert!(first.starts_with("unknown field `zzz`"), "{first}");
        let first = reason(r#"{"events": [{"features": 1, "entity_id": 2}]}"#);
        assert_eq!(first, "`entity_type` is missing");
    }

    #[test]
    fn malformed_bodies_are_refused_whole() {
        let registry = registry();
        for (body, shape) in [
            ("", false),
            ("{", false),
            (r#"{"events": [}"#, false),
            (r#"{"events": []} x"#, false),
            (r#"{"events": 3}"#, true),
            (r#"{"events": {}}"#, true),
            (r#"{"events": [], "more": 1}"#, true),
            (r#"{"events": [], "events": []}"#, true),
            ("{}", true),
            ("[]", true),
            ("null", true),
            ("\"events\"", true),
        ] {
            match parse_events(&registry, body.as_bytes()) {
                Err(PushError::Malformed(message)) => {
                    assert_eq!(message == SHAPE, shape, "{body:?}: {message}");
                }
                other => panic!("{body:?}: expected Malformed, got {other:?}"),
            }
        }
        assert_eq!(
            parse_events(&registry, br#"{"events": []}"#),
            Err(PushError::Empty)
        );
    }

    #[test]
    fn events_are_handed_on_in_order_as_they_are_read() {
        let registry = registry();
        let mut seen = Vec::new();
        let count = for_each_event(
            &registry,
            br#"{"events": [0, {"entity_type":"product","entity_id":"p","event_time":1,"features":{}}, "x"]}"#,
            |index, event| seen.push((index, event.is_ok())),
        )
        .expect("well-formed");
        assert_eq!(count, 3);
        assert_eq!(seen, vec![(0, false), (1, true), (2, false)]);
    }
}
