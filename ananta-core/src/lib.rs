//! wip
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
pub mod agent;
pub mod decompose;
pub mod error;
pub mod event;
pub mod exec;
pub mod ids;
pub mod llm;
pub mod log;
pub mod registry;
pub mod store;
pub mod task;
pub mod template;
