//! The read guard: a check every planned read passes before it touches storage.
//!
//! A caller that reads on behalf of someone (the HTTP server, for a principal of its
//! token file: `crate::auth`) hands the query layer a [`ReadGuard`]; the planner
//! resolves the names first, then the guard sees every stored feature the plan reads
//! — the on-demand features' inputs included — and may refuse the read, naming the
//! feature. A refused read reads nothing. Embedded callers pass no guard.
//!
//! Invariants:
//! - the guard sees a plan before it executes, so a denied feature's value is never
//!   fetched, computed from, or answered (no silent null);
//! - a value computed from a stored feature (an on-demand feature) is judged by each of
//!   its inputs and by its own name ([`GuardedRead::on_demand`]).
//!
//! Thread-safety: a guard is `Sync`; it is borrowed for one read.

use std::sync::Arc;

use crate::registry::FeatureDefinition;

use super::rank::Plan;

/// One stored feature a plan reads.
#[derive(Debug, Clone, Copy)]
pub struct GuardedRead<'p> {
    /// The stored feature read.
    pub feature: &'p FeatureDefinition,
    /// The on-demand feature it is an input of (`name@version`), when it is read only
    /// to compute one.
    pub on_demand: Option<&'p str>,
}

/// Why a read was refused: the feature named and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("access to feature `{feature}` denied: {reason}")]
pub struct ReadDenied {
    /// The feature refused (`name@version`), or the on-demand feature whose input it is.
    pub feature: String,
    /// The rule it breaks, in words.
    pub reason: String,
}

/// Decides whether a planned read may run.
pub trait ReadGuard: Send + Sync {
    /// `Ok` when every read of `plan` (see [`Plan::guarded_reads`]) is allowed.
    fn admit(&self, plan: &Plan) -> Result<(), ReadDenied>;

    /// [`admit`](Self::admit) for a plan shared through the snapshot's plan cache (a
    /// single-entity read's): the same plan comes back for the same request, so a
    /// guard may remember its decision per plan (holding the `Arc` keeps the plan's
    /// address from being reused while remembered).
    fn admit_shared(&self, plan: &Arc<Plan>) -> Result<(), ReadDenied> {
        self.admit(plan)
    }
}

impl std::fmt::Debug for dyn ReadGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadGuard")
    }
}
