//! Cases: claiming (order, batches, races, assignment).

use super::helpers::*;
use super::*;

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
