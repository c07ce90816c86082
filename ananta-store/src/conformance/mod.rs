//! The conformance suite every [`TaskStore`] backend must pass.
//!
//! Each case is a public `async fn(DynStore)` that panics when the store breaks a rule. Cases
//! use the trait only, expect a fresh (empty) store, and do not depend on how fast the store
//! is, except the lease-expiry cases, which take leases of [`SHORT_LEASE`] and sleep
//! [`PAST_SHORT_LEASE`]. [`concurrent_claims`] spawns tokio tasks; run it on a multi-thread
//! runtime (`#[tokio::test(flavor = "multi_thread", worker_threads = 4)]`) to really race.
//!
//! Run everything with [`run_all`]; it gives each case a new store and, when cases fail,
//! panics with the names of the failed cases and their messages. Run a selection with
//! [`run_cases`] and [`CASES`], or call one case directly:
//!
//! ```
//! use std::sync::Arc;
//! use ananta_store::{MemoryStore, conformance};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! // The whole suite, a fresh store per case:
//! conformance::run_all(|| async { MemoryStore::new() }).await;
//!
//! // One case:
//! conformance::claim_order(Arc::new(MemoryStore::new())).await;
//! # }
//! ```
//!
//! Timestamps are compared with a tolerance of one millisecond, so backends may store them
//! with microsecond precision.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::any::Any;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt::Debug;
use std::future::Future;
use std::panic::{AssertUnwindSafe, Location};
use std::sync::Arc;
use std::time::Duration;

use ananta_core::error::{StoreError, TransitionError};
use ananta_core::exec::ExecOutcome;
use ananta_core::ids::{AgentId, TaskId, TemplateId};
use ananta_core::log::{Direction, LogEntry, LogQuery};
use ananta_core::store::{Claim, MAX_LEASE, TaskStore};
use ananta_core::task::{
    NewTask, Priority, Proposal, StepRecord, Task, TaskFilter, TaskStatus, TaskUpdate, TokenUsage,
};
use ananta_core::template::{NewTemplate, Template, TemplateUpdate};
use chrono::{DateTime, TimeDelta, Utc};
use futures::FutureExt;
use futures::future::BoxFuture;

mod claims;
mod helpers;
mod leases;
mod logs;
mod tasks;
mod templates;

pub use claims::*;
pub use leases::*;
pub use logs::*;
pub use tasks::*;
pub use templates::*;

/// The store under test, shared so that cases can hand it to spawned tasks.
pub type DynStore = Arc<dyn TaskStore>;

/// The lease the expiry cases take: short enough to wait out.
pub const SHORT_LEASE: Duration = Duration::from_millis(50);
/// How long the expiry cases sleep after taking a [`SHORT_LEASE`].
pub const PAST_SHORT_LEASE: Duration = Duration::from_millis(150);
/// The lease the other cases take: long enough never to expire during a case.
pub const LONG_LEASE: Duration = Duration::from_secs(600);

/// One conformance case: its name and the function that runs it on a fresh store.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// The case's name (the name of its function in this module).
    pub name: &'static str,
    /// Runs the case; the future panics when the store fails it.
    pub run: fn(DynStore) -> BoxFuture<'static, ()>,
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        /// Every case of the suite, in the order [`run_all`] runs them.
        pub const CASES: &[Case] = &[
            $(Case { name: stringify!($name), run: |store| Box::pin($name(store)) },)*
        ];
    };
}

cases!(
    task_roundtrip,
    run_links_roundtrip,
    create_task_rejections,
    list_filters,
    transitions_exhaustive,
    forbidden_transition_changes_nothing,
    optimistic_versioning,
    step_history,
    templates_crud,
    template_in_use,
    unknown_template_rejected,
    log_order_and_filters,
    log_paging,
    claim_order,
    claim_many_in_order,
    concurrent_claim_many,
    claim_assigns_and_starts,
    claim_nothing_claimable,
    claim_respects_assignment,
    concurrent_claims,
    expired_lease_is_rescued,
    expired_proposing_lease_is_rescued,
    leaving_active_status_ends_the_claim,
    stale_token_rejected_after_takeover,
    expired_untaken_lease_still_current,
    renew_extends,
    release_to_todo_gives_back,
    release_to_done_ends,
    release_forbidden_status_changes_nothing,
    release_many_ends_each,
    release_many_fails_alone,
    invalid_lease_rejected,
);

/// Runs every case in [`CASES`], each on a new store from `make_store`. Panics after the last
/// case if any failed, naming every failed case and its panic message.
pub async fn run_all<F, Fut, S>(make_store: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: TaskStore + 'static,
{
    run_cases(CASES, make_store).await;
}

/// Runs the given cases, each on a new store from `make_store`; panics like [`run_all`].
pub async fn run_cases<F, Fut, S>(cases: &[Case], make_store: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: TaskStore + 'static,
{
    let make = &make_store;
    run_suite(
        "TaskStore",
        cases,
        |case| case.name,
        |case| {
            let case = *case;
            async move {
                let store: DynStore = Arc::new(make().await);
                (case.run)(store).await;
            }
        },
    )
    .await;
}

/// Runs each case (`run` makes its subject and runs it), catching panics; then panics naming
/// every failed case of `suite` and its message. Shared by the conformance suites.
pub(crate) async fn run_suite<C, Fut>(
    suite: &str,
    cases: &[C],
    name: impl Fn(&C) -> &'static str,
    run: impl Fn(&C) -> Fut,
) where
    Fut: Future<Output = ()>,
{
    let mut failures = Vec::new();
    for case in cases {
        tracing::info!(case = name(case), "running {suite} conformance case");
        if let Err(payload) = AssertUnwindSafe(run(case)).catch_unwind().await {
            failures.push(format!(
                "- {}: {}",
                name(case),
                panic_message(payload.as_ref())
            ));
        }
    }
    if !failures.is_empty() {
        panic!(
            "{suite} conformance: {} of {} case(s) failed:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
    }
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(panic without a message)".to_string()
    }
}
