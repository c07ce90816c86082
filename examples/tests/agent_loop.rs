//! The agent loop's trust: "done" only when the task's checks pass, answers that cannot run fed
//! back instead of ending the run, a stuck model stopped, approvals inside the run, and a
//! report that survives an error. In-process: a Hub with a MemoryStore, a Worker with a
//! ScriptedProvider and a real ShellExecutor in a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use ananta_core::LlmError;
use ananta_core::exec::{CommandGate, Decision};
use ananta_core::feedback::FeedbackKind;
use ananta_core::{
    AgentId, EventKind, Hub, NewTask, StepLimits, StopReason, TaskId, TaskStatus, Worker,
};
use ananta_exec::ShellExecutor;
use ananta_llm::{ScriptedProvider, ScriptedReply};
use ananta_store::MemoryStore;
use tempfile::TempDir;

/// `shutdown` and `curl` never run; `rm` needs a human; everything else runs.
fn gate() -> Arc<dyn CommandGate> {
    Arc::new(|command: &str| {
        if command.starts_with("shutdown") || command.starts_with("curl") {
            Decision::Deny {
                rule: "no-network".into(),
                reason: "no network access from tasks".into(),
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
        .gate(gate())
        .build()
        .unwrap();
    hub.register_worker(&worker).await.unwrap();
    Setup { hub, llm, dir }
}

impl Setup {
    /// Waits until the run holds the task's command for a human.
    async fn wait_until_held(&self, task: TaskId) {
        let mut waited = 0;
        while self.hub.get_task(task).await.unwrap().status != TaskStatus::Blocked {
            waited += 1;
            assert!(waited < 600, "the run never asked for approval");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn task(&self, new: NewTask) -> TaskId {
        let task = self.hub.create_task(new).await.unwrap();
        self.hub
            .assign(task.id, &AgentId::new("w1").unwrap())
            .await
            .unwrap();
        task.id
    }
}

const WRITE_NOTE: &str = r#"{"analysis": "the note is missing", "next": {"run": "mkdir -p notes && echo hi > notes/hello.txt"}}"#;
const FINISHED: &str = r#"{"analysis": "checked", "next": {"finish": "the note is written"}}"#;
const NOTE_CHECK: &str = "test -s notes/hello.txt";

#[tokio::test]
async fn done_too_early_is_fed_back_and_the_loop_recovers() {
    let s = setup(ScriptedProvider::new([FINISHED, WRITE_NOTE, FINISHED])).await;
    let task = s.task(NewTask::new("Write a note").check(NOTE_CHECK)).await;
    let mut events = s.hub.subscribe();

    let report = s.hub.run(task, &StepLimits::steps(6)).await.unwrap();
    assert_eq!(
        report.stop,
        StopReason::Done {
            summary: "the note is written".into()
        }
    );
    assert_eq!((report.steps, report.fed_back), (1, 1));
    let stored = s.hub.get_task(task).await.unwrap();
    assert_eq!(stored.status, TaskStatus::Done);
    let evidence = stored.verification.unwrap();
    assert!(evidence.passed);
    assert_eq!(evidence.checks[0].command, NOTE_CHECK);
    assert_eq!(stored.feedback.len(), 1);
    assert_eq!(stored.feedback[0].kind, FeedbackKind::CheckFailed);
    assert_eq!(stored.feedback[0].after_step, 0);

    // The second prompt told the model which check failed.
    let second = &s.llm.requests()[1].messages;
    let told = second.iter().rev().find(|m| m.content.contains(NOTE_CHECK));
    assert!(
        told.is_some_and(|m| m.content.contains("exit 1")),
        "{second:?}"
    );
    let mut verified = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let EventKind::TaskVerified { verification, .. } = e.kind {
            verified.push(verification.passed);
        }
    }
    assert_eq!(verified, [false, true]);
}

#[tokio::test]
async fn a_model_that_only_says_done_never_gets_done() {
    let s = setup(ScriptedProvider::new([FINISHED]).repeat_last()).await;
    let task = s.task(NewTask::new("Write a note").check(NOTE_CHECK)).await;
    let report = s.hub.run(task, &StepLimits::steps(4)).await.unwrap();
    assert_eq!(report.stop, StopReason::StepBudget);
    assert_eq!((report.steps, report.fed_back), (0, 4));
    let stored = s.hub.get_task(task).await.unwrap();
    assert_eq!(
        stored.status,
        TaskStatus::Failed,
        "the budget ran out on a failing check"
    );
    assert!(!stored.verification.unwrap().passed);
}

#[tokio::test]
async fn without_checks_done_is_unverified_unless_the_host_trusts_the_model() {
    let s = setup(ScriptedProvider::new([FINISHED, FINISHED])).await;
    let task = s.task(NewTask::new("Say hello")).await;
    let report = s.hub.run(task, &StepLimits::steps(3)).await.unwrap();
    assert!(
        matches!(report.stop, StopReason::Unverified { .. }),
        "{report:?}"
    );
    let stored = s.hub.get_task(task).await.unwrap();
    assert_eq!(stored.status, TaskStatus::Review);
    assert!(stored.verification.unwrap().is_unverified());
    let logged = s.hub.logs(ananta_core::LogQuery::task(task)).await.unwrap();
    assert!(
        logged
            .iter()
            .any(|e| e.kind == "status" && e.payload["status"] == "review"),
        "{logged:?}"
    );

    let trusted = s.task(NewTask::new("Say hello again")).await;
    let report = s
        .hub
        .run(trusted, &StepLimits::steps(3).trust_model(true))
        .await
        .unwrap();
    assert!(matches!(report.stop, StopReason::Done { .. }), "{report:?}");
    assert_eq!(
        s.hub.get_task(trusted).await.unwrap().status,
        TaskStatus::Done
    );
}

#[tokio::test]
async fn checks_go_through_the_gate_like_every_command() {
    let s = setup(ScriptedProvider::new([FINISHED])).await;
    let task = s
        .task(NewTask::new("Fetch").check("curl -sf http://example.invalid/"))
        .await;
    let report = s.hub.run(task, &StepLimits::steps(1)).await.unwrap();
    assert_eq!(report.stop, StopReason::StepBudget);
    let evidence = report.verification.unwrap();
    assert!(!evidence.passed);
    assert_eq!(evidence.checks[0].exit_code, None, "the check did not run");
    assert!(
        evidence.checks[0].output.contains("no-network"),
        "{evidence:?}"
    );
}

#[tokio::test]
async fn answers_that_cannot_run_are_fed_back_until_the_right_action() {
    let s = setup(ScriptedProvider::new([
        // prose
        "I think we should create the note first, then check it.",
        // an untagged Python block: run with python3, not sh
        "```\nimport pathlib\npathlib.Path('py.txt').write_text('from python')\n```",
        // cut off at the token limit
        r#"{"analysis": "now the note", "next": {"run": "mkdir -p notes && echo hi > no"#,
        // a denied command
        r#"{"analysis": "fetch a template", "next": {"run": "curl -s http://example.invalid/"}}"#,
        // a fence of nothing but a comment
        "```bash\n# nothing yet\n```",
        WRITE_NOTE,
        // the same command again
        WRITE_NOTE,
        FINISHED,
    ]))
    .await;
    let task = s
        .task(
            NewTask::new("Write a note")
                .check(NOTE_CHECK)
                .check("grep -q 'from python' py.txt"),
        )
        .await;
    let report = s.hub.run(task, &StepLimits::steps(12)).await.unwrap();
    assert!(matches!(report.stop, StopReason::Done { .. }), "{report:?}");
    assert_eq!((report.steps, report.fed_back), (2, 5), "{report:?}");
    let stored = s.hub.get_task(task).await.unwrap();
    assert_eq!(stored.status, TaskStatus::Done);
    assert!(stored.proposal.is_none(), "no denied proposal left behind");
    let kinds: Vec<FeedbackKind> = stored.feedback.iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        [
            FeedbackKind::Unreadable,
            FeedbackKind::Unreadable,
            FeedbackKind::Denied,
            FeedbackKind::Unreadable,
            FeedbackKind::Repeated,
        ]
    );
    assert!(
        stored.feedback[1].message.contains("cut off"),
        "{:?}",
        stored.feedback[1]
    );
    assert!(stored.feedback[2].message.contains("no-network"));
    assert_eq!(
        std::fs::read_to_string(s.dir.path().join("py.txt")).unwrap(),
        "from python"
    );
    // Each feedback reached the model in the next prompt, in order.
    let requests = s.llm.requests();
    let last = &requests.last().unwrap().messages;
    let denial = last
        .iter()
        .position(|m| m.content.contains("was denied by the policy"));
    let repeat = last
        .iter()
        .position(|m| m.content.contains("the same again changes nothing"));
    assert!(denial.is_some() && repeat.is_some() && denial < repeat);
}

#[tokio::test]
async fn a_model_repeating_itself_after_the_warning_is_stuck() {
    let s = setup(
        ScriptedProvider::new([r#"{"analysis": "look", "next": {"run": "ls"}}"#]).repeat_last(),
    )
    .await;
    let task = s.task(NewTask::new("Look").check("false")).await;
    let report = s.hub.run(task, &StepLimits::steps(10)).await.unwrap();
    assert_eq!(
        report.stop,
        StopReason::Stuck {
            command: "ls".into()
        }
    );
    assert_eq!((report.steps, report.fed_back), (1, 1));
    assert_eq!(
        s.hub.get_task(task).await.unwrap().status,
        TaskStatus::Failed
    );
}

#[tokio::test]
async fn the_prompt_holds_no_internal_ids() {
    let s = setup(ScriptedProvider::new([WRITE_NOTE, FINISHED])).await;
    let task = s.task(NewTask::new("Write a note").check(NOTE_CHECK)).await;
    s.hub.run(task, &StepLimits::steps(4)).await.unwrap();
    let id = task.to_string();
    let ulid = id.trim_start_matches("T-");
    for request in s.llm.requests() {
        for m in &request.messages {
            assert!(!m.content.contains(ulid), "{}", m.content);
        }
    }
    let first = &s.llm.requests()[0].messages[1].content;
    assert!(first.starts_with("Task: Write a note"), "{first}");
    assert!(first.contains("- `test -s notes/hello.txt`"), "{first}");
}

#[tokio::test]
async fn approval_inside_the_run_continues_with_the_same_budget() {
    let s = setup(ScriptedProvider::new([
        r#"{"analysis": "clean", "next": {"run": "rm -f junk.txt"}}"#,
        WRITE_NOTE,
        FINISHED,
    ]))
    .await;
    std::fs::write(s.dir.path().join("junk.txt"), "junk").unwrap();
    let task = s
        .task(
            NewTask::new("Tidy and write a note")
                .check(NOTE_CHECK)
                .check("test ! -e junk.txt"),
        )
        .await;
    let run = tokio::spawn({
        let hub = s.hub.clone();
        async move { hub.run(task, &StepLimits::steps(5)).await }
    });
    s.wait_until_held(task).await;
    assert!(s.dir.path().join("junk.txt").exists());
    s.hub.approve(task, None).await.unwrap();
    let report = run.await.unwrap().unwrap();
    assert!(matches!(report.stop, StopReason::Done { .. }), "{report:?}");
    assert_eq!(report.steps, 2, "the approved step counts: {report:?}");
    assert!(!s.dir.path().join("junk.txt").exists());
    assert_eq!(s.hub.get_task(task).await.unwrap().status, TaskStatus::Done);
}

#[tokio::test]
async fn a_rejection_inside_the_run_is_fed_back() {
    let s = setup(ScriptedProvider::new([
        r#"{"analysis": "clean", "next": {"run": "rm -f junk.txt"}}"#,
        WRITE_NOTE,
        FINISHED,
    ]))
    .await;
    std::fs::write(s.dir.path().join("junk.txt"), "junk").unwrap();
    let task = s.task(NewTask::new("Write a note").check(NOTE_CHECK)).await;
    let run = tokio::spawn({
        let hub = s.hub.clone();
        async move { hub.run(task, &StepLimits::steps(5)).await }
    });
    s.wait_until_held(task).await;
    s.hub.reject(task, "keep the junk").await.unwrap();
    let report = run.await.unwrap().unwrap();
    assert!(matches!(report.stop, StopReason::Done { .. }), "{report:?}");
    assert_eq!((report.steps, report.fed_back), (1, 1));
    assert!(s.dir.path().join("junk.txt").exists());
    let prompt = &s.llm.requests()[1].messages;
    assert!(
        prompt.iter().any(|m| m
            .content
            .contains("A human rejected `rm -f junk.txt`: keep the junk")),
        "{prompt:?}"
    );
}

#[tokio::test]
async fn a_held_command_times_out_into_awaiting_approval() {
    let s = setup(ScriptedProvider::new([
        r#"{"analysis": "clean", "next": {"run": "rm -f junk.txt"}}"#,
    ]))
    .await;
    let task = s.task(NewTask::new("Tidy")).await;
    let limits = StepLimits::steps(5).approval_wait(Some(Duration::from_millis(200)));
    let report = s.hub.run(task, &limits).await.unwrap();
    assert!(
        matches!(report.stop, StopReason::AwaitingApproval { .. }),
        "{report:?}"
    );
    assert_eq!(
        s.hub.get_task(task).await.unwrap().status,
        TaskStatus::Blocked
    );
}

#[tokio::test]
async fn an_error_carries_the_report_of_what_the_run_did() {
    let s = setup(ScriptedProvider::new([
        ScriptedReply::from(WRITE_NOTE),
        ScriptedReply::Error(LlmError::Unreachable("the model server went away".into())),
    ]))
    .await;
    let task = s.task(NewTask::new("Write a note").check(NOTE_CHECK)).await;
    let e = s.hub.run(task, &StepLimits::steps(5)).await.unwrap_err();
    assert_eq!(e.report.steps, 1);
    assert!(e.report.usage.total() > 0);
    assert!(e.to_string().contains("after 1 step"), "{e}");
    let stored = s.hub.get_task(task).await.unwrap();
    assert_eq!(stored.steps.len(), 1);
    assert_ne!(stored.status, TaskStatus::Done);
}

#[tokio::test]
async fn a_worker_without_a_hub_verifies_too() {
    let dir = tempfile::tempdir().unwrap();
    let worker = Worker::builder(AgentId::new("solo").unwrap())
        .llm(Arc::new(ScriptedProvider::new([
            FINISHED, WRITE_NOTE, FINISHED,
        ])))
        .executor(Arc::new(ShellExecutor::new(dir.path())))
        .build()
        .unwrap();
    let mut task = NewTask::new("Write a note")
        .check(NOTE_CHECK)
        .into_task()
        .unwrap();
    let report = worker
        .run(&mut task, None, &StepLimits::steps(5))
        .await
        .unwrap();
    assert!(matches!(report.stop, StopReason::Done { .. }), "{report:?}");
    assert_eq!(task.feedback.len(), 1);
    assert!(task.verification.unwrap().passed);
}

#[tokio::test]
async fn the_history_is_capped_by_tokens() {
    let big = "x".repeat(3_000);
    let answers: Vec<String> = (0..6)
        .map(|i| {
            format!(r#"{{"analysis": "print", "next": {{"run": "printf '{big}' && echo {i}"}}}}"#)
        })
        .collect();
    let llm = ScriptedProvider::new(answers);
    let dir = tempfile::tempdir().unwrap();
    let worker = Worker::builder(AgentId::new("capped").unwrap())
        .llm(Arc::new(llm.clone()))
        .executor(Arc::new(ShellExecutor::new(dir.path())))
        .build()
        .unwrap();
    let mut config = worker.config();
    config.history_tokens = 2_500;
    worker.set_config(config).unwrap();
    let mut task = NewTask::new("Print").check("false").into_task().unwrap();
    worker
        .run(&mut task, None, &StepLimits::steps(6))
        .await
        .unwrap();
    let last = llm.requests().last().unwrap().messages.clone();
    let chars: usize = last.iter().map(|m| m.content.len()).sum();
    assert!(chars < 2_500 * 4 + 4_000, "{chars} characters sent");
    assert!(
        last.iter()
            .any(|m| m.content.contains("earlier turn(s) omitted")),
        "{last:?}"
    );
    assert!(
        last.iter().any(|m| m.content.contains("echo 4")),
        "the latest step stays"
    );
}

#[tokio::test]
async fn progress_events_arrive_while_the_run_works() {
    let s = setup(
        ScriptedProvider::new([
            r#"{"analysis": "work a while", "next": {"run": "echo started; sleep 2; echo finished"}}"#,
            FINISHED,
        ])
        .chunk_size(8),
    )
    .await;
    let task = s.task(NewTask::new("Work").check("true")).await;
    let mut events = s.hub.subscribe();
    let run = tokio::spawn({
        let hub = s.hub.clone();
        async move { hub.run(task, &StepLimits::steps(4)).await }
    });
    let mut deltas = String::new();
    let mut saw_output_while_running = false;
    loop {
        let event = tokio::time::timeout(Duration::from_secs(60), events.recv())
            .await
            .expect("events keep coming")
            .unwrap();
        match event.kind {
            EventKind::LlmDelta { task_id, text, .. } if task_id == task => deltas.push_str(&text),
            EventKind::CommandOutput {
                task_id,
                text,
                step,
                ..
            } if task_id == task => {
                assert_eq!(step, 1);
                if text.contains("started") {
                    // The command still sleeps: no step is recorded and the run goes on.
                    let stored = s.hub.get_task(task).await.unwrap();
                    assert!(stored.steps.is_empty(), "{stored:?}");
                    assert!(!run.is_finished());
                    saw_output_while_running = true;
                }
            }
            EventKind::StepExecuted { .. } => break,
            _ => {}
        }
    }
    assert!(saw_output_while_running);
    assert!(
        deltas.contains("echo started; sleep 2"),
        "the answer streamed in pieces: {deltas}"
    );
    let report = run.await.unwrap().unwrap();
    assert!(matches!(report.stop, StopReason::Done { .. }), "{report:?}");
}

#[tokio::test]
async fn the_same_denied_command_again_and_again_is_stuck() {
    let s = setup(
        ScriptedProvider::new([
            r#"{"analysis": "fetch", "next": {"command": "curl -s http://example.invalid/"}}"#,
        ])
        .repeat_last(),
    )
    .await;
    let task = s.task(NewTask::new("Fetch").check("false")).await;
    let report = s.hub.run(task, &StepLimits::steps(10)).await.unwrap();
    assert!(
        matches!(report.stop, StopReason::Stuck { .. }),
        "{report:?}"
    );
    assert_eq!((report.steps, report.fed_back), (0, 2));
    let kinds: Vec<FeedbackKind> = s
        .hub
        .get_task(task)
        .await
        .unwrap()
        .feedback
        .iter()
        .map(|f| f.kind)
        .collect();
    assert_eq!(kinds, [FeedbackKind::Denied, FeedbackKind::Repeated]);
}

#[tokio::test]
async fn a_templates_checks_apply_to_its_tasks() {
    use ananta_core::NewTemplate;
    let s = setup(ScriptedProvider::new([FINISHED, WRITE_NOTE, FINISHED])).await;
    let template = s
        .hub
        .create_template(NewTemplate::new("notes", "{{title}}").check(NOTE_CHECK))
        .await
        .unwrap();
    let task = s
        .task(NewTask::new("Write a note").template(template.id))
        .await;
    let report = s.hub.run(task, &StepLimits::steps(6)).await.unwrap();
    assert!(matches!(report.stop, StopReason::Done { .. }), "{report:?}");
    assert_eq!((report.steps, report.fed_back), (1, 1));
    let evidence = s.hub.get_task(task).await.unwrap().verification.unwrap();
    assert_eq!(evidence.checks[0].command, NOTE_CHECK);
    // The model was told how its work is checked.
    assert!(s.llm.requests()[0].messages[1].content.contains(NOTE_CHECK));

    let blank = s
        .hub
        .create_template(NewTemplate::new("blank", "{{title}}").check("  "))
        .await;
    assert!(blank.is_err(), "{blank:?}");
}
