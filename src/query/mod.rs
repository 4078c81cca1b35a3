//! The query layer: every read is planned and answered here, over one read view of
//! the storage kernel (`crate::store`).
//!
//! It owns what a read means, above what is stored: names resolved against the
//! registry snapshot, features placed on the context or the candidates, TTL and
//! freshness SLO ([`read::Freshness`]), defaults, on-demand features and deadlines.
//! The kernel's `crate::store::lookup` answers only "what is stored".
//!
//! * `rank` — the one planner ([`rank::Plan`]) and executor, and ranking reads.
//! * [`entity`] — single-entity reads: the same plan with one candidate and no
//!   context; plans of repeated name lists are cached ([`cache`]).
//! * [`answer`] — the one columnar answer ([`answer::ColumnValues`]: per column, a
//!   status, an event time and a typed value per row).
//! * [`guard`] — the check a caller's [`guard::ReadGuard`] makes of every plan
//!   before it runs (the server's access control).
//! * [`read`] — [`read::Freshness`], and the row view of a single-entity answer
//!   ([`read::FeatureVector`]).
//! * [`tally`] — values served by live reads, per feature and status.
//!
//! Invariants:
//! - TTL and the freshness SLO decide a status in one place,
//!   [`answer::ColumnValues::judge`] (through [`read::Freshness::status`]); defaults are
//!   served in one place, when the executor answers a stored column, and are parsed
//!   once per registry snapshot, not per read;
//! - every read path (single entity, ranking) goes through `rank::execute`;
//! - answers keep the order asked.
//!
//! Thread-safety: reads are pure functions of one immutable read view; the only shared
//! mutable state is the plan cache of a registry snapshot (a read-write lock held for
//! one lookup) and the served-value tallies (relaxed atomic additions; a lock only
//! when a plan meets a feature for the first time).

pub mod answer;
pub mod cache;
pub mod entity;
pub mod guard;
pub mod rank;
pub mod read;
pub mod tally;

pub use entity::{EntityAnswer, Names, get};
pub use rank::{Cell, FeatureSelection, RankColumn, RankError, RankRequest, RankResponse, rank};
