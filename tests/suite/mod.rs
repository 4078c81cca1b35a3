//! Integration test modules.

mod aggregates;
pub mod common;
mod concurrent_swap;
mod crash;
mod end_to_end;
mod limits;
mod loading;
mod ranking;
mod ranking_model;
mod registry;
mod restart;
mod segments;
mod shutdown;
mod streaming;
mod streaming_http;
mod versions;
