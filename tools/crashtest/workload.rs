//! The background load of one server life: producers pushing events (with event ids
//! and event times, some as RFC 3339 text with an offset; unanswered pushes are sent
//! again later) and a reader checking every answer it gets, while the main thread
//! loads, activates, rolls back and drops versions.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::answers;
use crate::client::Client;
use crate::data::{self, Group, LIVE_COUNT, LIVE_N, LIVE_S, POOL, USER, USERS};
use crate::model::{GroupModel, SendOutcome, StreamModel, Violation};

/// Counters of a whole run.
#[derive(Debug, Default)]
pub struct Counters {
    /// Push requests answered 200.
    pub pushes_acked: AtomicU64,
    /// Push requests refused (503, nothing written).
    pub pushes_refused: AtomicU64,
    /// Push requests with no answer or a 5xx that may have written them.
    pub pushes_uncertain: AtomicU64,
    /// Events acknowledged.
    pub events_acked: AtomicU64,
    /// Reads whose answers were checked (single and ranking, each entity counted).
    pub reads_checked: AtomicU64,
    /// Push replays of acknowledged events after a restart, each a duplicate.
    pub replays: AtomicU64,
}

/// A fault armed now: failing server answers must name `text`.
#[derive(Debug, Clone)]
pub struct ArmedFault {
    /// What strerror says for the injected errno.
    pub text: &'static str,
}

/// State shared by the threads of a run.
pub struct Shared {
    /// The batch groups' models.
    pub groups: Mutex<BTreeMap<Group, GroupModel>>,
    /// Every pushed event.
    pub stream: Mutex<StreamModel>,
    /// Violations found.
    pub violations: Mutex<Vec<Violation>>,
    /// The current server life.
    pub life: AtomicU64,
    /// Counters.
    pub counters: Counters,
    /// Push requests to send again (unanswered or refused): body and events.
    pub retries: Mutex<Vec<(String, Vec<usize>)>>,
    /// The fault armed now, if any (read by producers to judge error messages).
    pub armed: Mutex<Option<ArmedFault>>,
    /// Pushed event times are drawn from the hour before this moment (ms).
    pub time_base: i64,
    /// 5xx answers seen while a fault was armed.
    pub fault_errors: AtomicU64,
    /// Producers wait while set (so a fault hits only the operation under test).
    pub paused: AtomicBool,
    /// The operations log (`ops.log` in the working directory).
    pub trace: Mutex<Option<std::io::BufWriter<std::fs::File>>>,
}

impl Shared {
    /// State for a run whose event times are drawn below `time_base`.
    pub fn new(time_base: i64) -> Shared {
        Shared {
            groups: Mutex::new(
                Group::ALL
                    .iter()
                    .map(|g| (*g, GroupModel::default()))
                    .collect(),
            ),
            stream: Mutex::new(StreamModel::new(USERS)),
            violations: Mutex::new(Vec::new()),
            life: AtomicU64::new(0),
            counters: Counters::default(),
            retries: Mutex::new(Vec::new()),
            armed: Mutex::new(None),
            time_base,
            fault_errors: AtomicU64::new(0),
            paused: AtomicBool::new(false),
            trace: Mutex::new(None),
        }
    }

    /// Appends a line to the operations log.
    pub fn trace(&self, line: impl AsRef<str>) {
        use std::io::Write as _;
        if let Some(w) = lock(&self.trace).as_mut() {
            let _ = writeln!(w, "{} {}", self.life.load(Ordering::Relaxed), line.as_ref());
        }
    }

    /// Flushes the operations log.
    pub fn flush_trace(&self) {
        use std::io::Write as _;
        if let Some(w) = lock(&self.trace).as_mut() {
            let _ = w.flush();
        }
    }

    /// Records a violation in the current life.
    pub fn violation(&self, kind: &'static str, detail: impl Into<String>) {
        let v = Violation {
            life: self.life.load(Ordering::Relaxed),
            kind,
            detail: detail.into(),
        };
        eprintln!("VIOLATION [{}] life {}: {}", v.kind, v.life, v.detail);
        self.trace(format!("VIOLATION [{}] {}", v.kind, v.detail));
        lock(&self.violations).push(v);
    }

    /// Whether a violation was recorded.
    pub fn failed(&self) -> bool {
        !lock(&self.violations).is_empty()
    }

    /// Judges the message of a failed answer given while a fault was armed: it must
    /// name the injected error.
    pub fn judge_failure(&self, what: &str, status: u16, message: &str) {
        let armed = lock(&self.armed).clone();
        if let Some(fault) = armed
            && status >= 500
        {
            self.fault_errors.fetch_add(1, Ordering::Relaxed);
            if !message.contains(fault.text) {
                self.violation(
                    "unclear",
                    format!(
                        "{what} failed with {status} during a `{}` fault without saying so: {message}",
                        fault.text
                    ),
                );
            }
        }
    }
}

/// Locks `m`, also after a thread panicked holding it (the data is a plain model).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `t` (ms) as RFC 3339 with a `+HH:MM` offset (the local time of that zone).
fn rfc3339_with_offset(t: i64, offset_min: i64) -> String {
    let local = t + offset_min * 60_000;
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(local).unwrap_or(0));
    let utc = humantime::format_rfc3339_millis(at).to_string();
    let sign = if offset_min < 0 { '-' } else { '+' };
    let m = offset_min.abs();
    format!(
        "{}{sign}{:02}:{:02}",
        utc.trim_end_matches('Z'),
        m / 60,
        m % 60
    )
}

/// How the server's answer to a push that wrote nothing begins (`PushError::Unavailable`).
const NOTHING_WRITTEN: &str = "push refused, nothing was written";

/// A new push request of 1 to 4 events: body and sequence numbers.
fn new_push(shared: &Shared, rng: &mut ChaCha8Rng) -> (String, Vec<usize>) {
    let mut events = Vec::new();
    let mut seqs = Vec::new();
    let mut stream = lock(&shared.stream);
    for _ in 0..rng.random_range(1..=4) {
        let user = rng.random_range(0..USERS);
        let time = shared.time_base - rng.random_range(0..3_600_000);
        let Some(seq) = stream.add(user, time) else {
            continue;
        };
        let event_time = match rng.random_range(0..5) {
            0 => serde_json::json!(rfc3339_with_offset(time, 0)),
            1 => serde_json::json!(rfc3339_with_offset(
                time,
                [-330, 120, 540][rng.random_range(0..3)]
            )),
            _ => serde_json::json!(time),
        };
        events.push(
            serde_json::json!({"entity_type": USER, "entity_id": format!("u{user}"),
            "event_id": format!("ev{seq}"), "event_time": event_time,
            "features": {LIVE_N: seq, LIVE_S: data::live_label(seq as u64)}}),
        );
        seqs.push(seq);
    }
    (serde_json::json!({ "events": events }).to_string(), seqs)
}

/// Sends one push request and records what became of its events.
pub fn send_push(shared: &Shared, client: &Client, body: &str, seqs: &[usize]) -> SendOutcome {
    lock(&shared.stream).sending(seqs);
    let result = client.post("/v1/push", body);
    let c = &shared.counters;
    let outcome = match &result {
        Ok(r) if r.status == 200 => {
            let json = r.json();
            let accepted = json.get("accepted").and_then(|v| v.as_u64()).unwrap_or(0);
            let duplicates = json.get("duplicates").and_then(|v| v.as_u64()).unwrap_or(0);
            if accepted + duplicates != seqs.len() as u64 {
                shared.violation(
                    "state",
                    format!("a push of {} events answered {}", seqs.len(), r.body),
                );
            }
            SendOutcome::Acked
        }
        // 503 is answered both when nothing was written (the writer was already down)
        // and when this push's own write or sync failed (it may be stored): only the
        // message tells them apart.
        Ok(r) if r.status == 503 && r.error().starts_with(NOTHING_WRITTEN) => {
            shared.judge_failure("a push", r.status, &r.error());
            SendOutcome::Refused
        }
        Ok(r) if r.status >= 500 => {
            shared.judge_failure("a push", r.status, &r.error());
            SendOutcome::Uncertain
        }
        Ok(r) => {
            shared.violation(
                "state",
                format!("a valid push was answered {}: {}", r.status, r.body),
            );
            SendOutcome::Refused
        }
        Err(_) => SendOutcome::Uncertain,
    };
    match outcome {
        SendOutcome::Acked => {
            c.pushes_acked.fetch_add(1, Ordering::Relaxed);
            c.events_acked
                .fetch_add(seqs.len() as u64, Ordering::Relaxed);
        }
        SendOutcome::Refused => {
            c.pushes_refused.fetch_add(1, Ordering::Relaxed);
        }
        SendOutcome::Uncertain => {
            c.pushes_uncertain.fetch_add(1, Ordering::Relaxed);
        }
    }
    lock(&shared.stream).sent(seqs, outcome);
    let status = result.as_ref().map_or(0, |r| r.status);
    shared.trace(format!("push {seqs:?}: {status} {outcome:?}"));
    outcome
}

/// One producer: pushes until `stop`, resending some unanswered or refused requests.
pub fn producer(shared: Arc<Shared>, client: Client, stop: Arc<AtomicBool>, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    while !stop.load(Ordering::Relaxed) {
        if shared.paused.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let retry = if rng.random_bool(0.3) {
            lock(&shared.retries).pop()
        } else {
            None
        };
        let (body, seqs) = retry.unwrap_or_else(|| new_push(&shared, &mut rng));
        if seqs.is_empty() {
            continue;
        }
        let outcome = send_push(&shared, &client, &body, &seqs);
        if outcome != SendOutcome::Acked && rng.random_bool(0.6) {
            let mut retries = lock(&shared.retries);
            if retries.len() < 10_000 {
                retries.push((body, seqs));
            }
        }
        // A refused push was told to retry later (Retry-After): back off.
        let pause = if outcome == SendOutcome::Refused {
            rng.random_range(50..150)
        } else {
            rng.random_range(0..8)
        };
        std::thread::sleep(Duration::from_millis(pause));
    }
}

/// Checks a single read of every batch feature of entity `e`.
pub fn check_single_batch(shared: &Shared, reply_json: &serde_json::Value, e: usize) {
    let life = shared.life.load(Ordering::Relaxed);
    let versions = answers::versions(reply_json);
    match answers::single_batch(reply_json) {
        Err(problem) => shared.violation("state", format!("e{e}: {problem}")),
        Ok(by_group) => {
            let mut groups = lock(&shared.groups);
            for (group, got) in by_group {
                let Some(model) = groups.get_mut(&group) else {
                    continue;
                };
                match model.check_entity(group, versions.get(&group).copied(), e, &got, life) {
                    Ok(None) => {}
                    Ok(Some(deferred)) => {
                        if model.deferred.len() < 5_000 {
                            model.deferred.push(deferred);
                        }
                    }
                    Err((kind, detail)) => {
                        drop(groups);
                        shared.violation(kind, detail);
                        return;
                    }
                }
            }
            shared
                .counters
                .reads_checked
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Checks a ranking answer over batch features; returns the versions it named.
pub fn check_rank_batch(shared: &Shared, reply_json: &serde_json::Value) -> BTreeMap<Group, u64> {
    let life = shared.life.load(Ordering::Relaxed);
    let versions = answers::versions(reply_json);
    let rows = match answers::rank_batch(reply_json) {
        Ok(rows) => rows,
        Err(problem) => {
            shared.violation("state", format!("ranking answer: {problem}"));
            return versions;
        }
    };
    let mut found = Vec::new();
    {
        let mut groups = lock(&shared.groups);
        for (id, by_group) in rows {
            let Some(e) = id.strip_prefix('e').and_then(|n| n.parse::<usize>().ok()) else {
                found.push(("state", format!("ranking row for unknown id {id}")));
                continue;
            };
            for (group, got) in by_group {
                let Some(model) = groups.get_mut(&group) else {
                    continue;
                };
                match model.check_entity(group, versions.get(&group).copied(), e, &got, life) {
                    Ok(None) => {}
                    Ok(Some(deferred)) => {
                        if model.deferred.len() < 5_000 {
                            model.deferred.push(deferred);
                        }
                    }
                    Err(v) => found.push(v),
                }
            }
            shared
                .counters
                .reads_checked
                .fetch_add(1, Ordering::Relaxed);
        }
    }
    for (kind, detail) in found.into_iter().take(5) {
        shared.violation(kind, detail);
    }
    versions
}

/// Checks a user's pushed features as read; `floor` was taken before the read.
pub fn check_live(
    shared: &Shared,
    user: usize,
    floor: crate::model::Floor,
    read: Result<answers::LiveRead, String>,
) {
    match read {
        Err(problem) => shared.violation("torn", format!("u{user}: {problem}")),
        Ok((latest, label, count)) => {
            let result = lock(&shared.stream).check_user(user, floor, latest, label, count);
            match result {
                Ok(()) => {
                    shared
                        .counters
                        .reads_checked
                        .fetch_add(1, Ordering::Relaxed);
                }
                Err((kind, detail)) => {
                    shared.violation(kind, detail);
                    let stream = lock(&shared.stream);
                    for seq in &stream.by_user[user] {
                        shared.trace(format!("  u{user} event {seq}: {:?}", stream.events[*seq]));
                    }
                }
            }
        }
    }
}

/// The reader: random single reads of items and users and small ranking reads, each
/// answer checked, until `stop`.
pub fn reader(shared: Arc<Shared>, client: Client, stop: Arc<AtomicBool>, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let names = data::batch_feature_names().join(",");
    while !stop.load(Ordering::Relaxed) && !shared.failed() {
        let pick = rng.random_range(0..100);
        if pick < 45 {
            let e = rng.random_range(0..POOL);
            let Ok(reply) = client.get(&format!("/v1/features/{}/e{e}?names={names}", data::ITEM))
            else {
                continue;
            };
            if judge_read(&shared, &stop, reply.status, &reply.body) {
                check_single_batch(&shared, &reply.json(), e);
            }
        } else if pick < 60 {
            let ids: Vec<String> = (0..16)
                .map(|_| format!("e{}", rng.random_range(0..POOL)))
                .collect();
            let body = serde_json::json!({"candidates": {"entity_type": data::ITEM, "ids": ids},
                "features": data::batch_feature_names()})
            .to_string();
            let Ok(reply) = client.post("/v1/rank", &body) else {
                continue;
            };
            if judge_read(&shared, &stop, reply.status, &reply.body) {
                check_rank_batch(&shared, &reply.json());
            }
        } else {
            let user = rng.random_range(0..USERS);
            let floor = lock(&shared.stream).floors[user];
            let Ok(reply) = client.get(&format!(
                "/v1/features/{USER}/u{user}?names={LIVE_N},{LIVE_S},{LIVE_COUNT}"
            )) else {
                continue;
            };
            if judge_read(&shared, &stop, reply.status, &reply.body) {
                check_live(&shared, user, floor, answers::single_live(&reply.json()));
            }
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(1..4)));
    }
}

/// Whether a read answer is to be checked: 200 yes; 503 (shedding load) no; anything
/// else is a violation unless the server is being killed.
fn judge_read(shared: &Shared, stop: &AtomicBool, status: u16, body: &str) -> bool {
    match status {
        200 => true,
        503 => false,
        _ if stop.load(Ordering::Relaxed) => false,
        _ => {
            shared.violation("state", format!("a read was answered {status}: {body}"));
            false
        }
    }
}

/// Milliseconds since the epoch now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_name_the_same_instant() {
        // 2023-11-14T22:13:20Z
        let t = 1_700_000_000_000;
        assert_eq!(rfc3339_with_offset(t, 0), "2023-11-14T22:13:20.000+00:00");
        assert_eq!(rfc3339_with_offset(t, 120), "2023-11-15T00:13:20.000+02:00");
        assert_eq!(
            rfc3339_with_offset(t, -330),
            "2023-11-14T16:43:20.000-05:30"
        );
    }
}
