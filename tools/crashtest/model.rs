//! What the crash test knows: every load it sent and what became of it, the manifest
//! states the server may be in, and every pushed event with what its producer was told.
//!
//! Batch versions are tracked by load id: loads are sent one at a time, so load ids
//! and version numbers grow together, and a version's load is known from its recorded
//! source file. An operation whose answer never came (the server was killed) or failed
//! with a 5xx is *uncertain*: the model keeps every manifest state the server may be in
//! ([`GroupModel::candidates`]) until a versions listing tells which one it is. The
//! rules applied are the documented ones (README, "Concepts": activation, rollback,
//! `keep_versions`).
//!
//! Pushed events are tracked one by one: acknowledged (200, applied or a duplicate),
//! uncertain (no answer, or a 5xx that says it may have been written), refused (400 or
//! 503: nothing written), or in flight.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::data::{Cell, Group, LoadInput, load_of, load_time};

/// A broken invariant.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The server life it was seen in.
    pub life: u64,
    /// Which invariant (`loss`, `phantom`, `mixed`, `partial`, `orphan`, `repair`,
    /// `unclear`, `state`).
    pub kind: &'static str,
    /// What was seen.
    pub detail: String,
}

/// One manifest state of a group, by load id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct GroupState {
    /// Ready versions.
    pub loads: BTreeSet<u64>,
    /// The active one.
    pub active: Option<u64>,
    /// Versions activated before the current one, oldest first.
    pub previous: Vec<u64>,
}

impl GroupState {
    /// A successful load: the version exists, is activated if asked, and the newest
    /// `keep` versions are kept (and the active one).
    pub fn load(&mut self, load: u64, activate: bool, keep: usize, drop_old: bool) {
        self.loads.insert(load);
        if activate {
            self.activate(load);
        }
        if drop_old {
            self.drop_beyond(keep);
        }
    }

    /// Activation of a ready version; false if it is not ready here.
    pub fn activate(&mut self, load: u64) -> bool {
        if !self.loads.contains(&load) {
            return false;
        }
        if self.active == Some(load) {
            return true;
        }
        if let Some(current) = self.active.take() {
            self.previous.retain(|v| *v != current && *v != load);
            self.previous.push(current);
        }
        self.previous.retain(|v| *v != load);
        self.active = Some(load);
        true
    }

    /// The most recent previously active version that still exists.
    pub fn rollback_target(&self) -> Option<u64> {
        self.previous
            .iter()
            .rev()
            .copied()
            .find(|v| self.loads.contains(v))
    }

    /// Rollback; the version activated.
    pub fn rollback(&mut self) -> Option<u64> {
        let target = self.rollback_target()?;
        while let Some(v) = self.previous.pop() {
            if v == target {
                break;
            }
        }
        self.active = Some(target);
        Some(target)
    }

    /// Drops ready versions beyond the newest `keep`, never the active one.
    pub fn drop_beyond(&mut self, keep: usize) -> Vec<u64> {
        let doomed: Vec<u64> = self
            .loads
            .iter()
            .rev()
            .skip(keep)
            .copied()
            .filter(|v| Some(*v) != self.active)
            .collect();
        for v in &doomed {
            self.loads.remove(v);
            self.previous.retain(|p| p != v);
        }
        doomed
    }
}

/// A group's versions as the server lists them, by load id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Ready versions.
    pub loads: BTreeSet<u64>,
    /// The active one.
    pub active: Option<u64>,
    /// What a rollback would activate.
    pub rollback_target: Option<u64>,
}

/// One read answer whose load could not be told yet (the entity is absent from the
/// version, or all its values are null, and the version is not identified).
#[derive(Debug, Clone, PartialEq)]
pub struct Deferred {
    /// The version that answered.
    pub version: u64,
    /// The entity read.
    pub entity: usize,
    /// What was answered, per feature.
    pub got: Vec<Got>,
    /// Where it was read.
    pub life: u64,
}

/// How sure the harness is that an operation took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Certainty {
    /// Acknowledged: it happened.
    Acked,
    /// No answer, or a server error: it may have happened.
    Uncertain,
}

/// Most candidate states per group. The harness keeps the number of uncertain
/// operations per life small; more states than this means it lost track, which is
/// reported as an error of the harness (never by dropping states: the true one could
/// be among them).
pub const MAX_CANDIDATES: usize = 4096;

/// The model of one batch group; the default is a group never loaded.
#[derive(Debug)]
pub struct GroupModel {
    /// Every manifest state the server may be in.
    pub candidates: Vec<GroupState>,
    /// Version numbers by load id, learned from answers and listings.
    pub version_of: BTreeMap<u64, u64>,
    /// Load ids by version number.
    pub load_of: BTreeMap<u64, u64>,
    /// Every load sent to this group.
    pub inputs: BTreeMap<u64, LoadInput>,
    /// Reads to check once their version is identified.
    pub deferred: Vec<Deferred>,
    /// Set when an operation would have made more than [`MAX_CANDIDATES`] states.
    pub overflowed: bool,
}

impl Default for GroupModel {
    fn default() -> Self {
        GroupModel {
            candidates: vec![GroupState::default()],
            version_of: BTreeMap::new(),
            load_of: BTreeMap::new(),
            inputs: BTreeMap::new(),
            deferred: Vec::new(),
            overflowed: false,
        }
    }
}

impl GroupModel {
    /// Records that `version` holds `load`; an error if that contradicts what is known
    /// (another load for the version, another version for the load, or numbers that do
    /// not grow with load ids).
    pub fn learn(&mut self, version: u64, load: u64) -> Result<(), String> {
        if let Some(known) = self.load_of.get(&version)
            && *known != load
        {
            return Err(format!(
                "version {version} holds load {known}, but now answers as load {load}"
            ));
        }
        if let Some(known) = self.version_of.get(&load)
            && *known != version
        {
            return Err(format!(
                "load {load} is version {known}, but now appears as version {version}"
            ));
        }
        let earlier = self.version_of.range(..load).next_back();
        let later = self.version_of.range(load + 1..).next();
        if earlier.is_some_and(|(_, v)| *v >= version) || later.is_some_and(|(_, v)| *v <= version)
        {
            return Err(format!(
                "load {load} became version {version}, out of order with {earlier:?} and {later:?}"
            ));
        }
        self.version_of.insert(load, version);
        self.load_of.insert(version, load);
        Ok(())
    }

    /// Applies an operation to every candidate. `op` returns false when the operation
    /// is impossible in that state (an acknowledged one then rules the state out).
    /// Returns false if an acknowledged operation is impossible in every candidate.
    pub fn apply(&mut self, certainty: Certainty, op: impl Fn(&mut GroupState) -> bool) -> bool {
        let mut next = Vec::new();
        for state in &self.candidates {
            let mut after = state.clone();
            let possible = op(&mut after);
            if certainty == Certainty::Uncertain {
                next.push(state.clone());
            }
            if possible {
                next.push(after);
            }
        }
        let mut seen = HashSet::new();
        next.retain(|s| seen.insert(s.clone()));
        if next.len() > MAX_CANDIDATES {
            self.overflowed = true;
            return true;
        }
        if next.is_empty() {
            return false;
        }
        self.candidates = next;
        true
    }

    /// Keeps the candidates that `listing` matches; false (and nothing kept changed)
    /// if none does.
    pub fn observe(&mut self, listing: &Listing) -> bool {
        let matching: Vec<GroupState> = self
            .candidates
            .iter()
            .filter(|s| {
                s.loads == listing.loads
                    && s.active == listing.active
                    && s.rollback_target() == listing.rollback_target
            })
            .cloned()
            .collect();
        if matching.is_empty() {
            return false;
        }
        self.candidates = matching;
        true
    }

    /// The state when only one is possible.
    pub fn known(&self) -> Option<&GroupState> {
        match self.candidates.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }

    /// Checks one entity's answer for this group. `version` is the version the answer
    /// names for the group (`None`: no version served). Returns an error describing a
    /// violation, `Ok(None)` when checked, `Ok(Some(deferred))` when the load cannot
    /// be told yet.
    pub fn check_entity(
        &mut self,
        group: Group,
        version: Option<u64>,
        entity: usize,
        got: &[Got],
        life: u64,
    ) -> Result<Option<Deferred>, (&'static str, String)> {
        let Some(version) = version else {
            if got.iter().any(|g| g.status != Status::NotFound) {
                return Err((
                    "mixed",
                    format!(
                        "{} e{entity}: no version answered, yet values came: {got:?}",
                        group.name()
                    ),
                ));
            }
            return Ok(None);
        };
        let mut seen: BTreeSet<u64> = BTreeSet::new();
        for g in got {
            if let Some(cell) = &g.cell
                && let Some(load) = load_of(cell)
            {
                seen.insert(load);
            }
        }
        if seen.len() > 1 {
            return Err((
                "mixed",
                format!(
                    "{} v{version} e{entity}: values of loads {seen:?} in one answer: {got:?}",
                    group.name()
                ),
            ));
        }
        let observed = seen.into_iter().next();
        let known = self.load_of.get(&version).copied();
        let load = match (known, observed) {
            (Some(k), Some(o)) if k != o => {
                return Err((
                    "mixed",
                    format!(
                        "{} v{version} holds load {k}, but e{entity} answered with values of load {o}: {got:?}",
                        group.name()
                    ),
                ));
            }
            (Some(k), _) => k,
            (None, Some(o)) => o,
            (None, None) => {
                return Ok(Some(Deferred {
                    version,
                    entity,
                    got: got.to_vec(),
                    life,
                }));
            }
        };
        let Some(input) = self.inputs.get(&load) else {
            return Err((
                "phantom",
                format!(
                    "{} v{version} e{entity}: values of load {load}, which was never sent: {got:?}",
                    group.name()
                ),
            ));
        };
        if input.bad {
            return Err((
                "partial",
                format!(
                    "{} v{version} e{entity}: values of load {load}, whose input was bad and refused",
                    group.name()
                ),
            ));
        }
        for (f, g) in got.iter().enumerate() {
            let name = group.features().get(f).map_or("?", |x| x.name);
            let wrong = match input.expected(entity, f) {
                None => (g.status != Status::NotFound).then(|| "not_found".to_owned()),
                Some(Cell::Null) => (g.status != Status::Null).then(|| "null".to_owned()),
                Some(cell) => (g.status != Status::Present
                    || g.cell.as_ref() != Some(&cell)
                    || g.event_time != Some(load_time(load)))
                .then(|| format!("{cell:?} at {}", load_time(load))),
            };
            if let Some(expected) = wrong {
                return Err((
                    "partial",
                    format!(
                        "{} v{version} (load {load}) e{entity} {name}: expected {expected}, got {g:?}",
                        group.name()
                    ),
                ));
            }
        }
        Ok(None)
    }
}

/// A feature's status in an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// A value.
    Present,
    /// An explicit null.
    Null,
    /// No value.
    NotFound,
    /// Anything else (stale, expired, ...), as answered.
    Other(String),
}

impl Status {
    /// From the JSON of a single read.
    pub fn from_name(name: &str) -> Status {
        match name {
            "present" => Status::Present,
            "null" => Status::Null,
            "not_found" => Status::NotFound,
            other => Status::Other(other.to_owned()),
        }
    }

    /// From a ranking answer's status letter.
    pub fn from_letter(letter: char) -> Status {
        match letter {
            'P' => Status::Present,
            'U' => Status::Null,
            'N' => Status::NotFound,
            other => Status::Other(other.to_string()),
        }
    }
}

/// One feature of one answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Got {
    /// Its status.
    pub status: Status,
    /// Its value, parsed as the feature's kind.
    pub cell: Option<Cell>,
    /// Its event time.
    pub event_time: Option<i64>,
}

/// One pushed event.
#[derive(Debug, Clone)]
pub struct EventRec {
    /// The user it is for.
    pub user: usize,
    /// Its event time.
    pub time: i64,
    /// Some send of it was answered 200.
    pub acked: bool,
    /// Some send of it may have been written without an acknowledgement.
    pub uncertain: bool,
    /// Sends of it still waiting for an answer.
    pub in_flight: u32,
}

impl EventRec {
    /// Whether its values may be stored.
    pub fn maybe_applied(&self) -> bool {
        self.acked || self.uncertain || self.in_flight > 0
    }
}

/// What a reader may expect of one user before its read is sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Floor {
    /// Newest event time acknowledged.
    pub newest_acked: Option<i64>,
    /// Events acknowledged.
    pub acked: u64,
}

/// Every event pushed, by sequence number.
#[derive(Debug, Default)]
pub struct StreamModel {
    /// Events, indexed by sequence number.
    pub events: Vec<EventRec>,
    /// Sequence numbers of each user's events.
    pub by_user: Vec<Vec<usize>>,
    /// Event times used per user (each event of a user gets a distinct one, so the
    /// event-time rule never needs its tie-break).
    pub times: Vec<HashSet<i64>>,
    /// Acknowledged events per user and their newest time.
    pub floors: Vec<Floor>,
}

impl StreamModel {
    /// A model of `users` users.
    pub fn new(users: usize) -> StreamModel {
        StreamModel {
            events: Vec::new(),
            by_user: vec![Vec::new(); users],
            times: vec![HashSet::new(); users],
            floors: vec![Floor::default(); users],
        }
    }

    /// Registers a new event; returns its sequence number, or `None` if the time is
    /// taken for this user.
    pub fn add(&mut self, user: usize, time: i64) -> Option<usize> {
        if !self.times.get_mut(user)?.insert(time) {
            return None;
        }
        let seq = self.events.len();
        self.events.push(EventRec {
            user,
            time,
            acked: false,
            uncertain: false,
            in_flight: 0,
        });
        self.by_user[user].push(seq);
        Some(seq)
    }

    /// A send of `seqs` starts.
    pub fn sending(&mut self, seqs: &[usize]) {
        for s in seqs {
            self.events[*s].in_flight += 1;
        }
    }

    /// A send of `seqs` ended: acknowledged, refused (nothing written) or uncertain.
    pub fn sent(&mut self, seqs: &[usize], outcome: SendOutcome) {
        for s in seqs {
            let e = &mut self.events[*s];
            e.in_flight = e.in_flight.saturating_sub(1);
            match outcome {
                SendOutcome::Acked => {
                    if !e.acked {
                        e.acked = true;
                        let floor = &mut self.floors[e.user];
                        floor.acked += 1;
                        floor.newest_acked =
                            Some(floor.newest_acked.map_or(e.time, |t| t.max(e.time)));
                    }
                }
                SendOutcome::Refused => {}
                SendOutcome::Uncertain => e.uncertain = true,
            }
        }
    }

    /// Events of `user` that may be stored.
    pub fn maybe_count(&self, user: usize) -> u64 {
        self.by_user[user]
            .iter()
            .filter(|s| self.events[**s].maybe_applied())
            .count() as u64
    }

    /// Checks what a read of `user` answered: the latest value's sequence number, label
    /// and event time, and the count. `floor` was taken before the read was sent.
    pub fn check_user(
        &self,
        user: usize,
        floor: Floor,
        latest: Option<(i64, String, i64)>,
        label_present: bool,
        count: u64,
    ) -> Result<(), (&'static str, String)> {
        match latest {
            None => {
                if let Some(t) = floor.newest_acked {
                    return Err((
                        "loss",
                        format!("u{user}: no pushed value, but an event at {t} was acknowledged"),
                    ));
                }
                if label_present {
                    return Err((
                        "mixed",
                        format!("u{user}: a label without its sequence number"),
                    ));
                }
            }
            Some((n, label, time)) => {
                let seq = usize::try_from(n).ok();
                let Some(event) = seq.and_then(|s| self.events.get(s)) else {
                    return Err(("phantom", format!("u{user}: value {n} was never pushed")));
                };
                if event.user != user || event.time != time {
                    return Err((
                        "phantom",
                        format!(
                            "u{user}: value {n} at {time}, but event {n} was for u{} at {}",
                            event.user, event.time
                        ),
                    ));
                }
                if !event.maybe_applied() {
                    return Err((
                        "phantom",
                        format!("u{user}: event {n} is stored, but every push of it was refused"),
                    ));
                }
                if label != crate::data::live_label(n as u64) {
                    return Err((
                        "mixed",
                        format!("u{user}: value {n} with the label `{label}` of another event"),
                    ));
                }
                if let Some(t) = floor.newest_acked
                    && time < t
                {
                    return Err((
                        "loss",
                        format!(
                            "u{user}: the stored event {n} at {time} is older than an acknowledged one at {t}"
                        ),
                    ));
                }
            }
        }
        let most = self.maybe_count(user);
        if count < floor.acked || count > most {
            return Err((
                if count < floor.acked {
                    "loss"
                } else {
                    "phantom"
                },
                format!(
                    "u{user}: counted {count} events, expected between {} (acknowledged) and {most} (sent, not refused)",
                    floor.acked
                ),
            ));
        }
        Ok(())
    }
}

/// How one send of a push ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// 200.
    Acked,
    /// 400 or 503: nothing was written.
    Refused,
    /// No answer, or a 5xx that may have written it.
    Uncertain,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_and_drops_follow_the_documented_rules() {
        let mut s = GroupState::default();
        for l in 1..=4 {
            s.load(l, true, 3, true);
        }
        assert_eq!(s.loads, BTreeSet::from([2, 3, 4]));
        assert_eq!(s.rollback_target(), Some(3));
        assert_eq!(s.rollback(), Some(3));
        assert_eq!(s.rollback(), Some(2));
        assert_eq!(s.rollback(), None);
        s.load(5, false, 3, true);
        s.load(6, false, 3, true);
        // The active version (2) is kept beyond the newest three.
        assert_eq!(s.loads, BTreeSet::from([2, 4, 5, 6]));
        assert_eq!(s.drop_beyond(1), vec![5, 4]);
    }

    #[test]
    fn uncertain_operations_keep_both_states_until_observed() {
        let mut g = GroupModel::default();
        assert!(g.apply(Certainty::Acked, |s| {
            s.load(1, true, 3, true);
            true
        }));
        assert!(g.apply(Certainty::Uncertain, |s| {
            s.load(2, true, 3, true);
            true
        }));
        assert_eq!(g.candidates.len(), 2);
        let listing = Listing {
            loads: BTreeSet::from([1, 2]),
            active: Some(2),
            rollback_target: Some(1),
        };
        assert!(g.observe(&listing));
        assert_eq!(g.candidates.len(), 1);
        assert!(!g.apply(Certainty::Acked, |s| s.activate(9)));
    }

    fn got(cell: Option<Cell>, load: u64) -> Got {
        Got {
            status: match cell {
                None => Status::NotFound,
                Some(Cell::Null) => Status::Null,
                Some(_) => Status::Present,
            },
            cell: cell.filter(|c| *c != Cell::Null),
            event_time: Some(load_time(load)),
        }
    }

    #[test]
    fn reads_of_one_load_pass_and_mixes_and_wrong_values_do_not() {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut g = GroupModel::default();
        for load in [1, 2] {
            let input = LoadInput::generate(Group::B2, load, &mut rng);
            g.inputs.insert(load, input);
        }
        g.learn(1, 1).expect("learn");
        g.learn(2, 2).expect("learn");
        // An entity of load 1 whose first feature is a value in both loads.
        let e = g.inputs[&1]
            .entities
            .iter()
            .find(|e| {
                !matches!(g.inputs[&1].expected(*e, 0), Some(Cell::Null))
                    && crate::data::cell(Group::B2, 2, *e, 0) != Cell::Null
            })
            .expect("such an entity");
        let answer = |load: u64| -> Vec<Got> {
            (0..3)
                .map(|f| got(g.inputs[&load].expected(e, f), load))
                .collect()
        };
        let right = answer(1);
        assert!(g.clone_check(Some(1), e, &right).is_ok());
        // Version 2 answering load 1's values is a mix of versions.
        assert_eq!(
            g.clone_check(Some(2), e, &right).map_err(|v| v.0),
            Err("mixed")
        );
        // One feature from another load in the same answer.
        let mut mixed = right.clone();
        mixed[0] = got(Some(crate::data::cell(Group::B2, 2, e, 0)), 2);
        assert_eq!(
            g.clone_check(Some(1), e, &mixed).map_err(|v| v.0),
            Err("mixed")
        );
        // A value missing from a present entity.
        let mut partial = right.clone();
        partial[0] = got(None, 1);
        assert_eq!(
            g.clone_check(Some(1), e, &partial).map_err(|v| v.0),
            Err("partial")
        );
        // No version answered, yet values came.
        assert_eq!(
            g.clone_check(None, e, &right).map_err(|v| v.0),
            Err("mixed")
        );
    }

    impl GroupModel {
        fn clone_check(
            &self,
            version: Option<u64>,
            e: usize,
            got: &[Got],
        ) -> Result<Option<Deferred>, (&'static str, String)> {
            let mut copy = GroupModel {
                candidates: self.candidates.clone(),
                version_of: self.version_of.clone(),
                load_of: self.load_of.clone(),
                inputs: self.inputs.clone(),
                deferred: Vec::new(),
                overflowed: false,
            };
            copy.check_entity(Group::B2, version, e, got, 1)
        }
    }

    #[test]
    fn version_numbers_must_grow_with_loads() {
        let mut g = GroupModel::default();
        assert!(g.learn(3, 10).is_ok());
        assert!(g.learn(5, 12).is_ok());
        assert!(g.learn(4, 13).is_err());
        assert!(g.learn(3, 11).is_err());
        assert!(g.learn(4, 11).is_ok());
    }
}
