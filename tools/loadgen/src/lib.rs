//! `featstore-loadgen`: the load generator of featstore's benchmark suite.
//!
//! It drives three kinds of target with the same requests and the same clock:
//!
//! * **featstore** over HTTP/1.1 (hyper client, keep-alive connections): single-entity
//!   reads, ranking batches, pushes and weighted mixes of them;
//! * **the floor**: a do-nothing hyper endpoint ([`floor`]) answering every request
//!   with a body of a fixed size, the HTTP limit of the machine;
//! * **Redis** over RESP ([`resp`], [`redis`]): `HMGET` of the same fields of the same
//!   entities, a pipeline of `HMGET`s for a ranking request, `HSET` for a push.
//!
//! Load is closed loop (N connections, each sending its next request when the last
//! one answered) or open loop (a fixed rate; latency is measured from each request's
//! intended send time, [`schedule`], so a stalled server cannot hide the queue it
//! causes). Entity ids are uniform or Zipf-distributed ([`keys`]). Every run is
//! bounded by a request count and a duration, and targets loopback addresses only
//! ([`target`]). Latencies go into an HdrHistogram ([`stats`]); results are written as
//! CSV and JSON ([`output`]) and turned into the Markdown report with PNG plots
//! ([`report`], [`plot`]).
//!
//! It is not a general HTTP benchmarking tool: it knows featstore's request shapes.
//!
//! # Layout
//!
//! * [`target`] — target parsing and the loopback-only rule.
//! * [`keys`] — the random source and the uniform/Zipf id samplers.
//! * [`schedule`] — open-loop send times and coordinated-omission-free latency.
//! * [`workload`] — request shapes, mixes and their HTTP and RESP encodings.
//! * [`resp`] — RESP encoding and reply parsing.
//! * [`http`], [`redis`] — one keep-alive connection to each kind of target.
//! * [`stats`] — histogram, error classes, the result of a run.
//! * [`runner`] — closed and open loop, probes.
//! * [`floor`] — the do-nothing HTTP endpoint.
//! * [`redis_load`] — loads a wide CSV into Redis hashes.
//! * [`output`], [`report`], [`plot`] — CSV/JSON, the Markdown report, PNG charts.

#![forbid(unsafe_code)]

pub mod floor;
pub mod http;
pub mod keys;
pub mod output;
pub mod plot;
pub mod redis;
pub mod redis_load;
pub mod report;
pub mod resp;
pub mod runner;
pub mod schedule;
pub mod stats;
pub mod target;
pub mod workload;
