//! The rules of [`TaskStore`](ananta_core::store::TaskStore) as pure functions on a [`Task`],
//! shared by every backend so they cannot drift apart: a backend loads the task, applies a
//! rule, and stores the result in one transaction.

use ananta_core::error::StoreError;
use ananta_core::ids::AgentId;
use ananta_core::store::Claim;
use ananta_core::task::{Lease, StepRecord, Task, TaskStatus, TaskUpdate};
use chrono::{DateTime, Utc};

/// When a lease of `lease` taken at `now` ends.
pub(crate) fn lease_end(
    now: DateTime<Utc>,
    lease: chrono::Duration,
) -> Result<DateTime<Utc>, StoreError> {
    now.checked_add_signed(lease)
        .ok_or_else(|| StoreError::InvalidInput(format!("lease of {lease} ends out of range")))
}

/// Whether `agent` may claim `task` at `now`: a `todo` task without a live lease, unassigned
/// or assigned to `agent`; or an active task whose lease expired (a rescue).
pub(crate) fn is_claimable(task: &Task, agent: &AgentId, now: DateTime<Utc>) -> bool {
    let lease_live = task.lease.as_ref().is_some_and(|l| l.expires_at > now);
    match task.status {
        TaskStatus::Todo => !lease_live && task.assigned_agent.as_ref().is_none_or(|a| a == agent),
        TaskStatus::InProgress | TaskStatus::Proposing => task.lease.is_some() && !lease_live,
        _ => false,
    }
}

/// Whether `claim` is the current claim on `task`: its token is the task's current one and it
/// belongs to the lease holder. An expired lease that nobody took over is still current.
pub(crate) fn check_fence(task: &Task, claim: &Claim) -> Result<(), StoreError> {
    match &task.lease {
        Some(lease) if lease.token == claim.token && lease.agent == claim.agent => Ok(()),
        _ => Err(StoreError::StaleClaim {
            task: claim.task_id,
            token: claim.token,
        }),
    }
}

/// Bumps the version and the change time of a task that was just changed.
pub(crate) fn touch(task: &mut Task, now: DateTime<Utc>) {
    task.version += 1;
    task.updated_at = now;
}

/// Prepares a task handed to `create_task`: valid, and at version 1.
pub(crate) fn new_task(mut task: Task) -> Result<Task, StoreError> {
    task.validate()?;
    task.version = 1;
    Ok(task)
}

/// Applies `update` to `task` if `expected_version` (when given) is the stored one.
pub(crate) fn update(
    task: &mut Task,
    update: TaskUpdate,
    expected_version: Option<u64>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if let Some(expected) = expected_version
        && expected != task.version
    {
        return Err(StoreError::VersionConflict {
            id: task.id,
            expected,
            actual: task.version,
        });
    }
    update.apply(task)?;
    touch(task, now);
    Ok(())
}

/// Appends `step` with the next index; the pending proposal is consumed.
pub(crate) fn append_step(
    task: &mut Task,
    mut step: StepRecord,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    step.index = task
        .next_step_index()
        .ok_or_else(|| StoreError::InvalidInput(format!("task {} has too many steps", task.id)))?;
    task.steps.push(step);
    task.proposal = None;
    touch(task, now);
    Ok(())
}

/// Gives `task` to `agent` until `expires_at` with a new fencing token.
pub(crate) fn claim(
    task: &mut Task,
    agent: AgentId,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Claim {
    let rescued = task.lease.as_ref().map(|l| l.agent.clone());
    task.fence += 1;
    task.lease = Some(Lease {
        agent: agent.clone(),
        token: task.fence,
        expires_at,
    });
    task.status = TaskStatus::InProgress;
    task.assigned_agent = Some(agent.clone());
    touch(task, now);
    tracing::debug!(
        task = %task.id,
        %agent,
        token = task.fence,
        rescued_from = ?rescued,
        "task claimed"
    );
    Claim {
        task_id: task.id,
        agent,
        token: task.fence,
        expires_at,
    }
}

/// Extends the lease of a current `claim`. A renewal is a heartbeat, not a change of the task:
/// version and `updated_at` stay, so a caller holding the version across a long step is not
/// fenced out by it.
pub(crate) fn renew(
    task: &mut Task,
    claim: Claim,
    expires_at: DateTime<Utc>,
) -> Result<Claim, StoreError> {
    check_fence(task, &claim)?;
    task.lease = Some(Lease {
        agent: claim.agent.clone(),
        token: claim.token,
        expires_at,
    });
    Ok(Claim {
        expires_at,
        ..claim
    })
}

/// Ends a current `claim` with `status` (which must leave the active statuses).
pub(crate) fn release(
    task: &mut Task,
    claim: &Claim,
    status: TaskStatus,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    check_fence(task, claim)?;
    if matches!(status, TaskStatus::InProgress | TaskStatus::Proposing) {
        return Err(StoreError::InvalidInput(format!(
            "release must end the work: {status} would leave the task active without a lease"
        )));
    }
    task.status.check_transition(task.id, status)?;
    task.status = status;
    task.lease = None;
    if status == TaskStatus::Todo {
        task.assigned_agent = None;
    }
    touch(task, now);
    tracing::debug!(task = %task.id, agent = %claim.agent, token = claim.token, %status, "claim released");
    Ok(())
}

/// Claim order: higher priority first; among equals the oldest (the smallest id).
pub(crate) fn claim_order(a: &Task, b: &Task) -> std::cmp::Ordering {
    b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id))
}
