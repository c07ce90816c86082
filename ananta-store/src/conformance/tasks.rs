//! Cases: tasks (round trips, rejections, filters, transitions, versions, steps).

use super::helpers::*;
use super::*;

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
