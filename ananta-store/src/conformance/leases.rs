//! Cases: leases (expiry and rescue, takeover, renewal) and releasing claims.

use super::helpers::*;
use super::*;

/// Claims `task` for `alice` with a short lease, waits past it, and lets `bob` rescue it.
pub(super) async fn take_over(s: &dyn TaskStore) -> (Task, Claim, Claim) {
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
