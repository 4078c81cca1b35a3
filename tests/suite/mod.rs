//! Integration test modules.

pub mod common;
mod concurrent_swap;
mod end_to_end;
mod loading;
mod ranking;
mod registry;
mod restart;
mod segments;
mod versions;
