//! Principals and what each may do: scopes, name patterns, the highest sensitivity
//! class, expiry; and the read guard a principal hands the query layer.
//!
//! Thread-safety: a [`Principal`] is immutable but for its decision cache, a
//! `parking_lot::RwLock` held for one lookup or insertion (never while deciding).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::pattern::Patterns;
use super::token::TokenDigest;
use crate::query::guard::{ReadDenied, ReadGuard};
use crate::query::rank::Plan;
use crate::registry::{FeatureDefinition, Sensitivity};
use crate::types::TimestampMs;

/// What a principal may do at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read values (GET, ranking, Feast reads, stats, the page) and definitions.
    Read,
    /// Push streamed values (`/v1/push`, Feast `/push`, `/write-to-online-store`).
    Push,
    /// Change things: registry, loads, activation, rollback, drops, exports,
    /// deletions, the audit log.
    Admin,
}

impl Scope {
    /// The scope's name in the token file and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Push => "push",
            Scope::Admin => "admin",
        }
    }
}

/// The order of sensitivity classes: a principal cleared for one may read it and
/// every class below.
pub fn sensitivity_rank(s: Sensitivity) -> u8 {
    match s {
        Sensitivity::Public => 0,
        Sensitivity::Internal => 1,
        Sensitivity::Confidential => 2,
        Sensitivity::Pii => 3,
    }
}

/// The name of a sensitivity class as the registry spells it.
pub fn sensitivity_name(s: Sensitivity) -> &'static str {
    match s {
        Sensitivity::Public => "public",
        Sensitivity::Internal => "internal",
        Sensitivity::Confidential => "confidential",
        Sensitivity::Pii => "pii",
    }
}

/// Decisions on shared plans by plan address, each with the plan it was made for.
type Decisions = HashMap<usize, (Arc<Plan>, Result<(), ReadDenied>), ahash::RandomState>;

/// Plans whose decision one principal remembers; beyond, the memory is emptied.
pub const MAX_DECISIONS: usize = 256;

/// One principal of the token file.
#[derive(Debug)]
pub struct Principal {
    /// Its id (also the middle part of its token).
    pub id: String,
    /// The team it acts for (cross-team reuse rules, audit).
    pub team: String,
    /// SHA-256 of its token.
    pub(super) digest: TokenDigest,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Features it may read (patterns).
    pub(super) read: Patterns,
    /// Features it may push (patterns).
    pub(super) push: Patterns,
    /// The highest sensitivity class it may read.
    pub max_sensitivity: Sensitivity,
    /// When its token stops working; `None`: never.
    pub expires_ms: Option<TimestampMs>,
    /// Decisions on shared plans (see [`ReadGuard::admit_shared`]), keyed by the
    /// plan's address; the `Arc` kept keeps that address from being reused.
    decisions: RwLock<Decisions>,
}

impl Principal {
    /// A principal (the token file's reader builds them).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        id: String,
        team: String,
        digest: TokenDigest,
        scopes: Vec<Scope>,
        read: Patterns,
        push: Patterns,
        max_sensitivity: Sensitivity,
        expires_ms: Option<TimestampMs>,
    ) -> Principal {
        Principal {
            id,
            team,
            digest,
            scopes,
            read,
            push,
            max_sensitivity,
            expires_ms,
            decisions: RwLock::default(),
        }
    }

    /// True when it holds `scope`.
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// True when its token has expired at `now`.
    pub fn expired(&self, now: TimestampMs) -> bool {
        self.expires_ms.is_some_and(|at| now >= at)
    }

    /// Why it may not read `def`'s values, if it may not.
    pub fn read_refusal(&self, def: &FeatureDefinition) -> Option<String> {
        let spec = &def.spec;
        if !self.read.allows(&spec.name, &spec.group) {
            return Some(format!(
                "principal `{}` has no read rule matching feature `{}` (group `{}`)",
                self.id, spec.name, spec.group
            ));
        }
        if sensitivity_rank(spec.sensitivity) > sensitivity_rank(self.max_sensitivity) {
            return Some(format!(
                "its sensitivity `{}` is above principal `{}`'s highest class `{}`",
                sensitivity_name(spec.sensitivity),
                self.id,
                sensitivity_name(self.max_sensitivity)
            ));
        }
        None
    }

    /// `Err` naming `def` when it may not read its values.
    pub fn check_read(&self, def: &FeatureDefinition) -> Result<(), ReadDenied> {
        match self.read_refusal(def) {
            None => Ok(()),
            Some(reason) => Err(ReadDenied {
                feature: def.qualified_name(),
                reason,
            }),
        }
    }

    /// `Err` naming `def` when it may not push values of it.
    pub fn check_push(&self, def: &FeatureDefinition) -> Result<(), ReadDenied> {
        let spec = &def.spec;
        if self.push.allows(&spec.name, &spec.group) {
            return Ok(());
        }
        Err(ReadDenied {
            feature: def.qualified_name(),
            reason: format!(
                "principal `{}` has no push rule matching feature `{}` (group `{}`)",
                self.id, spec.name, spec.group
            ),
        })
    }

    fn decide(&self, plan: &Plan) -> Result<(), ReadDenied> {
        for read in plan.guarded_reads() {
            if let Some(reason) = self.read_refusal(read.feature) {
                return Err(match read.on_demand {
                    None => ReadDenied {
                        feature: read.feature.qualified_name(),
                        reason,
                    },
                    Some(on_demand) => ReadDenied {
                        feature: on_demand.to_owned(),
                        reason: format!(
                            "it is computed from feature `{}`, and {reason}",
                            read.feature.qualified_name()
                        ),
                    },
                });
            }
        }
        Ok(())
    }

    /// Plans whose decision is remembered.
    pub fn remembered_decisions(&self) -> usize {
        self.decisions.read().len()
    }
}

impl ReadGuard for Principal {
    fn admit(&self, plan: &Plan) -> Result<(), ReadDenied> {
        self.decide(plan)
    }

    fn admit_shared(&self, plan: &Arc<Plan>) -> Result<(), ReadDenied> {
        let key = Arc::as_ptr(plan) as usize;
        if let Some((_, decision)) = self.decisions.read().get(&key) {
            return decision.clone();
        }
        let decision = self.decide(plan);
        let mut decisions = self.decisions.write();
        if decisions.len() >= MAX_DECISIONS {
            decisions.clear();
        }
        decisions.insert(key, (plan.clone(), decision.clone()));
        decision
    }
}
