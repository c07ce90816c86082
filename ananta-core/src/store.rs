//! The [`TaskStore`] trait: durable tasks, templates, step history, logs, and claims with leases.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::ids::{AgentId, TaskId, TemplateId};
use crate::log::{LogEntry, LogQuery};
use crate::task::{StepRecord, Task, TaskFilter, TaskStatus, TaskUpdate};
use crate::template::{Template, TemplateUpdate};

/// A claim an agent holds on a task, returned by [`TaskStore::claim`]. Pass it back to
/// [`renew`](TaskStore::renew) and [`release`](TaskStore::release); the `token` fences out
/// an agent whose lease expired and was taken over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Claim {
    /// The claimed task.
    pub task_id: TaskId,
    /// The agent holding it.
    pub agent: AgentId,
    /// Fencing token; strictly greater than every earlier token of this task.
    pub token: u64,
    /// When the lease runs out unless renewed.
    pub expires_at: DateTime<Utc>,
}

/// Longest lease a store accepts.
pub const MAX_LEASE: Duration = Duration::from_secs(24 * 60 * 60);

/// Checks a lease duration: more than zero, at most [`MAX_LEASE`].
pub fn validate_lease(lease: Duration) -> Result<chrono::Duration, StoreError> {
    if lease.is_zero() || lease > MAX_LEASE {
        return Err(StoreError::InvalidInput(format!(
            "lease must be between 1 ms and {} s, got {lease:?}",
            MAX_LEASE.as_secs()
        )));
    }
    chrono::Duration::from_std(lease).map_err(|e| StoreError::InvalidInput(e.to_string()))
}

/// Durable storage for the Hub.
///
/// Every backend (`ananta_store::MemoryStore` and the SQL ones) passes the same conformance
/// suite (`ananta_store::conformance`). Rules shared by all backends:
///
/// - a created task is stored with `version` 1; every successful change of a task except a
///   lease renewal increments its `version` and sets `updated_at` (a renewal is a heartbeat);
/// - status changes follow [`TaskStatus::check_transition`], through [`TaskUpdate::apply`]
///   (which also clears the lease when a task leaves the active statuses);
/// - `get_task` and `list_tasks` return complete tasks, step history included;
/// - a change with `expected_version` fails with [`StoreError::VersionConflict`] when the
///   stored version differs, and then changes nothing;
/// - a claim hands a claimable task to exactly one agent: claimable are `todo` tasks that are
///   unassigned or assigned to the claimer, and `in_progress` or `proposing` tasks whose lease
///   has expired (they are rescued: the old holder's token becomes stale); higher priority
///   first, then oldest;
/// - `renew` and `release` fail with [`StoreError::StaleClaim`] unless the claim's token is the
///   task's current one (an expired lease nobody took over is still current);
/// - `release` ends the work: to `todo` (given back, and unassigned), `done`, `failed`,
///   `blocked` or `cancelled`; releasing to `in_progress` or `proposing` is
///   [`StoreError::InvalidInput`].
#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Stores a new task (built with [`NewTask::into_task`](crate::task::NewTask::into_task)).
    async fn create_task(&self, task: Task) -> Result<Task, StoreError>;

    /// Reads a task with its step history.
    async fn get_task(&self, id: TaskId) -> Result<Task, StoreError>;

    /// Lists tasks matching `filter`, oldest first.
    async fn list_tasks(&self, filter: TaskFilter) -> Result<Vec<Task>, StoreError>;

    /// Applies `update` (see [`TaskUpdate::apply`]); when `expected_version` is given it must
    /// equal the stored version.
    async fn update_task(
        &self,
        id: TaskId,
        update: TaskUpdate,
        expected_version: Option<u64>,
    ) -> Result<Task, StoreError>;

    /// Deletes a task, its step history and its lease. Its log entries stay.
    async fn delete_task(&self, id: TaskId) -> Result<(), StoreError>;

    /// Appends an executed step to the task's history, clears its pending proposal, and
    /// returns the task. The step's `index` is set to its position (1-based).
    async fn append_step(&self, id: TaskId, step: StepRecord) -> Result<Task, StoreError>;

    /// Stores a new template (names must be unique).
    async fn create_template(&self, template: Template) -> Result<Template, StoreError>;

    /// Reads a template.
    async fn get_template(&self, id: TemplateId) -> Result<Template, StoreError>;

    /// All templates, oldest first.
    async fn list_templates(&self) -> Result<Vec<Template>, StoreError>;

    /// Applies `update` to a template.
    async fn update_template(
        &self,
        id: TemplateId,
        update: TemplateUpdate,
    ) -> Result<Template, StoreError>;

    /// Deletes a template; fails with [`StoreError::InUse`] while a task refers to it.
    async fn delete_template(&self, id: TemplateId) -> Result<(), StoreError>;

    /// Appends a log entry and returns it with its `seq` assigned.
    async fn append_log(&self, entry: LogEntry) -> Result<LogEntry, StoreError>;

    /// Reads log entries (see [`LogQuery`]), ascending by `seq`.
    async fn logs(&self, query: LogQuery) -> Result<Vec<LogEntry>, StoreError>;

    /// Claims one claimable task for `agent` for `lease`: the task moves to `in_progress`,
    /// is assigned to `agent`, and gets a new fencing token. `None` when nothing is claimable.
    async fn claim(&self, agent: AgentId, lease: Duration) -> Result<Option<Claim>, StoreError>;

    /// Claims up to `max` tasks for `agent` at once, in the order [`claim`](Self::claim) would
    /// hand them out, each with its own fencing token and a lease of `lease`. Fewer (or none)
    /// when fewer are claimable. The default calls `claim` repeatedly; backends override it to
    /// claim in one round trip.
    async fn claim_many(
        &self,
        agent: AgentId,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Claim>, StoreError> {
        let mut claims = Vec::new();
        while claims.len() < max {
            match self.claim(agent.clone(), lease).await? {
                Some(claim) => claims.push(claim),
                None => break,
            }
        }
        Ok(claims)
    }

    /// Extends a claim's lease to `lease` from now.
    async fn renew(&self, claim: Claim, lease: Duration) -> Result<Claim, StoreError>;

    /// Ends a claim, moving the task to `status` (`done`, `failed`, or `todo` to give it back).
    async fn release(&self, claim: Claim, status: TaskStatus) -> Result<Task, StoreError>;

    /// Ends several claims, each exactly like [`release`](Self::release), and returns one
    /// result per claim, in the given order: a claim that is stale, or whose move is not
    /// allowed, fails alone and the others still end.
    ///
    /// The SQL backends end them all in one transaction (one commit, so one disk flush for
    /// the whole batch); the outer error then means that transaction failed and none of them
    /// ended. The default calls `release` for each in turn.
    async fn release_many(
        &self,
        releases: Vec<(Claim, TaskStatus)>,
    ) -> Result<Vec<Result<Task, StoreError>>, StoreError> {
        let mut out = Vec::with_capacity(releases.len());
        for (claim, status) in releases {
            out.push(self.release(claim, status).await);
        }
        Ok(out)
    }
}
