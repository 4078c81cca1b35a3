//! Parsing of the server's read answers (single reads and ranking reads, JSON) into
//! per-group, per-feature [`Got`]s the model checks.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::data::{Cell, Group, Kind, LIVE_COUNT, LIVE_N, LIVE_S};
use crate::model::{Got, Status};

/// A value of `kind` in an answer.
pub fn cell(kind: Kind, value: &Json) -> Option<Cell> {
    match kind {
        Kind::Int => value.as_i64().map(Cell::Int),
        Kind::Str => value.as_str().map(|s| Cell::Str(s.to_owned())),
        Kind::Float => value.as_f64().map(Cell::Float),
        Kind::Vec2 => {
            let items = value.as_array()?;
            match items.as_slice() {
                [a, b] => Some(Cell::Vec2([a.as_f64()? as f32, b.as_f64()? as f32])),
                _ => None,
            }
        }
    }
}

/// The `versions` map of an answer, by group.
pub fn versions(answer: &Json) -> BTreeMap<Group, u64> {
    answer
        .get("versions")
        .and_then(Json::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(g, v)| Some((Group::by_name(g)?, v.as_u64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// One entity's batch features of a single read asking [`crate::data::batch_feature_names`],
/// split by group.
pub fn single_batch(answer: &Json) -> Result<BTreeMap<Group, Vec<Got>>, String> {
    let features = answer
        .get("features")
        .and_then(Json::as_array)
        .ok_or_else(|| format!("no `features` in {answer}"))?;
    let mut out = BTreeMap::new();
    let mut i = 0;
    for group in Group::ALL {
        let mut gots = Vec::new();
        for f in group.features() {
            let item = features
                .get(i)
                .ok_or_else(|| format!("answer has {} features: {answer}", features.len()))?;
            i += 1;
            if item.get("name").and_then(Json::as_str) != Some(f.name) {
                return Err(format!("feature {i} is not {}: {answer}", f.name));
            }
            gots.push(single_got(f.kind, item));
        }
        out.insert(group, gots);
    }
    Ok(out)
}

fn single_got(kind: Kind, item: &Json) -> Got {
    let status = Status::from_name(item.get("status").and_then(Json::as_str).unwrap_or("?"));
    let value = item.get("value").unwrap_or(&Json::Null);
    Got {
        cell: if value.is_null() {
            None
        } else {
            cell(kind, value)
        },
        status,
        event_time: item.get("event_time").and_then(Json::as_i64),
    }
}

/// One entity's answered batch features, per group.
pub type ByGroup = BTreeMap<Group, Vec<Got>>;

/// The rows of a ranking answer asking the batch features of every group, by
/// candidate id: per group, its [`Got`]s.
pub fn rank_batch(answer: &Json) -> Result<Vec<(String, ByGroup)>, String> {
    let kinds: Vec<(Group, Kind)> = Group::ALL
        .iter()
        .flat_map(|g| g.features().iter().map(move |f| (*g, f.kind)))
        .collect();
    let rows = rank_rows(answer, kinds.len())?;
    Ok(rows
        .into_iter()
        .map(|(id, cells)| {
            let mut by_group: BTreeMap<Group, Vec<Got>> = BTreeMap::new();
            for ((group, kind), (status, value, time)) in kinds.iter().zip(cells) {
                by_group.entry(*group).or_default().push(Got {
                    cell: if value.is_null() {
                        None
                    } else {
                        cell(*kind, &value)
                    },
                    status,
                    event_time: time,
                });
            }
            (id, by_group)
        })
        .collect())
}

type RankCell = (Status, Json, Option<i64>);

/// Rows of a ranking answer of `width` columns: id, then per column status, value and
/// event time.
fn rank_rows(answer: &Json, width: usize) -> Result<Vec<(String, Vec<RankCell>)>, String> {
    let times: Vec<i64> = answer
        .get("event_times")
        .and_then(Json::as_array)
        .map(|a| a.iter().filter_map(Json::as_i64).collect())
        .unwrap_or_default();
    let rows = answer
        .get("candidates")
        .and_then(|c| c.get("rows"))
        .and_then(Json::as_array)
        .ok_or_else(|| format!("no candidate rows in {answer}"))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let id = row
            .get("id")
            .and_then(Json::as_str)
            .ok_or("a row without id")?
            .to_owned();
        let values = row
            .get("values")
            .and_then(Json::as_array)
            .ok_or("a row without values")?;
        let status: Vec<char> = row
            .get("status")
            .and_then(Json::as_str)
            .ok_or("a row without status")?
            .chars()
            .collect();
        let index = row.get("event_time").and_then(Json::as_array);
        if values.len() != width || status.len() != width {
            return Err(format!("row {id} has not {width} columns: {row}"));
        }
        let cells = (0..width)
            .map(|c| {
                let time = index
                    .and_then(|ix| ix.get(c))
                    .and_then(Json::as_u64)
                    .and_then(|i| times.get(usize::try_from(i).ok()?).copied());
                (Status::from_letter(status[c]), values[c].clone(), time)
            })
            .collect();
        out.push((id, cells));
    }
    Ok(out)
}

/// A user's pushed features as answered: (latest `cl_n`, `cl_s`, event time), whether
/// a label came, and the count.
pub type LiveRead = (Option<(i64, String, i64)>, bool, u64);

/// The live features of a single read asking `cl_n,cl_s,cl_count`.
pub fn single_live(answer: &Json) -> Result<LiveRead, String> {
    let features = answer
        .get("features")
        .and_then(Json::as_array)
        .ok_or_else(|| format!("no `features` in {answer}"))?;
    let by_name = |name: &str| {
        features
            .iter()
            .find(|f| f.get("name").and_then(Json::as_str) == Some(name))
            .ok_or_else(|| format!("{name} missing in {answer}"))
    };
    let n = by_name(LIVE_N)?;
    let s = by_name(LIVE_S)?;
    let count = by_name(LIVE_COUNT)?;
    live(
        (
            n.get("status").and_then(Json::as_str),
            n.get("value"),
            n.get("event_time").and_then(Json::as_i64),
        ),
        (
            s.get("status").and_then(Json::as_str),
            s.get("value"),
            s.get("event_time").and_then(Json::as_i64),
        ),
        (
            count.get("status").and_then(Json::as_str),
            count.get("value"),
        ),
        answer,
    )
}

type Field<'a> = (Option<&'a str>, Option<&'a Json>, Option<i64>);

fn live(
    n: Field<'_>,
    s: Field<'_>,
    count: (Option<&str>, Option<&Json>),
    answer: &Json,
) -> Result<LiveRead, String> {
    let count = match count {
        (Some("present"), Some(v)) => v
            .as_u64()
            .ok_or_else(|| format!("count is not a number: {answer}"))?,
        (Some("not_found"), _) => 0,
        _ => return Err(format!("unexpected count in {answer}")),
    };
    let label_present = s.0 == Some("present");
    let latest = match n.0 {
        Some("present") => {
            let value =
                n.1.and_then(Json::as_i64)
                    .ok_or_else(|| format!("cl_n is not an int: {answer}"))?;
            let time =
                n.2.ok_or_else(|| format!("cl_n without event time: {answer}"))?;
            let label = s.1.and_then(Json::as_str).unwrap_or("").to_owned();
            if !label_present || s.2 != Some(time) {
                return Err(format!(
                    "cl_n and cl_s of one event answered apart: {answer}"
                ));
            }
            Some((value, label, time))
        }
        Some("not_found") => None,
        _ => return Err(format!("unexpected cl_n in {answer}")),
    };
    Ok((latest, label_present, count))
}

/// The live features of every row of a ranking answer asking `cl_n,cl_s,cl_count`.
pub fn rank_live(answer: &Json) -> Result<Vec<(String, LiveRead)>, String> {
    let rows = rank_rows(answer, 3)?;
    let name = |s: &Status| match s {
        Status::Present => Some("present"),
        Status::Null => Some("null"),
        Status::NotFound => Some("not_found"),
        Status::Other(_) => None,
    };
    rows.into_iter()
        .map(|(id, cells)| {
            let [n, s, c] = <[RankCell; 3]>::try_from(cells).map_err(|_| "width".to_owned())?;
            let read = live(
                (name(&n.0), Some(&n.1), n.2),
                (name(&s.0), Some(&s.1), s.2),
                (name(&c.0), Some(&c.1)),
                answer,
            )?;
            Ok((id, read))
        })
        .collect()
}
