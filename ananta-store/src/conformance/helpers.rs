//! Helpers the cases share: unwrapping with context, building tasks and claims, and
//! comparisons that allow a backend's timestamp precision.

use super::*;

#[track_caller]
pub(super) fn ok<T, E: Debug>(result: Result<T, E>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!(
            "{what}: expected success, got error {e:?} (at {})",
            Location::caller()
        ),
    }
}

#[track_caller]
pub(super) fn err<T: Debug>(result: Result<T, StoreError>, what: &str) -> StoreError {
    match result {
        Ok(value) => panic!(
            "{what}: expected an error, got {value:?} (at {})",
            Location::caller()
        ),
        Err(e) => e,
    }
}

#[track_caller]
pub(super) fn some<T>(value: Option<T>, what: &str) -> T {
    match value {
        Some(v) => v,
        None => panic!(
            "{what}: expected Some, got None (at {})",
            Location::caller()
        ),
    }
}

pub(super) fn agent(name: &str) -> AgentId {
    AgentId::new(name).unwrap()
}

pub(super) async fn create(store: &dyn TaskStore, new: NewTask) -> Task {
    let task = new.into_task().unwrap();
    ok(store.create_task(task).await, "create_task")
}

pub(super) async fn todo(store: &dyn TaskStore, title: &str) -> Task {
    create(store, NewTask::new(title).status(TaskStatus::Todo)).await
}

pub(super) async fn get(store: &dyn TaskStore, id: TaskId) -> Task {
    ok(store.get_task(id).await, "get_task")
}

pub(super) async fn update(store: &dyn TaskStore, id: TaskId, update: TaskUpdate) -> Task {
    ok(store.update_task(id, update, None).await, "update_task")
}

pub(super) async fn claim(store: &dyn TaskStore, who: &AgentId, lease: Duration) -> Option<Claim> {
    ok(store.claim(who.clone(), lease).await, "claim")
}

/// Claims, retrying errors the store reports as transient (e.g. a busy database).
pub(super) async fn claim_retrying(
    store: &dyn TaskStore,
    who: &AgentId,
    lease: Duration,
) -> Option<Claim> {
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

pub(super) fn assign(who: &AgentId) -> TaskUpdate {
    TaskUpdate {
        assigned_agent: Some(Some(who.clone())),
        ..TaskUpdate::default()
    }
}

pub(super) fn close(a: DateTime<Utc>, b: DateTime<Utc>) -> bool {
    (a - b).abs() <= TimeDelta::milliseconds(1)
}

#[track_caller]
pub(super) fn assert_close(expected: DateTime<Utc>, actual: DateTime<Utc>, what: &str) {
    assert!(
        close(expected, actual),
        "{what}: expected a time within 1 ms of {expected}, got {actual} (at {})",
        Location::caller()
    );
}

/// Checks `actual`'s timestamps against `expected`'s (1 ms tolerance), then copies them over so
/// the rest can be compared exactly.
#[track_caller]
pub(super) fn align_proposal(
    expected: &Option<Proposal>,
    actual: &mut Option<Proposal>,
    what: &str,
) {
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
pub(super) fn align_step(expected: &StepRecord, actual: &mut StepRecord, what: &str) {
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
pub(super) fn assert_same_task(expected: &Task, actual: &Task, what: &str) {
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
pub(super) fn assert_same_tasks(expected: &[Task], actual: &[Task], what: &str) {
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
pub(super) fn assert_same_template(expected: &Template, actual: &Template, what: &str) {
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
pub(super) fn assert_same_logs(expected: &[LogEntry], actual: &[LogEntry], what: &str) {
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
pub(super) fn assert_task_not_found(e: StoreError, id: TaskId, what: &str) {
    assert!(
        matches!(e, StoreError::TaskNotFound(got) if got == id),
        "{what}: expected TaskNotFound({id}), got {e:?} (at {})",
        Location::caller()
    );
}

#[track_caller]
pub(super) fn assert_template_not_found(e: StoreError, id: TemplateId, what: &str) {
    assert!(
        matches!(e, StoreError::TemplateNotFound(got) if got == id),
        "{what}: expected TemplateNotFound({id}), got {e:?} (at {})",
        Location::caller()
    );
}

#[track_caller]
pub(super) fn assert_stale(e: StoreError, claim: &Claim, what: &str) {
    assert!(
        matches!(e, StoreError::StaleClaim { task, token } if task == claim.task_id && token == claim.token),
        "{what}: expected StaleClaim {{ task: {}, token: {} }}, got {e:?} (at {})",
        claim.task_id,
        claim.token,
        Location::caller()
    );
}

#[track_caller]
pub(super) fn assert_invalid_input(e: StoreError, what: &str) {
    assert!(
        matches!(e, StoreError::InvalidInput(_)),
        "{what}: expected InvalidInput, got {e:?} (at {})",
        Location::caller()
    );
}

pub(super) fn proposal(command: &str) -> Proposal {
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
        // A native tool call, so every store keeps it too.
        tool_call: Some(ananta_core::llm::ToolCall {
            id: "call-1".to_string(),
            name: "run_command".to_string(),
            arguments: serde_json::json!({ "command": command }).to_string(),
        }),
    }
}

pub(super) fn step(command: &str, index: u32) -> StepRecord {
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
pub(super) fn path_from_backlog(target: TaskStatus) -> Vec<TaskStatus> {
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
