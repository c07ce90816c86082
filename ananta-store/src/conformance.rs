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

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

#[track_caller]
fn ok<T, E: Debug>(result: Result<T, E>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!(
            "{what}: expected success, got error {e:?} (at {})",
            Location::caller()
        ),
    }
}

#[track_caller]
fn err<T: Debug>(result: Result<T, StoreError>, what: &str) -> StoreError {
    match result {
        Ok(value) => panic!(
            "{what}: expected an error, got {value:?} (at {})",
            Location::caller()
        ),
        Err(e) => e,
    }
}

#[track_caller]
fn some<T>(value: Option<T>, what: &str) -> T {
    match value {
        Some(v) => v,
        None => panic!(
            "{what}: expected Some, got None (at {})",
            Location::caller()
        ),
    }
}

fn agent(name: &str) -> AgentId {
    AgentId::new(name).unwrap()
}

async fn create(store: &dyn TaskStore, new: NewTask) -> Task {
    let task = new.into_task().unwrap();
    ok(store.create_task(task).await, "create_task")
}

async fn todo(store: &dyn TaskStore, title: &str) -> Task {
    create(store, NewTask::new(title).status(TaskStatus::Todo)).await
}

async fn get(store: &dyn TaskStore, id: TaskId) -> Task {
    ok(store.get_task(id).await, "get_task")
}

async fn update(store: &dyn TaskStore, id: TaskId, update: TaskUpdate) -> Task {
    ok(store.update_task(id, update, None).await, "update_task")
}

async fn claim(store: &dyn TaskStore, who: &AgentId, lease: Duration) -> Option<Claim> {
    ok(store.claim(who.clone(), lease).await, "claim")
}

/// Claims, retrying errors the store reports as transient (e.g. a busy database).
async fn claim_retrying(store: &dyn TaskStore, who: &AgentId, lease: Duration) -> Option<Claim> {
    let mut attempt = 0;
    loop {
        match store.claim(who.clone(), lease).await {
            Ok(claim) => return claim,
            Err(e) if e.is_transient() && attempt < 100 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => panic!("claim by {who} failed after {attempt} retries: {e:?}"),
        }
    }
}

fn assign(who: &AgentId) -> TaskUpdate {
    TaskUpdate {
        assigned_agent: Some(Some(who.clone())),
        ..TaskUpdate::default()
    }
}

fn close(a: DateTime<Utc>, b: DateTime<Utc>) -> bool {
    (a - b).abs() <= TimeDelta::milliseconds(1)
}

#[track_caller]
fn assert_close(expected: DateTime<Utc>, actual: DateTime<Utc>, what: &str) {
    assert!(
        close(expected, actual),
        "{what}: expected a time within 1 ms of {expected}, got {actual} (at {})",
        Location::caller()
    );
}

/// Checks `actual`'s timestamps against `expected`'s (1 ms tolerance), then copies them over so
/// the rest can be compared exactly.
#[track_caller]
fn align_proposal(expected: &Option<Proposal>, actual: &mut Option<Proposal>, what: &str) {
    if let (Some(e), Some(a)) = (expected, actual.as_mut()) {
        assert_close(
            e.proposed_at,
            a.proposed_at,
            &format!("{what}: proposal.proposed_at"),
        );
        a.proposed_at = e.proposed_at;
    }
}

#[track_caller]
fn align_step(expected: &StepRecord, actual: &mut StepRecord, what: &str) {
    assert_close(
        expected.started_at,
        actual.started_at,
        &format!("{what}: step.started_at"),
    );
    assert_close(
        expected.finished_at,
        actual.finished_at,
        &format!("{what}: step.finished_at"),
    );
    actual.started_at = expected.started_at;
    actual.finished_at = expected.finished_at;
    align_proposal(&expected.proposal, &mut actual.proposal, what);
}

/// Asserts that two tasks are equal, timestamps within 1 ms.
#[track_caller]
fn assert_same_task(expected: &Task, actual: &Task, what: &str) {
    let mut a = actual.clone();
    assert_close(
        expected.created_at,
        a.created_at,
        &format!("{what}: created_at"),
    );
    assert_close(
        expected.updated_at,
        a.updated_at,
        &format!("{what}: updated_at"),
    );
    a.created_at = expected.created_at;
    a.updated_at = expected.updated_at;
    if let (Some(e), Some(l)) = (&expected.lease, a.lease.as_mut()) {
        assert_close(
            e.expires_at,
            l.expires_at,
            &format!("{what}: lease.expires_at"),
        );
        l.expires_at = e.expires_at;
    }
    align_proposal(&expected.proposal, &mut a.proposal, what);
    for (e, s) in expected.steps.iter().zip(a.steps.iter_mut()) {
        align_step(e, s, what);
    }
    assert_eq!(
        expected,
        &a,
        "{what}: tasks differ (at {})",
        Location::caller()
    );
}

#[track_caller]
fn assert_same_tasks(expected: &[Task], actual: &[Task], what: &str) {
    let ids = |ts: &[Task]| ts.iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(
        ids(expected),
        ids(actual),
        "{what}: task ids (at {})",
        Location::caller()
    );
    for (e, a) in expected.iter().zip(actual) {
        assert_same_task(e, a, what);
    }
}

#[track_caller]
fn assert_same_template(expected: &Template, actual: &Template, what: &str) {
    let mut a = actual.clone();
    assert_close(
        expected.created_at,
        a.created_at,
        &format!("{what}: created_at"),
    );
    assert_close(
        expected.updated_at,
        a.updated_at,
        &format!("{what}: updated_at"),
    );
    a.created_at = expected.created_at;
    a.updated_at = expected.updated_at;
    assert_eq!(
        expected,
        &a,
        "{what}: templates differ (at {})",
        Location::caller()
    );
}

#[track_caller]
fn assert_same_logs(expected: &[LogEntry], actual: &[LogEntry], what: &str) {
    let seqs = |es: &[LogEntry]| es.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(expected),
        seqs(actual),
        "{what}: log seqs (at {})",
        Location::caller()
    );
    for (e, a) in expected.iter().zip(actual) {
        let mut a = a.clone();
        assert_close(e.timestamp, a.timestamp, &format!("{what}: log timestamp"));
        a.timestamp = e.timestamp;
        assert_eq!(
            e,
            &a,
            "{what}: log entries differ (at {})",
            Location::caller()
        );
    }
}

#[track_caller]
fn assert_task_not_found(e: StoreError, id: TaskId, what: &str) {
    assert!(
        matches!(e, StoreError::TaskNotFound(got) if got == id),
        "{what}: expected TaskNotFound({id}), got {e:?} (at {})",
        Location::caller()
    );
}

#[track_caller]
fn assert_template_not_found(e: StoreError, id: TemplateId, what: &str) {
    assert!(
        matches!(e, StoreError::TemplateNotFound(got) if got == id),
        "{what}: expected TemplateNotFound({id}), got {e:?} (at {})",
        Location::caller()
    );
}

#[track_caller]
fn assert_stale(e: StoreError, claim: &Claim, what: &str) {
    assert!(
        matches!(e, StoreError::StaleClaim { task, token } if task == claim.task_id && token == claim.token),
        "{what}: expected StaleClaim {{ task: {}, token: {} }}, got {e:?} (at {})",
        claim.task_id,
        claim.token,
        Location::caller()
    );
}

#[track_caller]
fn assert_invalid_input(e: StoreError, what: &str) {
    assert!(
        matches!(e, StoreError::InvalidInput(_)),
        "{what}: expected InvalidInput, got {e:?} (at {})",
        Location::caller()
    );
}

fn proposal(command: &str) -> Proposal {
    Proposal {
        reason: format!("run {command}"),
        command: command.to_string(),
        raw: format!("{{\"command\": {command:?}}}"),
        prompt: "What next?".to_string(),
        usage: Some(TokenUsage {
            prompt_tokens: 12,
            completion_tokens: 3,
        }),
        agent: Some(agent("alice")),
        proposed_at: Utc::now(),
        needs_approval: vec!["touches files".to_string()],
    }
}

fn step(command: &str, index: u32) -> StepRecord {
    let started_at = Utc::now();
    StepRecord {
        index,
        agent: Some(agent("alice")),
        prompt: format!("prompt for {command}"),
        proposal: Some(proposal(command)),
        command: command.to_string(),
        outcome: ExecOutcome {
            exit_code: Some(0),
            stdout: format!("output of {command}"),
            stderr: "a warning".to_string(),
            duration_ms: 42,
            ..ExecOutcome::default()
        },
        started_at,
        finished_at: started_at + TimeDelta::milliseconds(42),
    }
}

/// The shortest chain of allowed transitions from `backlog` to `target` (without `backlog`).
fn path_from_backlog(target: TaskStatus) -> Vec<TaskStatus> {
    let mut previous: HashMap<TaskStatus, TaskStatus> = HashMap::new();
    let mut queue = VecDeque::from([TaskStatus::Backlog]);
    while let Some(at) = queue.pop_front() {
        if at == target {
            break;
        }
        for next in TaskStatus::ALL {
            if next != TaskStatus::Backlog
                && at.can_transition_to(next)
                && !previous.contains_key(&next)
            {
                previous.insert(next, at);
                queue.push_back(next);
            }
        }
    }
    let mut path = Vec::new();
    let mut at = target;
    while at != TaskStatus::Backlog {
        path.push(at);
        at = *previous
            .get(&at)
            .unwrap_or_else(|| panic!("{target} is not reachable from backlog"));
    }
    path.reverse();
    path
}

// ---------------------------------------------------------------------------------------------
// Tasks
// ---------------------------------------------------------------------------------------------

/// Create, get, list and delete a task; missing tasks give `TaskNotFound`; a deleted task's
/// log entries stay.
pub async fn task_roundtrip(store: DynStore) {
    let s = &*store;
    assert!(
        ok(s.list_tasks(TaskFilter::default()).await, "list").is_empty(),
        "a new store is empty"
    );

    let input = NewTask::new("Write the parser")
        .description("Parse the config file format")
        .priority(Priority::High)
        .status(TaskStatus::Todo)
        .tag("rust")
        .tag("parser")
        .into_task()
        .unwrap();
    let created = ok(s.create_task(input.clone()).await, "create_task");
    let mut expected = input.clone();
    expected.version = 1;
    assert_same_task(
        &expected,
        &created,
        "create_task returns the stored task with version 1",
    );

    let fetched = get(s, input.id).await;
    assert_same_task(&created, &fetched, "get_task after create_task");
    let other = create(s, NewTask::new("Second")).await;
    let listed = ok(s.list_tasks(TaskFilter::default()).await, "list_tasks");
    assert_same_tasks(
        &[created.clone(), other.clone()],
        &listed,
        "list_tasks, oldest first",
    );

    let entry = LogEntry::new(
        Direction::Out,
        "status",
        serde_json::json!({"status": "todo"}),
    )
    .task(input.id);
    let logged = ok(s.append_log(entry).await, "append_log");

    ok(s.delete_task(input.id).await, "delete_task");
    assert_task_not_found(
        err(s.get_task(input.id).await, "get deleted"),
        input.id,
        "get deleted",
    );
    assert_task_not_found(
        err(s.delete_task(input.id).await, "delete twice"),
        input.id,
        "delete twice",
    );
    assert_task_not_found(
        err(
            s.update_task(input.id, TaskUpdate::status(TaskStatus::Done), None)
                .await,
            "update deleted",
        ),
        input.id,
        "update deleted",
    );
    assert_task_not_found(
        err(
            s.append_step(input.id, step("ls", 1)).await,
            "append_step deleted",
        ),
        input.id,
        "append_step deleted",
    );
    let listed = ok(s.list_tasks(TaskFilter::default()).await, "list_tasks");
    assert_same_tasks(
        std::slice::from_ref(&other),
        &listed,
        "list_tasks after delete",
    );
    assert_same_task(
        &other,
        &get(s, other.id).await,
        "the other task is untouched",
    );

    let logs = ok(s.logs(LogQuery::task(input.id)).await, "logs");
    assert_same_logs(&[logged], &logs, "log entries of a deleted task stay");

    let missing = TaskId::new();
    assert_task_not_found(
        err(s.get_task(missing).await, "get missing"),
        missing,
        "get missing",
    );
}

/// A task's run link and dependencies (`run_id`, `depends_on`, set by the orchestrator) are
/// stored with it and survive reads, updates, listing and claims.
pub async fn run_links_roundtrip(store: DynStore) {
    let s = &*store;
    let run = create(s, NewTask::new("run").status(TaskStatus::InProgress)).await;
    let first = create(s, NewTask::new("first").tag("run-node")).await;
    let mut input = NewTask::new("second")
        .tag("run-node")
        .status(TaskStatus::Todo)
        .into_task()
        .unwrap();
    input.run_id = Some(run.id);
    input.depends_on = vec![first.id, run.id];
    let created = ok(s.create_task(input.clone()).await, "create_task");
    assert_eq!(created.run_id, Some(run.id), "create_task keeps run_id");
    assert_eq!(
        created.depends_on, input.depends_on,
        "create_task keeps depends_on"
    );
    let fetched = get(s, input.id).await;
    assert_same_task(&created, &fetched, "get_task keeps the run link");
    let updated = update(s, input.id, TaskUpdate::status(TaskStatus::InProgress)).await;
    assert_eq!(
        (updated.run_id, updated.depends_on.clone()),
        (Some(run.id), input.depends_on.clone()),
        "update_task keeps the run link"
    );
    let listed = ok(
        s.list_tasks(TaskFilter {
            tag: Some("run-node".into()),
            ..TaskFilter::default()
        })
        .await,
        "list_tasks",
    );
    assert_same_tasks(
        &[first, updated.clone()],
        &listed,
        "list_tasks keeps the run link",
    );
    let released = ok(
        s.update_task(input.id, TaskUpdate::status(TaskStatus::Done), None)
            .await,
        "update to done",
    );
    assert_eq!(
        released.depends_on, input.depends_on,
        "a finished task keeps its dependencies"
    );
}

/// `create_task` rejects a duplicate id, invalid fields and an unknown template, storing nothing.
pub async fn create_task_rejections(store: DynStore) {
    let s = &*store;
    let original = create(s, NewTask::new("original")).await;

    let mut duplicate = NewTask::new("duplicate").into_task().unwrap();
    duplicate.id = original.id;
    let e = err(s.create_task(duplicate).await, "duplicate id");
    assert!(
        matches!(e, StoreError::AlreadyExists(_)),
        "duplicate id: expected AlreadyExists, got {e:?}"
    );
    assert_same_task(
        &original,
        &get(s, original.id).await,
        "duplicate id leaves the original",
    );

    let mut blank = NewTask::new("fine").into_task().unwrap();
    blank.title = "   ".to_string();
    assert_invalid_input(
        err(s.create_task(blank.clone()).await, "blank title"),
        "blank title",
    );
    assert_task_not_found(
        err(s.get_task(blank.id).await, "blank title"),
        blank.id,
        "blank title is not stored",
    );

    let mut bad_tag = NewTask::new("fine").into_task().unwrap();
    bad_tag.tags = vec![String::new()];
    assert_invalid_input(
        err(s.create_task(bad_tag.clone()).await, "empty tag"),
        "empty tag",
    );
    assert_task_not_found(
        err(s.get_task(bad_tag.id).await, "empty tag"),
        bad_tag.id,
        "empty tag is not stored",
    );

    let listed = ok(s.list_tasks(TaskFilter::default()).await, "list_tasks");
    assert_same_tasks(&[original], &listed, "only the valid task is stored");
}

/// `list_tasks` filters by status, agent and tag, keeps oldest first, and `limit` truncates
/// after filtering. Listed tasks are complete (with their steps).
pub async fn list_filters(store: DynStore) {
    let s = &*store;
    let alice = agent("alice");
    let bob = agent("bob");
    let a = create(
        s,
        NewTask::new("a")
            .status(TaskStatus::Todo)
            .tag("x")
            .tag("rust"),
    )
    .await;
    let b = create(s, NewTask::new("b").tag("rust")).await;
    let c = create(s, NewTask::new("c").status(TaskStatus::Todo)).await;
    let d = create(s, NewTask::new("d").status(TaskStatus::Done).tag("x")).await;
    update(s, a.id, assign(&alice)).await;
    update(s, b.id, assign(&bob)).await;
    update(s, c.id, assign(&alice)).await;
    ok(s.append_step(a.id, step("ls", 1)).await, "append_step");
    let (a, b, c, d) = (
        get(s, a.id).await,
        get(s, b.id).await,
        get(s, c.id).await,
        get(s, d.id).await,
    );

    let list = |filter: TaskFilter| async move { ok(s.list_tasks(filter).await, "list_tasks") };
    let all = [a.clone(), b.clone(), c.clone(), d.clone()];
    assert_same_tasks(&all, &list(TaskFilter::default()).await, "no filter");

    let status = |st: &[TaskStatus]| TaskFilter {
        statuses: st.to_vec(),
        ..TaskFilter::default()
    };
    assert_same_tasks(
        &[a.clone(), c.clone()],
        &list(status(&[TaskStatus::Todo])).await,
        "status todo",
    );
    assert_same_tasks(
        &[a.clone(), c.clone(), d.clone()],
        &list(status(&[TaskStatus::Done, TaskStatus::Todo])).await,
        "status todo or done",
    );
    assert_same_tasks(
        &[],
        &list(status(&[TaskStatus::Failed])).await,
        "status failed",
    );

    let by_agent = |who: &AgentId| TaskFilter {
        assigned_agent: Some(who.clone()),
        ..TaskFilter::default()
    };
    assert_same_tasks(
        &[a.clone(), c.clone()],
        &list(by_agent(&alice)).await,
        "agent alice",
    );
    assert_same_tasks(
        std::slice::from_ref(&b),
        &list(by_agent(&bob)).await,
        "agent bob",
    );
    assert_same_tasks(&[], &list(by_agent(&agent("carol"))).await, "agent carol");

    let tag = |t: &str| TaskFilter {
        tag: Some(t.to_string()),
        ..TaskFilter::default()
    };
    assert_same_tasks(&[a.clone(), d.clone()], &list(tag("x")).await, "tag x");
    assert_same_tasks(
        &[a.clone(), b.clone()],
        &list(tag("rust")).await,
        "tag rust",
    );
    assert_same_tasks(&[], &list(tag("ru")).await, "tag matches whole tags only");

    let combined = TaskFilter {
        statuses: vec![TaskStatus::Todo],
        assigned_agent: Some(alice.clone()),
        tag: Some("x".to_string()),
        limit: None,
    };
    assert_same_tasks(
        std::slice::from_ref(&a),
        &list(combined).await,
        "status + agent + tag",
    );

    let limit = |n: usize, f: TaskFilter| TaskFilter {
        limit: Some(n),
        ..f
    };
    assert_same_tasks(
        &[a.clone(), b.clone()],
        &list(limit(2, TaskFilter::default())).await,
        "limit 2",
    );
    assert_same_tasks(
        &all,
        &list(limit(10, TaskFilter::default())).await,
        "limit 10",
    );
    assert_same_tasks(&[], &list(limit(0, TaskFilter::default())).await, "limit 0");
    assert_same_tasks(
        std::slice::from_ref(&a),
        &list(limit(1, tag("x"))).await,
        "tag x, limit 1",
    );
    assert_same_tasks(
        std::slice::from_ref(&a),
        &list(limit(1, status(&[TaskStatus::Todo]))).await,
        "limit after filter",
    );
    assert_same_tasks(
        std::slice::from_ref(&d),
        &list(limit(1, status(&[TaskStatus::Done]))).await,
        "limit after filter",
    );
}

/// Every pair in `TaskStatus::ALL` x `TaskStatus::ALL`: a task driven into `from` through
/// allowed steps moves to `to` exactly when the table allows it; a refused move changes nothing.
pub async fn transitions_exhaustive(store: DynStore) {
    let s = &*store;
    for from in TaskStatus::ALL {
        let path = path_from_backlog(from);
        for to in TaskStatus::ALL {
            let what = format!("{from} -> {to}");
            let mut task = create(s, NewTask::new(what.clone())).await;
            assert_eq!(
                task.status,
                TaskStatus::Backlog,
                "{what}: new tasks start in backlog"
            );
            for (i, &st) in path.iter().enumerate() {
                let next = s
                    .update_task(task.id, TaskUpdate::status(st), Some(task.version))
                    .await;
                task = ok(next, &format!("{what}: driving to {st}"));
                assert_eq!(task.status, st, "{what}: driving to {st}");
                assert_eq!(
                    task.version,
                    2 + i as u64,
                    "{what}: version after driving to {st}"
                );
            }
            let before = task.clone();
            let result = s
                .update_task(task.id, TaskUpdate::status(to), Some(before.version))
                .await;
            if from.can_transition_to(to) {
                let after = ok(result, &what);
                assert_eq!(after.status, to, "{what}: status after an allowed move");
                assert_eq!(
                    after.version,
                    before.version + 1,
                    "{what}: version after an allowed move"
                );
                assert_same_task(&after, &get(s, task.id).await, &format!("{what}: stored"));
            } else {
                let e = err(result, &what);
                let expected = TransitionError {
                    task: task.id,
                    from,
                    to,
                };
                assert!(
                    matches!(&e, StoreError::InvalidTransition(t) if *t == expected),
                    "{what}: expected InvalidTransition({expected:?}), got {e:?}"
                );
                assert_same_task(
                    &before,
                    &get(s, task.id).await,
                    &format!("{what}: refused move changes nothing"),
                );
            }
        }
    }
}

/// A refused update (forbidden transition, invalid field) changes no field, not even the
/// valid ones in the same update.
pub async fn forbidden_transition_changes_nothing(store: DynStore) {
    let s = &*store;
    let task = create(s, NewTask::new("keep me").tag("a")).await;
    let bad_status = TaskUpdate {
        title: Some("changed".to_string()),
        tags: Some(vec!["b".to_string()]),
        priority: Some(Priority::Critical),
        assigned_agent: Some(Some(agent("alice"))),
        status: Some(TaskStatus::Done),
        ..TaskUpdate::default()
    };
    let e = err(
        s.update_task(task.id, bad_status, None).await,
        "backlog -> done",
    );
    assert!(
        matches!(e, StoreError::InvalidTransition(_)),
        "backlog -> done: got {e:?}"
    );
    assert_same_task(
        &task,
        &get(s, task.id).await,
        "a forbidden transition changes nothing",
    );

    let bad_title = TaskUpdate {
        title: Some(" ".to_string()),
        status: Some(TaskStatus::Todo),
        ..TaskUpdate::default()
    };
    assert_invalid_input(
        err(s.update_task(task.id, bad_title, None).await, "blank title"),
        "blank title",
    );
    assert_same_task(
        &task,
        &get(s, task.id).await,
        "an invalid field changes nothing",
    );
}

/// Versions start at 1 and grow by one per change; a stale `expected_version` fails with
/// `VersionConflict` carrying both numbers and changes nothing.
pub async fn optimistic_versioning(store: DynStore) {
    let s = &*store;
    let task = create(s, NewTask::new("v1")).await;
    assert_eq!(task.version, 1, "a created task has version 1");

    let title = |t: &str| TaskUpdate {
        title: Some(t.to_string()),
        ..TaskUpdate::default()
    };
    let v2 = ok(
        s.update_task(task.id, title("v2"), Some(1)).await,
        "update at the current version",
    );
    assert_eq!(
        (v2.version, v2.title.as_str()),
        (2, "v2"),
        "update with the right version"
    );
    assert!(
        v2.updated_at >= task.updated_at - TimeDelta::seconds(1),
        "updated_at moves forward"
    );

    for stale in [1, 3, 0] {
        let e = err(
            s.update_task(task.id, title("stale"), Some(stale)).await,
            "stale version",
        );
        assert!(
            matches!(e, StoreError::VersionConflict { id, expected, actual: 2 } if id == task.id && expected == stale),
            "expected VersionConflict {{ id: {}, expected: {stale}, actual: 2 }}, got {e:?}",
            task.id
        );
        assert!(e.is_transient(), "a version conflict is transient");
        assert_same_task(
            &v2,
            &get(s, task.id).await,
            "a conflicting update changes nothing",
        );
    }

    let v3 = ok(
        s.update_task(task.id, title("v3"), None).await,
        "update without a version",
    );
    assert_eq!(
        v3.version, 3,
        "an unconditional update also increments the version"
    );
    let e = err(
        s.update_task(task.id, TaskUpdate::status(TaskStatus::Done), Some(3))
            .await,
        "bad move",
    );
    assert!(matches!(e, StoreError::InvalidTransition(_)), "got {e:?}");
    assert_eq!(
        get(s, task.id).await.version,
        3,
        "a refused update keeps the version"
    );

    let v4 = ok(s.append_step(task.id, step("ls", 1)).await, "append_step");
    assert_eq!(v4.version, 4, "append_step increments the version");
    let e = err(
        s.update_task(task.id, title("late"), Some(3)).await,
        "version before append_step",
    );
    assert!(
        matches!(
            e,
            StoreError::VersionConflict {
                expected: 3,
                actual: 4,
                ..
            }
        ),
        "got {e:?}"
    );

    let missing = TaskId::new();
    assert_task_not_found(
        err(s.update_task(missing, title("x"), Some(1)).await, "missing"),
        missing,
        "missing",
    );
}

/// `append_step` numbers steps 1, 2, 3… whatever index it is given, keeps them in order,
/// clears the pending proposal and increments the version.
pub async fn step_history(store: DynStore) {
    let s = &*store;
    let task = todo(s, "with steps").await;
    let pending = proposal("ls -la");
    let proposed = update(
        s,
        task.id,
        TaskUpdate {
            proposal: Some(Some(pending.clone())),
            ..TaskUpdate::default()
        },
    )
    .await;
    let expected_proposal = Some(pending);
    let mut stored_proposal = get(s, task.id).await.proposal;
    align_proposal(&expected_proposal, &mut stored_proposal, "stored proposal");
    assert_eq!(stored_proposal, expected_proposal, "the proposal is stored");

    let inputs = [
        step("ls -la", 99),
        step("cat Cargo.toml", 0),
        step("cargo build", 2),
    ];
    let mut version = proposed.version;
    let mut last = proposed;
    for (i, input) in inputs.iter().enumerate() {
        last = ok(s.append_step(task.id, input.clone()).await, "append_step");
        version += 1;
        assert_eq!(last.version, version, "append_step {i}: version");
        assert_eq!(last.proposal, None, "append_step {i}: proposal cleared");
        assert_eq!(last.steps.len(), i + 1, "append_step {i}: history length");
    }
    let stored = get(s, task.id).await;
    assert_same_task(&last, &stored, "get_task after append_step");
    assert_eq!(stored.steps.len(), inputs.len(), "every step is kept");
    for (i, (input, got)) in inputs.iter().zip(&stored.steps).enumerate() {
        let mut expected = input.clone();
        expected.index = i as u32 + 1;
        let mut got = got.clone();
        align_step(&expected, &mut got, "stored step");
        assert_eq!(
            expected,
            got,
            "step {} is stored in order with index {}",
            i + 1,
            i + 1
        );
    }

    let missing = TaskId::new();
    assert_task_not_found(
        err(s.append_step(missing, step("x", 1)).await, "missing"),
        missing,
        "missing",
    );
}

// ---------------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------------

/// Template create/get/list/update/delete, unique names (also on rename), validation, and
/// `TemplateNotFound` for missing ones.
pub async fn templates_crud(store: DynStore) {
    let s = &*store;
    assert!(
        ok(s.list_templates().await, "list_templates").is_empty(),
        "a new store has no templates"
    );

    let mut new = NewTemplate::new("fix-bug", "Fix {{title}} in {{lang}}: {{description}}");
    new.description = "Bug fixing".to_string();
    new.provider = Some("ollama".to_string());
    new.defaults.insert("lang".to_string(), "Rust".to_string());
    let t1_in = new.into_template().unwrap();
    let t1 = ok(s.create_template(t1_in.clone()).await, "create_template");
    assert_same_template(&t1_in, &t1, "create_template returns the template");
    assert_same_template(
        &t1,
        &ok(s.get_template(t1.id).await, "get_template"),
        "get_template",
    );

    let same_name = NewTemplate::new("fix-bug", "Other {{title}}")
        .into_template()
        .unwrap();
    let e = err(s.create_template(same_name).await, "duplicate name");
    assert!(
        matches!(e, StoreError::AlreadyExists(_)),
        "duplicate name: got {e:?}"
    );
    let mut same_id = NewTemplate::new("another", "{{title}}")
        .into_template()
        .unwrap();
    same_id.id = t1.id;
    let e = err(s.create_template(same_id).await, "duplicate id");
    assert!(
        matches!(e, StoreError::AlreadyExists(_)),
        "duplicate id: got {e:?}"
    );
    let mut invalid = NewTemplate::new("broken", "{{title}}")
        .into_template()
        .unwrap();
    invalid.prompt_template = "Fix {{ oops".to_string();
    assert_invalid_input(
        err(s.create_template(invalid.clone()).await, "bad syntax"),
        "bad syntax",
    );
    assert_template_not_found(
        err(s.get_template(invalid.id).await, "bad"),
        invalid.id,
        "invalid is not stored",
    );

    let t2 = ok(
        s.create_template(
            NewTemplate::new("write-docs", "Document {{title}}")
                .into_template()
                .unwrap(),
        )
        .await,
        "create_template",
    );
    let listed = ok(s.list_templates().await, "list_templates");
    assert_eq!(
        listed.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![t1.id, t2.id],
        "oldest first"
    );

    let describe = TemplateUpdate {
        description: Some("Docs".to_string()),
        ..TemplateUpdate::default()
    };
    let t2 = ok(
        s.update_template(t2.id, describe).await,
        "update description",
    );
    assert_eq!(
        (t2.name.as_str(), t2.description.as_str()),
        ("write-docs", "Docs"),
        "updated fields"
    );
    assert_same_template(
        &t2,
        &ok(s.get_template(t2.id).await, "get"),
        "update is stored",
    );

    let rename = |n: &str| TemplateUpdate {
        name: Some(n.to_string()),
        ..TemplateUpdate::default()
    };
    let e = err(
        s.update_template(t2.id, rename("fix-bug")).await,
        "rename onto another name",
    );
    assert!(
        matches!(e, StoreError::AlreadyExists(_)),
        "rename clash: got {e:?}"
    );
    assert_same_template(
        &t2,
        &ok(s.get_template(t2.id).await, "get"),
        "a refused rename changes nothing",
    );
    let t2 = ok(
        s.update_template(t2.id, rename("write-docs")).await,
        "rename to its own name",
    );
    let t2 = ok(
        s.update_template(t2.id, rename("write-docs-v2")).await,
        "rename",
    );
    assert_eq!(t2.name, "write-docs-v2");
    let t3 = ok(
        s.create_template(
            NewTemplate::new("write-docs", "Docs for {{title}}")
                .into_template()
                .unwrap(),
        )
        .await,
        "the old name is free again",
    );

    let bad_text = TemplateUpdate {
        prompt_template: Some("{{nope}}".to_string()),
        ..TemplateUpdate::default()
    };
    assert_invalid_input(
        err(s.update_template(t2.id, bad_text).await, "unknown variable"),
        "unknown variable",
    );
    assert_same_template(
        &t2,
        &ok(s.get_template(t2.id).await, "get"),
        "an invalid update changes nothing",
    );

    let missing = TemplateId::new();
    assert_template_not_found(
        err(s.get_template(missing).await, "get"),
        missing,
        "get missing",
    );
    assert_template_not_found(
        err(s.update_template(missing, rename("x")).await, "update"),
        missing,
        "update missing",
    );
    assert_template_not_found(
        err(s.delete_template(missing).await, "delete"),
        missing,
        "delete missing",
    );

    ok(s.delete_template(t1.id).await, "delete_template");
    assert_template_not_found(
        err(s.get_template(t1.id).await, "get deleted"),
        t1.id,
        "get deleted",
    );
    let listed = ok(s.list_templates().await, "list_templates");
    assert_eq!(
        listed.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![t2.id, t3.id],
        "after delete"
    );
}

/// A template used by a task cannot be deleted (`InUse`) until no task refers to it.
pub async fn template_in_use(store: DynStore) {
    let s = &*store;
    let tpl = ok(
        s.create_template(
            NewTemplate::new("used", "Do {{title}}")
                .into_template()
                .unwrap(),
        )
        .await,
        "create_template",
    );
    let t1 = create(s, NewTask::new("one").template(tpl.id)).await;
    assert_eq!(t1.template_id, Some(tpl.id), "the task keeps its template");
    let t2 = create(s, NewTask::new("two")).await;
    update(
        s,
        t2.id,
        TaskUpdate {
            template_id: Some(Some(tpl.id)),
            ..TaskUpdate::default()
        },
    )
    .await;

    let e = err(
        s.delete_template(tpl.id).await,
        "delete while used by two tasks",
    );
    assert!(
        matches!(e, StoreError::InUse(_)),
        "expected InUse, got {e:?}"
    );
    update(
        s,
        t2.id,
        TaskUpdate {
            template_id: Some(None),
            ..TaskUpdate::default()
        },
    )
    .await;
    let e = err(
        s.delete_template(tpl.id).await,
        "delete while used by one task",
    );
    assert!(
        matches!(e, StoreError::InUse(_)),
        "expected InUse, got {e:?}"
    );
    assert_same_template(
        &tpl,
        &ok(s.get_template(tpl.id).await, "get"),
        "a refused delete keeps it",
    );

    ok(s.delete_task(t1.id).await, "delete_task");
    ok(s.delete_template(tpl.id).await, "delete once unused");
    assert_template_not_found(err(s.get_template(tpl.id).await, "get"), tpl.id, "deleted");
}

/// A task cannot be created with, or updated to, a template that does not exist.
pub async fn unknown_template_rejected(store: DynStore) {
    let s = &*store;
    let missing = TemplateId::new();
    let task = NewTask::new("orphan")
        .template(missing)
        .into_task()
        .unwrap();
    assert_template_not_found(
        err(s.create_task(task.clone()).await, "create"),
        missing,
        "create",
    );
    assert_task_not_found(
        err(s.get_task(task.id).await, "get"),
        task.id,
        "a rejected task is not stored",
    );

    let plain = create(s, NewTask::new("plain")).await;
    let set = TaskUpdate {
        template_id: Some(Some(missing)),
        title: Some("changed".to_string()),
        ..TaskUpdate::default()
    };
    assert_template_not_found(
        err(s.update_task(plain.id, set, None).await, "update"),
        missing,
        "update",
    );
    assert_same_task(
        &plain,
        &get(s, plain.id).await,
        "a rejected update changes nothing",
    );
}

// ---------------------------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------------------------

/// `append_log` assigns strictly increasing `seq`s and keeps every field; `logs` returns
/// ascending order, filters by task, and `limit` gives the latest entries, still ascending.
pub async fn log_order_and_filters(store: DynStore) {
    let s = &*store;
    assert!(
        ok(s.logs(LogQuery::default()).await, "logs").is_empty(),
        "a new store has no logs"
    );
    let a = create(s, NewTask::new("a")).await.id;
    let b = create(s, NewTask::new("b")).await.id;
    let alice = agent("alice");
    let inputs = [
        LogEntry::new(Direction::In, "prompt", serde_json::json!("What next?"))
            .task(a)
            .step(1)
            .agent(Some(alice.clone())),
        LogEntry::new(
            Direction::Out,
            "proposal",
            serde_json::json!({"command": "ls"}),
        )
        .task(b),
        LogEntry::new(
            Direction::Out,
            "status",
            serde_json::json!({"hub": "started"}),
        ),
        LogEntry::new(Direction::In, "command", serde_json::json!("ls"))
            .task(a)
            .step(1),
        LogEntry::new(
            Direction::Out,
            "output",
            serde_json::json!({"stdout": "x\ny", "code": 0}),
        )
        .task(a)
        .step(1),
        LogEntry::new(Direction::Out, "error", serde_json::json!(null)).task(b),
        LogEntry::new(
            Direction::Out,
            "status",
            serde_json::json!(["done", 1, true]),
        )
        .task(a),
    ];
    let mut appended = Vec::new();
    for input in &inputs {
        let entry = ok(s.append_log(input.clone()).await, "append_log");
        assert!(entry.seq > 0, "seq is assigned");
        if let Some(prev) = appended.last().map(|e: &LogEntry| e.seq) {
            assert!(
                entry.seq > prev,
                "seq grows strictly: {} after {prev}",
                entry.seq
            );
        }
        let mut expected = input.clone();
        expected.seq = entry.seq;
        assert_same_logs(
            std::slice::from_ref(&expected),
            std::slice::from_ref(&entry),
            "append_log",
        );
        appended.push(entry);
    }
    let pick = |idx: &[usize]| idx.iter().map(|&i| appended[i].clone()).collect::<Vec<_>>();
    let query = |q: LogQuery| async move { ok(s.logs(q).await, "logs") };

    assert_same_logs(
        &appended,
        &query(LogQuery::default()).await,
        "all logs, ascending",
    );
    assert_same_logs(
        &pick(&[0, 3, 4, 6]),
        &query(LogQuery::task(a)).await,
        "task a",
    );
    assert_same_logs(&pick(&[1, 5]), &query(LogQuery::task(b)).await, "task b");
    assert_same_logs(
        &[],
        &query(LogQuery::task(TaskId::new())).await,
        "unknown task",
    );
    assert_same_logs(
        &pick(&[4, 6]),
        &query(LogQuery::task(a).limit(2)).await,
        "task a, latest 2",
    );
    assert_same_logs(
        &pick(&[4, 5, 6]),
        &query(LogQuery::default().limit(3)).await,
        "latest 3",
    );
    assert_same_logs(
        &appended,
        &query(LogQuery::default().limit(100)).await,
        "limit above count",
    );
    assert_same_logs(&[], &query(LogQuery::default().limit(0)).await, "limit 0");
}

/// `before_seq` pages backwards: latest page first, each page ascending, no gaps or repeats.
pub async fn log_paging(store: DynStore) {
    let s = &*store;
    let a = create(s, NewTask::new("a")).await.id;
    let b = create(s, NewTask::new("b")).await.id;
    let mut of_a = Vec::new();
    let mut all = Vec::new();
    for i in 0..10 {
        for task in [a, b] {
            let entry =
                LogEntry::new(Direction::Out, "output", serde_json::json!({"line": i})).task(task);
            let entry = ok(s.append_log(entry).await, "append_log");
            if task == a {
                of_a.push(entry.clone());
            }
            all.push(entry);
        }
    }
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let q = LogQuery {
            task_id: Some(a),
            before_seq: before,
            limit: Some(3),
        };
        let page = ok(s.logs(q).await, "logs page");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3, "a page has at most `limit` entries");
        assert!(
            page.windows(2).all(|w| w[0].seq < w[1].seq),
            "a page is ascending"
        );
        before = Some(page[0].seq);
        pages.push(page);
        assert!(pages.len() <= 10, "paging must end");
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![3, 3, 3, 1],
        "page sizes"
    );
    let joined: Vec<LogEntry> = pages.into_iter().rev().flatten().collect();
    assert_same_logs(
        &of_a,
        &joined,
        "pages joined oldest first are the task's log",
    );

    let first = all[0].seq;
    let before_first = LogQuery {
        before_seq: Some(first),
        ..LogQuery::default()
    };
    assert_same_logs(
        &[],
        &ok(s.logs(before_first).await, "logs"),
        "nothing before the first seq",
    );
    let mid = all[10].seq;
    let q = LogQuery {
        before_seq: Some(mid),
        ..LogQuery::default()
    };
    assert_same_logs(
        &all[..10],
        &ok(s.logs(q).await, "logs"),
        "before_seq without a task",
    );
    let q = LogQuery {
        before_seq: Some(mid),
        limit: Some(4),
        ..LogQuery::default()
    };
    assert_same_logs(
        &all[6..10],
        &ok(s.logs(q).await, "logs"),
        "before_seq with limit",
    );
}

// ---------------------------------------------------------------------------------------------
// Claims
// ---------------------------------------------------------------------------------------------

/// `claim_many` hands out up to `max` tasks in claim order, each with its own token; fewer when
/// fewer are claimable; none for `max` 0.
pub async fn claim_many_in_order(store: DynStore) {
    let s = &*store;
    let with = |title: &str, p: Priority| NewTask::new(title).status(TaskStatus::Todo).priority(p);
    let low = create(s, with("low", Priority::Low)).await;
    let normal = create(s, with("normal", Priority::Normal)).await;
    let high = create(s, with("high", Priority::High)).await;
    let critical = create(s, with("critical", Priority::Critical)).await;
    let alice = agent("alice");
    assert!(
        ok(
            s.claim_many(alice.clone(), LONG_LEASE, 0).await,
            "claim_many 0"
        )
        .is_empty(),
        "claim_many with max 0 claims nothing"
    );
    let first = ok(
        s.claim_many(alice.clone(), LONG_LEASE, 3).await,
        "claim_many 3",
    );
    let ids: Vec<TaskId> = first.iter().map(|c| c.task_id).collect();
    assert_eq!(
        ids,
        vec![critical.id, high.id, normal.id],
        "claim order of a batch"
    );
    for c in &first {
        assert_eq!(c.agent, alice, "batch claim agent");
        let t = get(s, c.task_id).await;
        assert_eq!(
            t.status,
            TaskStatus::InProgress,
            "batch-claimed task is in progress"
        );
        assert_eq!(
            t.lease.as_ref().map(|l| l.token),
            Some(c.token),
            "batch claim token is the lease's"
        );
    }
    let rest = ok(
        s.claim_many(alice.clone(), LONG_LEASE, 10).await,
        "claim_many 10",
    );
    assert_eq!(
        rest.iter().map(|c| c.task_id).collect::<Vec<_>>(),
        vec![low.id],
        "the rest"
    );
    assert!(
        ok(
            s.claim_many(alice, LONG_LEASE, 10).await,
            "claim_many, nothing left"
        )
        .is_empty(),
        "nothing left to claim"
    );
    let err = err(
        s.claim_many(agent("bob"), Duration::ZERO, 2).await,
        "claim_many zero lease",
    );
    assert_invalid_input(err, "claim_many with a zero lease");
}

/// Concurrent `claim_many` callers never get the same task; together they get every task.
pub async fn concurrent_claim_many(store: DynStore) {
    let s = &*store;
    let mut all = Vec::new();
    for i in 0..40 {
        all.push(todo(s, &format!("t{i}")).await.id);
    }
    let mut handles = Vec::new();
    for a in 0..4 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let who = agent(&format!("agent-{a}"));
            let mut got = Vec::new();
            loop {
                match store.claim_many(who.clone(), LONG_LEASE, 3).await {
                    Ok(batch) if batch.is_empty() => return got,
                    Ok(batch) => got.extend(batch.into_iter().map(|c| c.task_id)),
                    Err(e) if e.is_transient() => {
                        tokio::time::sleep(Duration::from_millis(2)).await
                    }
                    Err(e) => panic!("claim_many failed: {e:?}"),
                }
            }
        }));
    }
    let mut claimed = Vec::new();
    for h in handles {
        claimed.extend(ok(h.await, "claim_many task"));
    }
    let total = claimed.len();
    claimed.sort();
    claimed.dedup();
    assert_eq!(claimed.len(), total, "a task was claimed twice");
    all.sort();
    assert_eq!(claimed, all, "every task claimed exactly once");
}

/// Claims take higher priority first, then the oldest task; non-`todo` tasks are skipped.
pub async fn claim_order(store: DynStore) {
    let s = &*store;
    let with = |title: &str, p: Priority| NewTask::new(title).status(TaskStatus::Todo).priority(p);
    let low = create(s, with("low", Priority::Low)).await;
    let normal1 = create(s, with("normal 1", Priority::Normal)).await;
    let high1 = create(s, with("high 1", Priority::High)).await;
    let normal2 = create(s, with("normal 2", Priority::Normal)).await;
    let high2 = create(s, with("high 2", Priority::High)).await;
    create(
        s,
        NewTask::new("critical backlog").priority(Priority::Critical),
    )
    .await;
    create(
        s,
        NewTask::new("critical done")
            .priority(Priority::Critical)
            .status(TaskStatus::Done),
    )
    .await;
    let critical = create(s, with("critical, newest", Priority::Critical)).await;

    let alice = agent("alice");
    for expected in [&critical, &high1, &high2, &normal1, &normal2, &low] {
        let c = some(
            claim(s, &alice, LONG_LEASE).await,
            &format!("claim {}", expected.title),
        );
        let got = get(s, c.task_id).await;
        assert_eq!(
            got.title, expected.title,
            "claim order: expected {:?}, got {:?}",
            expected.title, got.title
        );
    }
    assert_eq!(
        claim(s, &alice, LONG_LEASE).await,
        None,
        "nothing left to claim"
    );
}

/// A claim moves the task to `in_progress`, assigns it, stores the lease and the fencing
/// token, and increments the version; a task under a live lease is not claimed again.
pub async fn claim_assigns_and_starts(store: DynStore) {
    let s = &*store;
    let alice = agent("alice");
    let task = todo(s, "work").await;
    let start = Utc::now();
    let c = some(claim(s, &alice, LONG_LEASE).await, "claim");
    let end = Utc::now();
    assert_eq!(
        (c.task_id, &c.agent),
        (task.id, &alice),
        "the claim names the task and the agent"
    );
    assert!(
        c.token > task.fence,
        "the token is greater than the task's previous fence"
    );
    let lease = TimeDelta::from_std(LONG_LEASE).unwrap();
    let slack = TimeDelta::seconds(30);
    assert!(
        c.expires_at >= start + lease - slack && c.expires_at <= end + lease + slack,
        "expires_at {} is about now + {LONG_LEASE:?}",
        c.expires_at
    );

    let got = get(s, task.id).await;
    assert_eq!(
        got.status,
        TaskStatus::InProgress,
        "a claimed task is in progress"
    );
    assert_eq!(
        got.assigned_agent.as_ref(),
        Some(&alice),
        "a claimed task is assigned to the claimer"
    );
    assert_eq!(got.fence, c.token, "the task's fence is the claim's token");
    assert_eq!(
        got.version,
        task.version + 1,
        "a claim increments the version"
    );
    let stored = some(got.lease.clone(), "the task holds a lease");
    assert_eq!(
        (&stored.agent, stored.token),
        (&alice, c.token),
        "the stored lease"
    );
    assert_close(c.expires_at, stored.expires_at, "stored lease expiry");

    assert_eq!(
        claim(s, &agent("bob"), LONG_LEASE).await,
        None,
        "a live lease is not claimed by another agent"
    );
    assert_eq!(
        claim(s, &alice, LONG_LEASE).await,
        None,
        "nor by its holder"
    );
    assert_same_task(
        &got,
        &get(s, task.id).await,
        "a claim that finds nothing changes nothing",
    );
}

/// Nothing claimable gives `None`: an empty store, and tasks in every status but `todo`
/// (an `in_progress` task without a lease is not rescued).
pub async fn claim_nothing_claimable(store: DynStore) {
    let s = &*store;
    let alice = agent("alice");
    assert_eq!(
        claim(s, &alice, LONG_LEASE).await,
        None,
        "an empty store has nothing to claim"
    );
    let mut tasks = Vec::new();
    for status in TaskStatus::ALL {
        if status != TaskStatus::Todo {
            tasks.push(create(s, NewTask::new(format!("in {status}")).status(status)).await);
        }
    }
    assert_eq!(
        claim(s, &alice, LONG_LEASE).await,
        None,
        "only todo tasks and expired leases are claimable"
    );
    for task in &tasks {
        assert_same_task(
            task,
            &get(s, task.id).await,
            "an empty claim changes nothing",
        );
    }
}

/// A `todo` task assigned to another agent is not claimed; its assignee can claim it.
pub async fn claim_respects_assignment(store: DynStore) {
    let s = &*store;
    let alice = agent("alice");
    let bob = agent("bob");
    let for_bob = todo(s, "for bob").await;
    let for_bob = update(s, for_bob.id, assign(&bob)).await;
    assert_eq!(
        claim(s, &alice, LONG_LEASE).await,
        None,
        "alice cannot claim bob's task"
    );
    assert_same_task(
        &for_bob,
        &get(s, for_bob.id).await,
        "the refused task is unchanged",
    );

    let free = todo(s, "free").await;
    let c = some(
        claim(s, &alice, LONG_LEASE).await,
        "alice claims the unassigned task",
    );
    assert_eq!(c.task_id, free.id, "alice gets the unassigned task");
    let for_alice = todo(s, "for alice").await;
    update(s, for_alice.id, assign(&alice)).await;
    let c = some(
        claim(s, &alice, LONG_LEASE).await,
        "alice claims her own task",
    );
    assert_eq!(
        c.task_id, for_alice.id,
        "alice gets the task assigned to her"
    );
    assert_eq!(
        claim(s, &alice, LONG_LEASE).await,
        None,
        "bob's task is still not hers"
    );

    let c = some(claim(s, &bob, LONG_LEASE).await, "bob claims his task");
    assert_eq!(c.task_id, for_bob.id, "bob gets his task");
}

/// 200 tasks, 8 concurrent claimers: every task is handed out exactly once.
pub async fn concurrent_claims(store: DynStore) {
    const TASKS: usize = 200;
    const WORKERS: usize = 8;
    let mut ids = BTreeSet::new();
    for i in 0..TASKS {
        ids.insert(todo(&*store, &format!("job {i}")).await.id);
    }
    let mut handles = Vec::new();
    for w in 0..WORKERS {
        let store = Arc::clone(&store);
        handles.push(tokio::spawn(async move {
            let me = agent(&format!("worker-{w}"));
            let mut claims = Vec::new();
            while let Some(c) = claim_retrying(&*store, &me, LONG_LEASE).await {
                assert_eq!(c.agent, me, "a claim names its claimer");
                claims.push(c);
            }
            claims
        }));
    }
    let mut owner: HashMap<TaskId, Claim> = HashMap::new();
    for handle in handles {
        let claims = handle
            .await
            .unwrap_or_else(|e| panic!("a claimer task failed: {e}"));
        for c in claims {
            if let Some(previous) = owner.insert(c.task_id, c.clone()) {
                panic!(
                    "task {} was handed to both {} and {}",
                    c.task_id, previous.agent, c.agent
                );
            }
        }
    }
    let claimed: BTreeSet<TaskId> = owner.keys().copied().collect();
    assert_eq!(claimed.len(), TASKS, "every task is claimed");
    assert_eq!(claimed, ids, "exactly the created tasks are claimed");
    for (id, c) in &owner {
        let task = get(&*store, *id).await;
        assert_eq!(task.status, TaskStatus::InProgress, "{id} is in progress");
        assert_eq!(
            task.assigned_agent.as_ref(),
            Some(&c.agent),
            "{id} is assigned to its claimer"
        );
        let lease = some(task.lease, "a claimed task holds a lease");
        assert_eq!(
            (&lease.agent, lease.token),
            (&c.agent, c.token),
            "{id}: the stored lease is the claim's"
        );
        assert_eq!(task.fence, c.token, "{id}: fence");
    }
    assert_eq!(
        claim(&*store, &agent("late"), LONG_LEASE).await,
        None,
        "nothing is left"
    );
}

/// Claims `task` for `alice` with a short lease, waits past it, and lets `bob` rescue it.
async fn take_over(s: &dyn TaskStore) -> (Task, Claim, Claim) {
    let task = todo(s, "rescue me").await;
    let first = some(
        claim(s, &agent("alice"), SHORT_LEASE).await,
        "alice's claim",
    );
    assert_eq!(first.task_id, task.id);
    tokio::time::sleep(PAST_SHORT_LEASE).await;
    let second = some(
        claim(s, &agent("bob"), LONG_LEASE).await,
        "bob rescues the expired task",
    );
    (task, first, second)
}

/// A task left in `proposing` by a holder whose lease expired is rescued like an `in_progress` one.
pub async fn expired_proposing_lease_is_rescued(store: DynStore) {
    let s = &*store;
    let task = todo(s, "stuck while proposing").await;
    let first = some(claim(s, &agent("alice"), SHORT_LEASE).await, "alice claims");
    update(s, task.id, TaskUpdate::status(TaskStatus::Proposing)).await;
    tokio::time::sleep(PAST_SHORT_LEASE).await;
    let second = some(claim(s, &agent("bob"), LONG_LEASE).await, "bob rescues");
    assert_eq!(second.task_id, task.id);
    assert!(second.token > first.token);
    let got = get(s, task.id).await;
    assert_eq!(
        got.status,
        TaskStatus::InProgress,
        "a rescued task is in progress again"
    );
    assert_stale(
        err(
            s.release(first.clone(), TaskStatus::Done).await,
            "alice releases after rescue",
        ),
        &first,
        "alice's token is stale",
    );
}

/// Moving a claimed task out of the active statuses with `update_task` ends its claim: the
/// lease is cleared and the old claim is stale.
pub async fn leaving_active_status_ends_the_claim(store: DynStore) {
    let s = &*store;
    let task = todo(s, "cancelled by a human").await;
    let c = some(claim(s, &agent("alice"), LONG_LEASE).await, "claim");
    let cancelled = update(s, task.id, TaskUpdate::status(TaskStatus::Cancelled)).await;
    assert_eq!(cancelled.lease, None, "cancelling clears the lease");
    assert_stale(
        err(s.renew(c.clone(), LONG_LEASE).await, "renew after cancel"),
        &c,
        "the claim ended with the cancel",
    );
    // reopened, it is claimable again, with a larger token
    update(s, task.id, TaskUpdate::status(TaskStatus::Todo)).await;
    let again = some(
        claim(s, &agent("alice"), LONG_LEASE).await,
        "the assignee claims again after reopen",
    );
    assert!(again.token > c.token);
    // blocked keeps the lease: the holder is waiting, not gone
    update(s, task.id, TaskUpdate::status(TaskStatus::Blocked)).await;
    assert!(
        get(s, task.id).await.lease.is_some(),
        "blocked keeps the lease"
    );
    ok(
        s.renew(again, LONG_LEASE).await,
        "the holder of a blocked task can renew",
    );
}

/// An `in_progress` task whose lease expired is claimed by another agent with a larger token.
pub async fn expired_lease_is_rescued(store: DynStore) {
    let s = &*store;
    let (task, first, second) = take_over(s).await;
    assert_eq!(second.task_id, task.id, "bob gets the expired task");
    assert_eq!(second.agent, agent("bob"));
    assert!(
        second.token > first.token,
        "the rescuer's token {} > the old {}",
        second.token,
        first.token
    );
    let got = get(s, task.id).await;
    assert_eq!(got.status, TaskStatus::InProgress);
    assert_eq!(
        got.assigned_agent,
        Some(agent("bob")),
        "the rescuer is assigned"
    );
    assert_eq!(got.fence, second.token);
    let lease = some(got.lease, "the rescued task holds the new lease");
    assert_eq!((lease.agent, lease.token), (agent("bob"), second.token));
    assert_eq!(
        claim(s, &agent("carol"), LONG_LEASE).await,
        None,
        "the new lease is live"
    );
}

/// After a takeover the old claim is stale for `renew` and `release`; the new owner's work.
pub async fn stale_token_rejected_after_takeover(store: DynStore) {
    let s = &*store;
    let (task, first, second) = take_over(s).await;
    let taken = get(s, task.id).await;

    assert_stale(
        err(s.renew(first.clone(), LONG_LEASE).await, "renew stale"),
        &first,
        "renew stale",
    );
    assert_stale(
        err(
            s.release(first.clone(), TaskStatus::Done).await,
            "release stale",
        ),
        &first,
        "release stale",
    );
    assert_stale(
        err(
            s.release(first.clone(), TaskStatus::Todo).await,
            "give back stale",
        ),
        &first,
        "give back stale",
    );
    assert_same_task(&taken, &get(s, task.id).await, "stale calls change nothing");

    let renewed = ok(
        s.renew(second.clone(), LONG_LEASE).await,
        "the new owner renews",
    );
    assert_eq!(renewed.token, second.token);
    let done = ok(
        s.release(renewed.clone(), TaskStatus::Done).await,
        "the new owner releases",
    );
    assert_eq!(done.status, TaskStatus::Done);
    assert_eq!(done.lease, None, "release clears the lease");
    assert_stale(
        err(
            s.release(renewed.clone(), TaskStatus::Done).await,
            "release twice",
        ),
        &renewed,
        "release twice",
    );
}

/// A lease that expired but was not taken over is still current: it can be renewed or
/// released, and a given-back task is claimable again.
pub async fn expired_untaken_lease_still_current(store: DynStore) {
    let s = &*store;
    let alice = agent("alice");
    let t1 = todo(s, "renewed late").await;
    let t2 = todo(s, "released late").await;
    let c1 = some(claim(s, &alice, SHORT_LEASE).await, "claim 1");
    let c2 = some(claim(s, &alice, SHORT_LEASE).await, "claim 2");
    assert_eq!((c1.task_id, c2.task_id), (t1.id, t2.id), "oldest first");
    tokio::time::sleep(PAST_SHORT_LEASE).await;

    let r1 = ok(
        s.renew(c1.clone(), LONG_LEASE).await,
        "renew an expired, untaken lease",
    );
    assert_eq!(r1.token, c1.token, "renewing keeps the token");
    assert!(r1.expires_at > c1.expires_at, "renewing moves the expiry");
    let back = ok(
        s.release(c2.clone(), TaskStatus::Todo).await,
        "release an expired, untaken lease",
    );
    assert_eq!((back.status, back.lease.clone()), (TaskStatus::Todo, None));

    let c3 = some(
        claim(s, &agent("bob"), LONG_LEASE).await,
        "bob claims the given-back task",
    );
    assert_eq!(
        c3.task_id, t2.id,
        "the renewed task is not claimable, the given-back one is"
    );
    assert!(c3.token > c2.token, "a new claim gets a larger token");
    assert_eq!(
        claim(s, &agent("bob"), LONG_LEASE).await,
        None,
        "nothing else is claimable"
    );
}

/// `renew` sets the expiry to now + lease, keeps the token, is stored, and increments the
/// version; a wrong token or agent is stale.
pub async fn renew_extends(store: DynStore) {
    let s = &*store;
    let alice = agent("alice");
    let task = todo(s, "long job").await;
    let c = some(claim(s, &alice, Duration::from_secs(60)).await, "claim");
    let claimed = get(s, task.id).await;

    let r = ok(s.renew(c.clone(), LONG_LEASE).await, "renew");
    assert_eq!(
        (r.task_id, &r.agent, r.token),
        (c.task_id, &c.agent, c.token),
        "renew keeps the claim"
    );
    assert!(
        r.expires_at >= c.expires_at + TimeDelta::seconds(500),
        "renew extends the lease"
    );
    let got = get(s, task.id).await;
    let lease = some(got.lease.clone(), "lease");
    assert_close(
        r.expires_at,
        lease.expires_at,
        "the renewed expiry is stored",
    );
    assert_eq!(lease.token, c.token);
    assert_eq!(got.status, TaskStatus::InProgress);
    assert_eq!(
        got.version, claimed.version,
        "a renewal is a heartbeat: the version stays"
    );

    let shorter = ok(
        s.renew(r.clone(), Duration::from_secs(60)).await,
        "renew shorter",
    );
    assert!(
        shorter.expires_at < r.expires_at,
        "renew counts from now, it may shorten the lease"
    );

    let wrong_token = Claim {
        token: c.token + 1,
        ..shorter.clone()
    };
    assert_stale(
        err(
            s.renew(wrong_token.clone(), LONG_LEASE).await,
            "wrong token",
        ),
        &wrong_token,
        "wrong token",
    );
    let wrong_agent = Claim {
        agent: agent("mallory"),
        ..shorter.clone()
    };
    assert_stale(
        err(
            s.renew(wrong_agent.clone(), LONG_LEASE).await,
            "wrong agent",
        ),
        &wrong_agent,
        "wrong agent",
    );
    let before = get(s, task.id).await;
    assert_eq!(
        before.version, claimed.version,
        "renewals and stale renews leave the version alone"
    );

    let gone = Claim {
        task_id: TaskId::new(),
        ..shorter
    };
    let e = err(
        s.renew(gone.clone(), LONG_LEASE).await,
        "renew a missing task",
    );
    assert!(
        matches!(e, StoreError::TaskNotFound(id) if id == gone.task_id)
            || matches!(e, StoreError::StaleClaim { task, .. } if task == gone.task_id),
        "renew a missing task: expected TaskNotFound or StaleClaim, got {e:?}"
    );
}

/// `release(todo)` gives the task back: no lease, unassigned, claimable again with a larger
/// token; the released claim is stale.
pub async fn release_to_todo_gives_back(store: DynStore) {
    let s = &*store;
    let task = todo(s, "give back").await;
    let c = some(claim(s, &agent("alice"), LONG_LEASE).await, "claim");
    let claimed = get(s, task.id).await;
    let back = ok(
        s.release(c.clone(), TaskStatus::Todo).await,
        "release to todo",
    );
    assert_eq!(back.status, TaskStatus::Todo);
    assert_eq!(back.lease, None, "release clears the lease");
    assert_eq!(back.assigned_agent, None, "giving back unassigns");
    assert_eq!(back.fence, c.token, "the fence remembers the last token");
    assert_eq!(
        back.version,
        claimed.version + 1,
        "release increments the version"
    );
    assert_same_task(
        &back,
        &get(s, task.id).await,
        "release returns the stored task",
    );

    assert_stale(
        err(s.renew(c.clone(), LONG_LEASE).await, "renew released"),
        &c,
        "renew released",
    );
    assert_stale(
        err(
            s.release(c.clone(), TaskStatus::Done).await,
            "release released",
        ),
        &c,
        "release released",
    );

    let again = some(claim(s, &agent("bob"), LONG_LEASE).await, "claim again");
    assert_eq!(again.task_id, task.id, "a given-back task is claimable");
    assert!(again.token > c.token, "the next claim has a larger token");
}

/// `release(done)` and `release(failed)` end the work: no lease, not claimable, stale claim.
pub async fn release_to_done_ends(store: DynStore) {
    let s = &*store;
    let alice = agent("alice");
    let t1 = todo(s, "finish").await;
    let t2 = todo(s, "fail").await;
    let c1 = some(claim(s, &alice, LONG_LEASE).await, "claim 1");
    let c2 = some(claim(s, &alice, LONG_LEASE).await, "claim 2");
    assert_eq!((c1.task_id, c2.task_id), (t1.id, t2.id));

    let done = ok(
        s.release(c1.clone(), TaskStatus::Done).await,
        "release done",
    );
    assert_eq!((done.status, done.lease.clone()), (TaskStatus::Done, None));
    assert_eq!(
        done.assigned_agent,
        Some(alice.clone()),
        "a finished task stays assigned to its agent"
    );
    let failed = ok(
        s.release(c2.clone(), TaskStatus::Failed).await,
        "release failed",
    );
    assert_eq!(
        (failed.status, failed.lease.clone()),
        (TaskStatus::Failed, None)
    );

    assert_eq!(
        claim(s, &agent("bob"), LONG_LEASE).await,
        None,
        "finished tasks are not claimable"
    );
    assert_stale(
        err(
            s.release(c1.clone(), TaskStatus::Done).await,
            "release twice",
        ),
        &c1,
        "release twice",
    );
    assert_stale(
        err(s.renew(c2.clone(), LONG_LEASE).await, "renew finished"),
        &c2,
        "renew finished",
    );
}

/// `release` to a status the table forbids from `in_progress` fails and keeps the claim.
pub async fn release_forbidden_status_changes_nothing(store: DynStore) {
    let s = &*store;
    let task = todo(s, "careful").await;
    let c = some(claim(s, &agent("alice"), LONG_LEASE).await, "claim");
    let claimed = get(s, task.id).await;
    let e = err(
        s.release(c.clone(), TaskStatus::Backlog).await,
        "in_progress -> backlog",
    );
    let expected = TransitionError {
        task: task.id,
        from: TaskStatus::InProgress,
        to: TaskStatus::Backlog,
    };
    assert!(
        matches!(&e, StoreError::InvalidTransition(t) if *t == expected),
        "expected InvalidTransition({expected:?}), got {e:?}"
    );
    assert_same_task(
        &claimed,
        &get(s, task.id).await,
        "a refused release changes nothing",
    );
    for active in [TaskStatus::InProgress, TaskStatus::Proposing] {
        let e = err(
            s.release(c.clone(), active).await,
            "release to an active status",
        );
        assert!(
            matches!(e, StoreError::InvalidInput(_)),
            "release to {active} must be InvalidInput, got {e:?}"
        );
    }
    assert_same_task(
        &claimed,
        &get(s, task.id).await,
        "a refused release changes nothing",
    );
    let done = ok(
        s.release(c, TaskStatus::Done).await,
        "the claim still works",
    );
    assert_eq!(done.status, TaskStatus::Done);
}

/// A zero lease or one above `MAX_LEASE` is `InvalidInput` for `claim` and `renew`, and
/// changes nothing.
pub async fn invalid_lease_rejected(store: DynStore) {
    let s = &*store;
    let alice = agent("alice");
    let too_long = MAX_LEASE + Duration::from_millis(1);
    assert_invalid_input(
        err(
            s.claim(alice.clone(), Duration::ZERO).await,
            "zero, empty store",
        ),
        "zero lease",
    );
    let task = todo(s, "leases").await;
    assert_invalid_input(
        err(s.claim(alice.clone(), Duration::ZERO).await, "zero"),
        "zero lease",
    );
    assert_invalid_input(
        err(s.claim(alice.clone(), too_long).await, "too long"),
        "lease above MAX_LEASE",
    );
    assert_same_task(
        &task,
        &get(s, task.id).await,
        "a refused claim changes nothing",
    );

    let c = some(
        claim(s, &alice, MAX_LEASE).await,
        "MAX_LEASE itself is accepted",
    );
    let claimed = get(s, task.id).await;
    assert_invalid_input(
        err(s.renew(c.clone(), Duration::ZERO).await, "renew zero"),
        "renew zero",
    );
    assert_invalid_input(
        err(s.renew(c.clone(), too_long).await, "renew too long"),
        "renew too long",
    );
    assert_same_task(
        &claimed,
        &get(s, task.id).await,
        "a refused renew changes nothing",
    );
    ok(
        s.renew(c, Duration::from_millis(1)).await,
        "a 1 ms lease is accepted",
    );
}

/// `release_many` ends each claim like `release` would and answers in the given order; an
/// empty batch is fine.
pub async fn release_many_ends_each(store: DynStore) {
    let s = &*store;
    let alice = agent("alice");
    assert!(
        ok(s.release_many(Vec::new()).await, "empty batch").is_empty(),
        "an empty batch answers nothing"
    );
    let t1 = todo(s, "finish").await;
    let t2 = todo(s, "fail").await;
    let t3 = todo(s, "give back").await;
    let claims = ok(s.claim_many(alice.clone(), LONG_LEASE, 3).await, "claim 3");
    assert_eq!(
        claims.iter().map(|c| c.task_id).collect::<Vec<_>>(),
        vec![t1.id, t2.id, t3.id]
    );
    let results = ok(
        s.release_many(vec![
            (claims[2].clone(), TaskStatus::Todo),
            (claims[0].clone(), TaskStatus::Done),
            (claims[1].clone(), TaskStatus::Failed),
        ])
        .await,
        "release 3",
    );
    let statuses: Vec<(TaskId, TaskStatus)> = results
        .into_iter()
        .map(|r| {
            let task = ok(r, "each release");
            assert_eq!(task.lease, None, "release clears the lease");
            (task.id, task.status)
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            (t3.id, TaskStatus::Todo),
            (t1.id, TaskStatus::Done),
            (t2.id, TaskStatus::Failed),
        ],
        "one answer per claim, in the given order"
    );
    for (id, status) in statuses {
        assert_eq!(get(s, id).await.status, status, "stored as answered");
    }
    let again = some(claim(s, &agent("bob"), LONG_LEASE).await, "claim again");
    assert_eq!(
        again.task_id, t3.id,
        "the task given back is claimable again"
    );
}

/// In `release_many`, a stale claim or a forbidden move fails alone and changes nothing; the
/// other claims of the batch still end.
pub async fn release_many_fails_alone(store: DynStore) {
    let s = &*store;
    let (task, first, second) = take_over(s).await;
    let other = todo(s, "other").await;
    let third = todo(s, "third").await;
    let c = some(claim(s, &agent("carol"), LONG_LEASE).await, "claim other");
    let d = some(claim(s, &agent("carol"), LONG_LEASE).await, "claim third");
    assert_eq!((c.task_id, d.task_id), (other.id, third.id));
    let taken = get(s, task.id).await;
    let third_claimed = get(s, third.id).await;

    let results = ok(
        s.release_many(vec![
            (first.clone(), TaskStatus::Done),
            (c.clone(), TaskStatus::InProgress),
            (c.clone(), TaskStatus::Done),
            (c.clone(), TaskStatus::Done),
            (d.clone(), TaskStatus::Backlog),
        ])
        .await,
        "mixed batch",
    );
    assert_eq!(results.len(), 5, "one answer per claim");
    let mut results = results.into_iter();
    assert_stale(
        err(results.next().unwrap(), "stale in a batch"),
        &first,
        "stale in a batch",
    );
    let e = err(
        results.next().unwrap(),
        "release to an active status in a batch",
    );
    assert!(
        matches!(e, StoreError::InvalidInput(_)),
        "release to in_progress must be InvalidInput, got {e:?}"
    );
    let done = ok(results.next().unwrap(), "the good claim in a batch");
    assert_eq!((done.id, done.status), (other.id, TaskStatus::Done));
    assert_stale(
        err(results.next().unwrap(), "the same claim again in a batch"),
        &c,
        "the same claim again in a batch",
    );
    let e = err(results.next().unwrap(), "forbidden move in a batch");
    assert!(
        matches!(e, StoreError::InvalidTransition(_)),
        "in_progress -> backlog must be InvalidTransition, got {e:?}"
    );
    assert_same_task(
        &third_claimed,
        &get(s, third.id).await,
        "a refused release in a batch changes nothing",
    );
    assert_same_task(
        &taken,
        &get(s, task.id).await,
        "a stale release in a batch changes nothing",
    );
    let done = ok(
        s.release(second, TaskStatus::Done).await,
        "the new owner still releases",
    );
    assert_eq!(done.status, TaskStatus::Done);
}
