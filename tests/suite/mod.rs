//! Integration test modules.

mod aggregates;
mod client;
pub mod common;
mod concurrent_swap;
mod crash;
mod crash_found;
mod crash_harness;
mod end_to_end;
mod entity_ids;
mod event_times;
mod exact_strings;
mod get_answer;
mod layout;
mod limits;
mod loading;
mod observers;
mod operations;
mod ranking;
mod ranking_model;
mod registry;
mod restart;
mod segments;
mod shutdown;
mod stream_recovery;
mod streaming;
mod streaming_http;
mod versions;
