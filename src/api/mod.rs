//! The wire: every route of the HTTP API, its request and response types, and their
//! encoders and decoders (JSON, and the binary ranking form). The server
//! (`crate::server`) matches requests against [`routes::Route`], parses bodies with the
//! parsers here and writes answers with the encoders here; the typed client
//! (`crate::client`) builds URLs with [`routes::paths`] and decodes answers into the
//! types here. `docs/wire.md` describes the same shapes for clients in other languages.
//!
//! # Layout
//!
//! * [`routes`] — the routes (templates, methods) and the path builders.
//! * [`error`] — error bodies and [`BadRequest`], the error of every parser here.
//! * [`json`] — the single-entity read answer's encoder (the hot path) and the error
//!   body's; [`features`] — that answer as a client decodes it.
//! * [`rank`] — the ranking request and its JSON answer as a client decodes it;
//!   [`rank_json`] and [`rank_binary`] — the ranking answer's encoders (and the binary
//!   form's decoder).
//! * [`definitions`] — feature definitions: apply, list.
//! * [`groups`] — groups, versions, loads, activate, rollback, drop.
//! * [`push`] — streamed pushes.
//! * [`registry`] — composite entity types, on-demand features, services, lineage.
//! * [`feast`], [`feast_push`] — Feast-compatible shapes (`/get-online-features`,
//!   `/push`, `/write-to-online-store`) mapped onto the same planner and pushes.
//! * [`openapi`] — the OpenAPI 3.1 description of every route (`docs/openapi.json`).
//!
//! # Invariants
//!
//! * What the server sends is byte for byte what it sent before this module existed:
//!   response types serialize their fields in the order the store's types did (tests
//!   compare the two encodings), and answers the server built as JSON trees keep their
//!   sorted keys ([`registry::sorted_json`]).
//! * Every response type a client decodes is also `Serialize`, and encoding a decoded
//!   answer gives the same JSON value back, so nothing the server sends is dropped.
//! * A response type converts from the store's type by destructuring it whole, so a
//!   field added to or renamed in the store breaks the build here rather than the wire.
//! * Parsers never panic on input and answer [`BadRequest`] (a 400) with a message
//!   naming what is wrong.
//!
//! Stateless; safe from any thread.

pub mod definitions;
pub mod error;
pub mod feast;
pub mod feast_push;
pub mod features;
pub mod float_json;
pub mod get_json;
pub mod groups;
pub mod json;
pub mod openapi;
pub mod push;
pub mod rank;
pub mod rank_binary;
pub mod rank_json;
pub mod registry;
pub mod routes;

pub use error::{BadRequest, ErrorBody, PushErrorBody};
pub use routes::{Route, paths};
