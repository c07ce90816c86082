//! The original Ananta's core loop end to end, in-process: a Hub with a MemoryStore, a Worker with a
//! ScriptedProvider and a real ShellExecutor — and the fault paths around it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ananta_core::error::{ProposalError, TemplateError};
use ananta_core::log::Direction;
use ananta_core::mocks::MockAgentClient;
use ananta_core::{
    AgentCard, AgentError, AgentId, AgentStatus, CancellationToken, Error, EventKind, ExecError,
    Hub, LlmError, LogQuery, NewTask, NewTemplate, Proposed, StepLimits, StopReason, StoreError,
    TaskStatus, TaskUpdate, Worker,
};
use ananta_exec::ShellExecutor;
use ananta_llm::{ScriptedProvider, ScriptedReply};
use ananta_store::MemoryStore;
use tempfile::TempDir;

struct Setup {
    hub: Hub,
    worker: Worker,
    llm: ScriptedProvider,
    dir: TempDir,
}

async fn setup(llm: ScriptedProvider) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::builder()
        .store(Arc::new(MemoryStore::new()))
        .build()
        .unwrap();
    let worker = Worker::builder(AgentId::new("w1").unwrap())
        .llm(Arc::new(llm.clone()))
        .executor(Arc::new(
            ShellExecutor::new(dir.path()).timeout(Duration::from_secs(20)),
        ))
        .build()
        .unwrap();
    hub.register_worker(&worker).await.unwrap();
    Setup {
        hub,
        worker,
        llm,
        dir,
    }
}

#[tokio::test]
async fn propose_execute_logs_and_events() {
    let s = setup(ScriptedProvider::new([
        r#"{"reason": "write a file", "command": "echo hello > out.txt && cat out.txt"}"#,
    ]))
    .await;
    let mut events = s.hub.subscribe();
    let task = s
        .hub
        .create_task(NewTask::new("Write out.txt").description("say hello"))
        .await
        .unwrap();
    assert!(task.id.to_string().starts_with("T-"));
    s.hub.assign(task.id, s.worker.name()).await.unwrap();

    let Proposed::Command(proposal) = s.hub.propose(task.id).await.unwrap() else {
        panic!("expected a command")
    };
    assert_eq!(proposal.command, "echo hello > out.txt && cat out.txt");
    let stored = s.hub.get_task(task.id).await.unwrap();
    assert_eq!(stored.status, TaskStatus::InProgress);
    assert_eq!(
        stored.proposal.as_ref().map(|p| p.command.as_str()),
        Some(proposal.command.as_str())
    );
    assert!(proposal.usage.is_some(), "token usage is recorded");

    // the prompt the LLM saw holds the task
    let request = &s.llm.requests()[0];
    assert!(
        request
            .messages
            .iter()
            .any(|m| m.content.contains("Write out.txt") && m.content.contains("say hello"))
    );

    let step = s.hub.execute(task.id, None).await.unwrap();
    assert_eq!(step.index, 1);
    assert_eq!(step.outcome.exit_code, Some(0));
    assert_eq!(step.outcome.stdout, "hello\n");
    assert_eq!(
        std::fs::read_to_string(s.dir.path().join("out.txt")).unwrap(),
        "hello\n"
    );
    let stored = s.hub.get_task(task.id).await.unwrap();
    assert_eq!(stored.steps.len(), 1);
    assert!(
        stored.proposal.is_none(),
        "executing clears the pending proposal"
    );

    let logs = s.hub.logs(LogQuery::task(task.id)).await.unwrap();
    let kinds: Vec<(&str, Direction)> = logs
        .iter()
        .map(|e| (e.kind.as_str(), e.direction))
        .collect();
    assert_eq!(
        kinds,
        [
            ("assign", Direction::In),
            ("propose", Direction::In),
            ("proposal", Direction::Out),
            ("command", Direction::In),
            ("output", Direction::Out)
        ]
    );
    assert!(logs.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(logs.last().unwrap().payload["stdout"], "hello\n");
    assert_eq!(
        s.hub
            .logs(LogQuery::task(task.id).limit(2))
            .await
            .unwrap()
            .len(),
        2
    );
    // the worker keeps its own log too (the original Ananta's worker /logs)
    assert!(
        s.worker
            .logs(LogQuery::task(task.id))
            .iter()
            .any(|e| e.kind == "output")
    );

    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    assert!(seen.windows(2).all(|w| w[0].seq < w[1].seq));
    let names: Vec<&str> = seen
        .iter()
        .filter(|e| !e.kind.is_progress())
        .map(|e| match e.kind {
            EventKind::TaskCreated { .. } => "created",
            EventKind::TaskAssigned { .. } => "assigned",
            EventKind::StepProposed { .. } => "proposed",
            EventKind::StepExecuted { .. } => "executed",
            EventKind::TaskUpdated { .. } => "updated",
            _ => "other",
        })
        .filter(|n| *n != "updated")
        .collect();
    assert_eq!(names, ["created", "assigned", "proposed", "executed"]);
}

#[tokio::test]
async fn run_until_done_feeds_output_back_and_renders_the_template() {
    let s = setup(ScriptedProvider::new([
        "REASON: make a file\nCOMMAND: printf 'abc' > f.txt",
        "```bash\nwc -c < f.txt\n```",
        r#"{"reason": "f.txt has 3 bytes", "done": true}"#,
    ]))
    .await;
    let mut template = NewTemplate::new("files", "Task {{title}} for {{team}} ({{priority}})");
    template.defaults.insert("team".into(), "platform".into());
    let template = s.hub.create_template(template).await.unwrap();
    let task = s
        .hub
        .create_task(
            NewTask::new("Make f.txt")
                .template(template.id)
                .check("test \"$(wc -c < f.txt)\" -eq 3"),
        )
        .await
        .unwrap();
    s.hub
        .assign(task.id, &AgentId::new("w1").unwrap())
        .await
        .unwrap();

    let report = s.hub.run(task.id, &StepLimits::steps(10)).await.unwrap();
    assert_eq!(
        report.stop,
        StopReason::Done {
            summary: "f.txt has 3 bytes".into()
        }
    );
    assert_eq!(report.steps, 2);
    assert!(report.usage.total() > 0);
    let task = s.hub.get_task(task.id).await.unwrap();
    assert_eq!(task.status, TaskStatus::Done);
    assert_eq!(task.steps[1].outcome.stdout.trim(), "3");
    let evidence = task.verification.expect("the evidence is stored");
    assert!(
        evidence.passed && evidence.checks.len() == 1,
        "{evidence:?}"
    );

    let requests = s.llm.requests();
    assert_eq!(requests.len(), 3);
    assert!(
        requests[0].messages[1]
            .content
            .contains("Task Make f.txt for platform (normal)")
    );
    // the third prompt shows both earlier steps and their output
    let last = &requests[2].messages;
    assert!(
        last.iter()
            .any(|m| m.content.contains("wc -c < f.txt") && m.content.contains('3'))
    );
    assert!(
        last.iter()
            .any(|m| m.content.contains("printf 'abc' > f.txt"))
    );
}

#[tokio::test]
async fn step_and_token_budgets_stop_a_run() {
    let s =
        setup(ScriptedProvider::new((1..=20).map(|i| {
            format!(r#"{{"reason": "count", "command": "echo {i}"}}"#)
        })))
        .await;
    let task = s.hub.create_task(NewTask::new("loop")).await.unwrap();
    s.hub
        .assign(task.id, &AgentId::new("w1").unwrap())
        .await
        .unwrap();
    let report = s.hub.run(task.id, &StepLimits::steps(3)).await.unwrap();
    assert_eq!(report.stop, StopReason::StepBudget);
    assert_eq!(report.steps, 3);
    let stored = s.hub.get_task(task.id).await.unwrap();
    assert_eq!(
        (stored.status, stored.steps.len()),
        (TaskStatus::InProgress, 3)
    );

    let report = s
        .hub
        .run(task.id, &StepLimits::steps(100).max_tokens(1))
        .await
        .unwrap();
    assert_eq!(report.stop, StopReason::TokenBudget);
    assert_eq!(report.steps, 1, "the budget is checked before each step");
}

#[tokio::test]
async fn cancellation_kills_the_running_command() {
    let s = setup(ScriptedProvider::new([
        r#"{"reason": "wait", "command": "sleep 30"}"#,
    ]))
    .await;
    let task = s.hub.create_task(NewTask::new("slow")).await.unwrap();
    s.hub
        .assign(task.id, &AgentId::new("w1").unwrap())
        .await
        .unwrap();
    let cancel = CancellationToken::new();
    let limits = StepLimits::steps(5).cancel(cancel.clone());
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let report = s.hub.run(task.id, &limits).await.unwrap();
    assert_eq!(report.stop, StopReason::Cancelled);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cancel must not wait for sleep 30"
    );
    let stored = s.hub.get_task(task.id).await.unwrap();
    assert_eq!(stored.status, TaskStatus::InProgress);
    assert!(stored.steps.is_empty());
    assert!(
        stored.proposal.is_some(),
        "the proposal is kept for a later execute"
    );
}

#[tokio::test]
async fn bad_requests_get_typed_errors_and_change_nothing() {
    let s = setup(ScriptedProvider::new([
        "I'm sorry, I can't help with that.",
    ]))
    .await;
    let task = s.hub.create_task(NewTask::new("t")).await.unwrap();

    assert!(matches!(s.hub.propose(task.id).await, Err(Error::NotAssigned(id)) if id == task.id));
    assert!(matches!(
        s.hub.assign(task.id, &AgentId::new("ghost").unwrap()).await,
        Err(Error::Registry(ananta_core::RegistryError::NotFound(_)))
    ));
    assert!(matches!(
        s.hub.create_task(NewTask::new("")).await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        s.hub.create_template(NewTemplate::new("x", "{{nope}}")).await,
        Err(Error::Template(TemplateError::UnknownVariables(v))) if v == ["nope"]
    ));
    s.hub
        .assign(task.id, &AgentId::new("w1").unwrap())
        .await
        .unwrap();
    assert!(matches!(
        s.hub.execute(task.id, None).await,
        Err(Error::Agent(AgentError::NoCommand(_)))
    ));
    assert!(matches!(
        s.hub.execute(task.id, Some("  ".into())).await,
        Err(Error::Exec(ExecError::InvalidRequest(_)))
    ));

    // a refusal is a typed error carrying the raw answer; the task is back in progress
    let err = s.hub.propose(task.id).await.unwrap_err();
    assert!(
        matches!(&err, Error::Agent(AgentError::Proposal(ProposalError::NoCommand { raw, .. })) if raw.contains("sorry")),
        "{err:?}"
    );
    let stored = s.hub.get_task(task.id).await.unwrap();
    assert_eq!(stored.status, TaskStatus::InProgress);
    assert!(stored.proposal.is_none());
    let logs = s.hub.logs(LogQuery::task(task.id)).await.unwrap();
    assert_eq!(logs.last().unwrap().kind, "error");

    // the script is exhausted now: a permanent LLM error
    let err = s.hub.propose(task.id).await.unwrap_err();
    assert!(matches!(
        err,
        Error::Agent(AgentError::Llm(LlmError::Exhausted(1)))
    ));
    assert!(!err.is_transient());

    // optimistic versioning through the Hub
    let current = s.hub.get_task(task.id).await.unwrap();
    let stale = s
        .hub
        .update_task(
            task.id,
            TaskUpdate {
                title: Some("x".into()),
                ..Default::default()
            },
            Some(current.version - 1),
        )
        .await;
    assert!(matches!(
        stale,
        Err(Error::Store(StoreError::VersionConflict { .. }))
    ));
    // a done task cannot be proposed on again
    s.hub.set_status(task.id, TaskStatus::Done).await.unwrap();
    assert!(matches!(
        s.hub.propose(task.id).await,
        Err(Error::Store(StoreError::InvalidTransition(_)))
    ));
    assert_eq!(s.hub.get_task(task.id).await.unwrap().title, "t");
}

#[tokio::test]
async fn transient_llm_errors_are_marked_transient() {
    let s = setup(ScriptedProvider::new([ScriptedReply::Error(
        LlmError::Timeout(Duration::from_secs(30)),
    )]))
    .await;
    let task = s.hub.create_task(NewTask::new("t")).await.unwrap();
    s.hub
        .assign(task.id, &AgentId::new("w1").unwrap())
        .await
        .unwrap();
    let err = s.hub.propose(task.id).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn monitoring_marks_dead_agents_offline_and_refuses_them() {
    let s = setup(ScriptedProvider::new(Vec::<String>::new())).await;
    let mut remote = MockAgentClient::new();
    remote
        .expect_ping()
        .returning(|| Err(AgentError::Unreachable("connection refused".into())));
    let card =
        AgentCard::in_process(AgentId::new("remote").unwrap()).description("a remote worker");
    s.hub.register_agent(card, Arc::new(remote)).await.unwrap();
    let task = s.hub.create_task(NewTask::new("t")).await.unwrap();
    s.hub
        .assign(task.id, &AgentId::new("remote").unwrap())
        .await
        .unwrap();

    let mut events = s.hub.subscribe();
    let mut statuses = s.hub.check_agents(Duration::from_secs(1)).await;
    statuses.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        statuses,
        [
            (AgentId::new("remote").unwrap(), AgentStatus::Offline),
            (AgentId::new("w1").unwrap(), AgentStatus::Online)
        ]
    );
    let event = events.try_recv().unwrap();
    assert!(matches!(
        event.kind,
        EventKind::AgentStatusChanged {
            status: AgentStatus::Offline,
            ..
        }
    ));
    assert!(
        matches!(s.hub.propose(task.id).await, Err(Error::AgentOffline(a)) if a.as_str() == "remote")
    );
    assert!(matches!(
        s.hub
            .assign(task.id, &AgentId::new("remote").unwrap())
            .await,
        Err(Error::AgentOffline(_))
    ));
}

#[tokio::test]
async fn worker_runs_a_task_without_a_hub() {
    let dir = tempfile::tempdir().unwrap();
    let worker = Worker::builder(AgentId::new("solo").unwrap())
        .llm(Arc::new(ScriptedProvider::new([
            r#"{"reason": "fail once", "command": "exit 3"}"#,
            r#"{"reason": "ok", "done": true}"#,
        ])))
        .executor(Arc::new(ShellExecutor::new(dir.path())))
        .build()
        .unwrap();
    let mut task = NewTask::new("solo").check("test -d .").into_task().unwrap();
    let report = worker
        .run(&mut task, None, &StepLimits::steps(5))
        .await
        .unwrap();
    assert_eq!(
        report.stop,
        StopReason::Done {
            summary: "ok".into()
        }
    );
    assert_eq!(task.steps.len(), 1);
    assert_eq!(
        task.steps[0].outcome.exit_code,
        Some(3),
        "a failing command is fed back, not an error"
    );
    assert!(matches!(
        Worker::builder(AgentId::new("x").unwrap()).build(),
        Err(Error::InvalidInput(_))
    ));
}
