//! Training-serving parity: every logged read (the serving log, `crate::servelog`)
//! recomputed from the history as of its log time, through the same planner, and
//! compared value by value with what was served.
//!
//! It owns the comparison and its report ([`ParityReport`]: per feature the values
//! compared, mismatches and their rate, the largest absolute difference of numeric
//! values, and a few examples). A cell matches when its status, value and event time
//! equal the served ones. Cells served `not_fetched` (a deadline cut the read short)
//! are skipped; a logged read that cannot be recomputed (a windowed aggregate, whose
//! tiles the history does not keep; a feature since deleted) is counted in
//! `unverifiable` with its reason, never as a match.
//!
//! Runs on the caller's thread; memory is one record at a time plus the report.
//! [`sampler`] runs the same comparison on a sample of live reads, in the background.

pub mod sampler;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::query::rank::{Cell, FeatureSelection, RankRequest, RankResponse};
use crate::servelog::reader::{Selection, scan};
use crate::servelog::record::{ReadKind, Record};
use crate::store::FeatureStore;
use crate::store::history::read::HistoryQuery;
use crate::types::{FeatureStatus, TimestampMs, Value};

/// Examples kept per feature.
pub const MAX_EXAMPLES: usize = 5;

/// One mismatch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Example {
    /// The logged request's id.
    pub request_id: String,
    /// Its log time.
    pub log_ms: TimestampMs,
    /// The entity (candidate id, or the context entity).
    pub entity: String,
    /// What was served: status, value (JSON), event time.
    pub served: (String, serde_json::Value, Option<TimestampMs>),
    /// What the history answers.
    pub recomputed: (String, serde_json::Value, Option<TimestampMs>),
}

/// One feature's comparison.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FeatureParity {
    /// Values compared.
    pub values: u64,
    /// Values that differ.
    pub mismatches: u64,
    /// `mismatches / values` (0 when nothing was compared).
    pub mismatch_rate: f64,
    /// Largest `|served - recomputed|` over numeric values both present.
    pub max_abs_diff: f64,
    /// The first mismatches.
    pub examples: Vec<Example>,
}

/// What a parity run found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ParityReport {
    /// Logged reads compared.
    pub records: u64,
    /// Values compared, all features.
    pub values: u64,
    /// Values that differ, all features.
    pub mismatches: u64,
    /// Values served `not_fetched`, skipped.
    pub skipped: u64,
    /// Logged reads that could not be recomputed, by reason.
    pub unverifiable: BTreeMap<String, u64>,
    /// Per feature (as served, `name@version`).
    pub features: BTreeMap<String, FeatureParity>,
}

/// A parity run failed (the log could not be read).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParityError {
    /// Reading the serving log.
    #[error(transparent)]
    Log(#[from] crate::servelog::ServeLogError),
}

/// The request that produced `record`'s answer.
fn request_of(record: &Record) -> RankRequest {
    request_for(&record.answer, record.kind == ReadKind::Ranking)
}

/// The request that produced `answer` (a ranking read's when `ranking`, else a GET's:
/// one candidate, the columns named as asked).
pub(crate) fn request_for(answer: &RankResponse, ranking: bool) -> RankRequest {
    let features = match (&answer.service, ranking) {
        (Some(service), true) => FeatureSelection::Service(service.clone()),
        _ => FeatureSelection::Names(
            answer
                .context_columns
                .iter()
                .chain(answer.columns.iter())
                .map(|c| c.name.clone())
                .collect(),
        ),
    };
    RankRequest {
        context: answer.context.clone(),
        candidate_type: answer.candidate_type.clone(),
        candidates: answer.candidates.clone(),
        features,
        deadline: None,
    }
}

fn value_json(value: &Option<Value>) -> serde_json::Value {
    match value {
        None => serde_json::Value::Null,
        Some(Value::Float64(x)) => serde_json::json!(x),
        Some(Value::Float32(x)) => serde_json::json!(x),
        Some(Value::Int64(x)) => serde_json::json!(x),
        Some(Value::Bool(x)) => serde_json::json!(x),
        Some(Value::String(x)) => serde_json::json!(x),
        Some(other) => serde_json::json!(format!("{other:?}")),
    }
}

fn numeric(value: &Option<Value>) -> Option<f64> {
    match value {
        Some(Value::Float64(x)) => Some(*x),
        Some(Value::Float32(x)) => Some(f64::from(*x)),
        Some(Value::Int64(x)) => Some(*x as f64),
        _ => None,
    }
}

/// Same value: floats compared by bits (NaN equals NaN), the rest by equality.
fn same_value(a: &Option<Value>, b: &Option<Value>) -> bool {
    match (a, b) {
        (Some(Value::Float64(x)), Some(Value::Float64(y))) => x.to_bits() == y.to_bits(),
        (Some(Value::Float32(x)), Some(Value::Float32(y))) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

impl ParityReport {
    fn compare(
        &mut self,
        (request_id, log_ms): (&str, TimestampMs),
        feature: &str,
        entity: &str,
        served: &Cell,
        recomputed: &Cell,
    ) {
        if served.status == FeatureStatus::NotFetched {
            self.skipped += 1;
            return;
        }
        let entry = self.features.entry(feature.to_owned()).or_default();
        entry.values += 1;
        self.values += 1;
        let same = served.status == recomputed.status
            && same_value(&served.value, &recomputed.value)
            && served.event_time == recomputed.event_time;
        if let (Some(a), Some(b)) = (numeric(&served.value), numeric(&recomputed.value)) {
            let diff = (a - b).abs();
            if diff > entry.max_abs_diff {
                entry.max_abs_diff = diff;
            }
        }
        if same {
            return;
        }
        entry.mismatches += 1;
        self.mismatches += 1;
        if entry.examples.len() < MAX_EXAMPLES {
            entry.examples.push(Example {
                request_id: request_id.to_owned(),
                log_ms,
                entity: entity.to_owned(),
                served: (
                    served.status.as_str().to_owned(),
                    value_json(&served.value),
                    served.event_time,
                ),
                recomputed: (
                    recomputed.status.as_str().to_owned(),
                    value_json(&recomputed.value),
                    recomputed.event_time,
                ),
            });
        }
    }

    /// Compares one logged read with its recomputation.
    fn record(&mut self, record: &Record, again: &RankResponse) {
        self.compare_answers(&record.request_id, &record.answer, again);
    }

    /// Compares one served answer (of request `request_id`) with its recomputation.
    pub(crate) fn compare_answers(
        &mut self,
        request_id: &str,
        served: &RankResponse,
        again: &RankResponse,
    ) {
        self.records += 1;
        let read = (request_id, served.now_ms);
        let context_entity = served
            .context
            .first()
            .map(|(t, id)| format!("{t}:{id}"))
            .unwrap_or_default();
        for (i, column) in served.context_columns.iter().enumerate() {
            let recomputed = again.context_cells.get(i).cloned().unwrap_or(Cell {
                status: FeatureStatus::NotFound,
                value: None,
                event_time: None,
            });
            if let Some(cell) = served.context_cells.get(i) {
                self.compare(read, &column.feature, &context_entity, cell, &recomputed);
            }
        }
        for (row, id) in served.candidates.iter().enumerate() {
            for (j, column) in served.columns.iter().enumerate() {
                let cell = served.cell(row, j);
                let recomputed = again.cell(row, j);
                self.compare(read, &column.feature, id, &cell, &recomputed);
            }
        }
    }

    pub(crate) fn finish(&mut self) {
        for f in self.features.values_mut() {
            f.mismatch_rate = if f.values == 0 {
                0.0
            } else {
                f.mismatches as f64 / f.values as f64
            };
        }
    }
}

/// Recomputes every read logged in `log_dir` that `selection` keeps as known at its log
/// time and compares it with what was served (see the module doc).
pub fn check(
    store: &FeatureStore,
    log_dir: &Path,
    selection: &Selection,
) -> Result<ParityReport, ParityError> {
    let mut report = ParityReport::default();
    scan(log_dir, selection, |record| {
        let request = request_of(&record);
        match store.rank_from_history(request, record.log_ms(), HistoryQuery::AsOf, None) {
            Ok(again) => report.record(&record, &again),
            Err(e) => {
                *report.unverifiable.entry(e.to_string()).or_default() += 1;
            }
        }
    })?;
    report.finish();
    Ok(report)
}
