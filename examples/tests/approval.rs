//! Human approval end to end, in-process: a Worker with a command gate, a Hub that leaves a
//! task `blocked` while its command waits, and `approve` (as proposed or edited) / `reject`,
//! each decision logged. Commands really run (or really do not) in a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use ananta_core::exec::{CommandGate, Decision};
use ananta_core::{
    AgentError, AgentId, Error, ExecError, Hub, LogQuery, NewTask, StepLimits, StopReason, TaskId,
    TaskStatus, Worker,
};
use ananta_exec::ShellExecutor;
use ananta_llm::ScriptedProvider;
use ananta_store::MemoryStore;
use tempfile::TempDir;

/// `rm` needs a human; `shutdown` never runs; everything else runs.
fn gate() -> Arc<dyn CommandGate> {
    Arc::new(|command: &str| {
        if command.starts_with("shutdown") {
            Decision::Deny {
                rule: "no-shutdown".into(),
                reason: "stops the machine".into(),
            }
        } else if command.starts_with("rm ") {
            Decision::NeedsApproval {
                reasons: vec!["rm removes files".into()],
            }
        } else {
            Decision::Allow
        }
    })
}

struct Setup {
    hub: Hub,
    dir: TempDir,
    task: TaskId,
}

async fn setup(answers: &[&str]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junk.txt"), "junk").unwrap();
    std::fs::write(dir.path().join("other.txt"), "other").unwrap();
    let hub = Hub::builder()
        .store(Arc::new(MemoryStore::new()))
        .build()
        .unwrap();
    let worker = Worker::builder(AgentId::new("careful").unwrap())
        .llm(Arc::new(ScriptedProvider::new(answers.iter().copied())))
        .executor(Arc::new(
            ShellExecutor::new(dir.path()).timeout(Duration::from_secs(20)),
        ))
        .gate(gate())
        .build()
        .unwrap();
    hub.register_agent(worker.card(), Arc::new(worker.clone()))
        .await
        .unwrap();
    let task = hub.create_task(NewTask::new("tidy up")).await.unwrap();
    hub.assign(task.id, worker.name()).await.unwrap();
    Setup {
        hub,
        dir,
        task: task.id,
    }
}

async fn kinds(hub: &Hub, task: TaskId) -> Vec<(String, serde_json::Value)> {
    hub.logs(LogQuery::task(task))
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.payload))
        .collect()
}

/// The behaviour before approvals waited inside the run: stop at a held command.
fn stop_at_approval() -> StepLimits {
    StepLimits::steps(5).approval_wait(None)
}

const RM_JUNK: &str = r#"{"reason": "remove the junk", "command": "rm -f junk.txt"}"#;
const DONE: &str = r#"{"done": true, "summary": "tidy"}"#;

#[tokio::test]
async fn a_held_command_waits_blocked_until_approved_then_runs() {
    let s = setup(&[RM_JUNK, DONE]).await;
    let report = s.hub.run(s.task, &stop_at_approval()).await.unwrap();
    assert_eq!(
        report.stop,
        StopReason::AwaitingApproval {
            reasons: vec!["rm removes files".into()]
        }
    );
    assert_eq!(report.steps, 0);
    assert!(
        s.dir.path().join("junk.txt").exists(),
        "nothing ran before the approval"
    );
    let waiting = s.hub.get_task(s.task).await.unwrap();
    assert_eq!(waiting.status, TaskStatus::Blocked);
    let proposal = waiting.proposal.clone().unwrap();
    assert_eq!(proposal.command, "rm -f junk.txt");
    assert_eq!(
        proposal.needs_approval,
        vec!["rm removes files".to_string()]
    );
    let logged = kinds(&s.hub, s.task).await;
    assert!(
        logged.iter().any(|(k, p)| k == "approval_required"
            && p["reasons"][0] == "rm removes files"
            && p["command"] == "rm -f junk.txt"),
        "{logged:?}"
    );

    let step = s.hub.approve(s.task, None).await.unwrap();
    assert_eq!(step.command, "rm -f junk.txt");
    assert!(step.outcome.success());
    assert!(
        !s.dir.path().join("junk.txt").exists(),
        "the approved command ran"
    );
    let logged = kinds(&s.hub, s.task).await;
    assert!(
        logged
            .iter()
            .any(|(k, p)| k == "approval" && p["approved"] == true && p["edited"] == false),
        "{logged:?}"
    );
    let task = s.hub.get_task(s.task).await.unwrap();
    assert_eq!(task.status, TaskStatus::InProgress);
    assert!(task.proposal.is_none());

    let report = s
        .hub
        .run(s.task, &stop_at_approval().trust_model(true))
        .await
        .unwrap();
    assert!(matches!(report.stop, StopReason::Done { .. }), "{report:?}");
}

#[tokio::test]
async fn an_edited_approval_runs_the_edited_command() {
    let s = setup(&[RM_JUNK]).await;
    let report = s.hub.run(s.task, &stop_at_approval()).await.unwrap();
    assert!(matches!(report.stop, StopReason::AwaitingApproval { .. }));
    let step = s
        .hub
        .approve(s.task, Some("rm -f other.txt".into()))
        .await
        .unwrap();
    assert_eq!(step.command, "rm -f other.txt");
    assert!(s.dir.path().join("junk.txt").exists());
    assert!(!s.dir.path().join("other.txt").exists());
    let logged = kinds(&s.hub, s.task).await;
    assert!(
        logged.iter().any(|(k, p)| k == "approval"
            && p["edited"] == true
            && p["command"] == "rm -f other.txt"),
        "{logged:?}"
    );
}

#[tokio::test]
async fn a_rejected_command_never_runs_and_the_task_goes_on() {
    let s = setup(&[RM_JUNK]).await;
    s.hub.run(s.task, &stop_at_approval()).await.unwrap();
    let task = s.hub.reject(s.task, "keep the junk").await.unwrap();
    assert_eq!(task.status, TaskStatus::InProgress);
    assert!(task.proposal.is_none());
    assert!(task.steps.is_empty());
    assert!(s.dir.path().join("junk.txt").exists());
    let logged = kinds(&s.hub, s.task).await;
    assert!(
        logged.iter().any(|(k, p)| k == "approval"
            && p["approved"] == false
            && p["reason"] == "keep the junk"
            && p["command"] == "rm -f junk.txt"),
        "{logged:?}"
    );
    // Nothing waits any more.
    let e = s.hub.approve(s.task, None).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
    let e = s.hub.reject(s.task, "again").await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
}

#[tokio::test]
async fn a_denied_command_is_a_typed_error_and_never_runs() {
    let s = setup(&[r#"{"reason": "done for the day", "command": "shutdown -h now"}"#]).await;
    let e = s
        .hub
        .run(s.task, &stop_at_approval().stop_on_denial(true))
        .await
        .unwrap_err()
        .error;
    assert!(
        matches!(
            &e,
            Error::Agent(AgentError::Exec(ExecError::Denied { rule, .. })) if rule == "no-shutdown"
        ),
        "{e:?}"
    );
    let task = s.hub.get_task(s.task).await.unwrap();
    assert!(task.steps.is_empty(), "no step was recorded");
    assert_ne!(task.status, TaskStatus::Blocked, "a denial waits on nobody");
    // An approval cannot turn a denial into a run: an edited command is gated too.
    let held = setup(&[RM_JUNK]).await;
    held.hub.run(held.task, &stop_at_approval()).await.unwrap();
    let e = held
        .hub
        .approve(held.task, Some("shutdown -h now".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Agent(AgentError::Exec(ExecError::Denied { .. }))),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_worker_on_its_own_stops_for_approval_and_runs_when_approved() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junk.txt"), "junk").unwrap();
    let worker = Worker::builder(AgentId::new("alone").unwrap())
        .llm(Arc::new(ScriptedProvider::new([RM_JUNK])))
        .executor(Arc::new(ShellExecutor::new(dir.path())))
        .gate(gate())
        .build()
        .unwrap();
    let mut task = NewTask::new("tidy").into_task().unwrap();
    let report = worker
        .run(&mut task, None, &StepLimits::steps(3))
        .await
        .unwrap();
    assert!(
        matches!(report.stop, StopReason::AwaitingApproval { .. }),
        "{report:?}"
    );
    assert!(dir.path().join("junk.txt").exists());
    let proposal = task.proposal.clone().unwrap();
    assert_eq!(
        proposal.needs_approval,
        vec!["rm removes files".to_string()]
    );
    let e = worker.execute(&task, None).await.unwrap_err();
    assert!(
        matches!(e, AgentError::Exec(ExecError::NeedsApproval { .. })),
        "{e:?}"
    );
    let step = worker.approve(&task, None).await.unwrap();
    assert!(step.outcome.success());
    assert!(!dir.path().join("junk.txt").exists());
}

#[tokio::test]
async fn the_parsing_policy_is_a_gate_holding_rm_and_denying_rm_of_home() {
    use ananta_exec::{CommandPolicy, PolicyMode};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junk.txt"), "junk").unwrap();
    let worker = Worker::builder(AgentId::new("policed").unwrap())
        .llm(Arc::new(ScriptedProvider::new([
            r#"{"reason": "look", "command": "ls && wc -c junk.txt"}"#,
            RM_JUNK,
        ])))
        .executor(Arc::new(ShellExecutor::new(dir.path())))
        .gate(Arc::new(CommandPolicy::builtin().gate(PolicyMode::Approve)))
        .build()
        .unwrap();
    let mut task = NewTask::new("tidy").into_task().unwrap();
    let report = worker
        .run(&mut task, None, &StepLimits::steps(3))
        .await
        .unwrap();
    assert_eq!(report.steps, 1, "the read-only step ran without asking");
    assert!(
        matches!(report.stop, StopReason::AwaitingApproval { .. }),
        "{report:?}"
    );
    assert!(dir.path().join("junk.txt").exists());
    let e = worker
        .approve(&task, Some("rm -rf ~".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(e, AgentError::Exec(ExecError::Denied { .. })),
        "approval does not lift a denial: {e:?}"
    );
}
