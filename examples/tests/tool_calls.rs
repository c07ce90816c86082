//! Native tool calls end to end: a scripted model that calls tools the way a function-calling
//! server answers, a Worker with `Protocol::Tools` in its own task folder, and a Hub that runs
//! the loop: results go back as tool messages, bad calls and escapes come back as typed errors
//! the model reads, read-only tools refuse writes and approved writes wait for a human.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use ananta_core::feedback::FeedbackKind;
use ananta_core::llm::{ChatResponse, FinishReason, Role, ToolCall};
use ananta_core::tools::ToolAccess;
use ananta_core::worker::{Protocol, Workspaces};
use ananta_core::{AgentId, Hub, NewTask, StepLimits, StopReason, TaskId, TaskStatus, Worker};
use ananta_exec::ShellExecutor;
use ananta_llm::{ScriptedProvider, ScriptedReply};
use ananta_store::MemoryStore;
use tempfile::TempDir;

fn call(name: &str, arguments: &str) -> ScriptedReply {
    ScriptedReply::Response(ChatResponse {
        tool_calls: vec![ToolCall {
            id: format!("call-{name}"),
            name: name.into(),
            arguments: arguments.into(),
        }],
        finish_reason: Some(FinishReason::ToolCalls),
        ..ChatResponse::default()
    })
}

struct Setup {
    hub: Hub,
    worker: Worker,
    llm: ScriptedProvider,
    _dir: TempDir,
}

async fn setup(replies: Vec<ScriptedReply>, access: ToolAccess) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let llm = ScriptedProvider::new(replies);
    let worker = Worker::builder(AgentId::new("w").unwrap())
        .llm(Arc::new(llm.clone()))
        .executor(Arc::new(
            ShellExecutor::new(dir.path()).timeout(Duration::from_secs(20)),
        ))
        .workspaces(Workspaces::per_task(dir.path()))
        .protocol(Protocol::Tools)
        .tool_access(access)
        .build()
        .unwrap();
    let hub = Hub::builder()
        .store(Arc::new(MemoryStore::new()))
        .build()
        .unwrap();
    hub.register_worker(&worker).await.unwrap();
    Setup {
        hub,
        worker,
        llm,
        _dir: dir,
    }
}

impl Setup {
    async fn task(&self, new: NewTask) -> TaskId {
        let task = self.hub.create_task(new).await.unwrap();
        self.hub
            .assign(task.id, &AgentId::new("w").unwrap())
            .await
            .unwrap();
        task.id
    }
}

const NOTE: &str = r#"{"path": "notes/hello.txt", "content": "hello\n"}"#;

#[tokio::test]
async fn a_model_calling_tools_writes_reads_and_finishes() {
    let s = setup(
        vec![
            call("write_file", NOTE),
            call("read_file", r#"{"path": "notes/hello.txt"}"#),
            call("run_command", r#"{"command": "wc -c < notes/hello.txt"}"#),
            call("finish", r#"{"summary": "the note is written"}"#),
        ],
        ToolAccess::ReadWrite,
    )
    .await;
    let task = s
        .task(NewTask::new("Write a note").check("grep -q hello notes/hello.txt"))
        .await;
    let report = s.hub.run(task, &StepLimits::steps(6)).await.unwrap();
    assert_eq!(
        report.stop,
        StopReason::Done {
            summary: "the note is written".into()
        }
    );
    assert_eq!(report.steps, 3);
    let stored = s.hub.get_task(task).await.unwrap();
    assert_eq!(stored.status, TaskStatus::Done);
    assert_eq!(stored.steps[1].outcome.stdout, "1\thello\n");
    assert_eq!(stored.steps[2].outcome.stdout.trim(), "6");
    assert!(
        s.worker
            .workspace_of(task)
            .unwrap()
            .join("notes/hello.txt")
            .is_file()
    );

    let requests = s.llm.requests();
    let offered: Vec<&str> = requests[0].tools.iter().map(|t| t.name.as_str()).collect();
    assert!(
        offered.starts_with(&["run_command", "finish", "read_file"]),
        "{offered:?}"
    );
    // Each result went back as a tool message answering its call.
    let last = &requests[3].messages;
    let results: Vec<&str> = last
        .iter()
        .filter(|m| m.role == Role::Tool)
        .map(|m| m.tool_call_id.as_deref().unwrap_or_default())
        .collect();
    assert_eq!(
        results,
        ["call-write_file", "call-read_file", "call-run_command"]
    );
    assert!(
        last.iter()
            .any(|m| m.role == Role::Assistant && m.tool_calls.len() == 1),
        "{last:?}"
    );
}

#[tokio::test]
async fn bad_calls_and_escapes_are_typed_errors_the_model_reads() {
    let s = setup(
        vec![
            // No such tool: fed back.
            call("delete_everything", "{}"),
            // run_command without its argument: fed back.
            call("run_command", r#"{"cmd": "ls"}"#),
            // A file tool with a bad argument: the step fails with the typed error.
            call("write_file", r#"{"path": 3}"#),
            // Escapes: the step fails, nothing outside is touched.
            call(
                "write_file",
                r#"{"path": "../escaped.txt", "content": "x"}"#,
            ),
            call("read_file", r#"{"path": "/etc/passwd"}"#),
            call("write_file", NOTE),
            call("finish", r#"{"summary": "done"}"#),
        ],
        ToolAccess::ReadWrite,
    )
    .await;
    let task = s
        .task(NewTask::new("Write a note").check("test -f notes/hello.txt"))
        .await;
    let report = s.hub.run(task, &StepLimits::steps(10)).await.unwrap();
    assert!(matches!(report.stop, StopReason::Done { .. }), "{report:?}");
    assert_eq!((report.steps, report.fed_back), (4, 2));
    let stored = s.hub.get_task(task).await.unwrap();
    let kinds: Vec<FeedbackKind> = stored.feedback.iter().map(|f| f.kind).collect();
    assert_eq!(kinds, [FeedbackKind::Unreadable, FeedbackKind::Unreadable]);
    assert!(
        stored.feedback[0].message.contains("no such tool"),
        "{:?}",
        stored.feedback[0]
    );
    assert!(
        stored.feedback[1]
            .message
            .contains("unknown field `cmd`, expected `command`"),
        "{:?}",
        stored.feedback[1]
    );
    let errors: Vec<&str> = stored.steps[..3]
        .iter()
        .map(|s| s.outcome.stderr.as_str())
        .collect();
    assert!(errors[0].contains("invalid arguments"), "{errors:?}");
    assert!(
        errors[1].contains("outside the task's workspace"),
        "{errors:?}"
    );
    assert!(
        errors[2].contains("outside the task's workspace"),
        "{errors:?}"
    );
    let root = s.worker.workspace_of(task).unwrap();
    assert!(!root.parent().unwrap().join("escaped.txt").exists());
}

#[tokio::test]
async fn read_only_tools_refuse_writes() {
    let s = setup(
        vec![
            call("write_file", NOTE),
            call("list_files", "{}"),
            call("finish", r#"{"summary": "could not write"}"#),
        ],
        ToolAccess::ReadOnly,
    )
    .await;
    let task = s.task(NewTask::new("Write a note")).await;
    let report = s.hub.run(task, &StepLimits::steps(5)).await.unwrap();
    assert!(
        matches!(report.stop, StopReason::Unverified { .. }),
        "{report:?}"
    );
    let stored = s.hub.get_task(task).await.unwrap();
    assert!(
        stored.steps[0].outcome.stderr.contains("read-only"),
        "{:?}",
        stored.steps[0].outcome
    );
    assert!(!s.worker.workspace_of(task).unwrap().join("notes").exists());
}

#[tokio::test]
async fn writes_wait_for_approval_when_asked_to() {
    let s = setup(
        vec![
            call("write_file", NOTE),
            call("finish", r#"{"summary": "written"}"#),
        ],
        ToolAccess::ApproveWrites,
    )
    .await;
    let task = s
        .task(NewTask::new("Write a note").check("test -f notes/hello.txt"))
        .await;
    let run = tokio::spawn({
        let hub = s.hub.clone();
        async move { hub.run(task, &StepLimits::steps(5)).await }
    });
    let mut waited = 0;
    loop {
        let t = s.hub.get_task(task).await.unwrap();
        if t.status == TaskStatus::Blocked {
            let held = t.proposal.unwrap();
            assert_eq!(held.needs_approval, ["write_file changes files"]);
            break;
        }
        waited += 1;
        assert!(waited < 600, "the write was never held");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.hub.approve(task, None).await.unwrap();
    let report = run.await.unwrap().unwrap();
    assert!(matches!(report.stop, StopReason::Done { .. }), "{report:?}");
    assert_eq!(report.steps, 1);
}

#[tokio::test]
async fn a_text_answer_still_works_under_the_tool_protocol() {
    let s = setup(
        vec![
            ScriptedReply::from(r#"{"analysis": "plain", "next": {"run": "echo hi > hi.txt"}}"#),
            call("finish", r#"{"summary": "wrote hi"}"#),
        ],
        ToolAccess::ReadWrite,
    )
    .await;
    let task = s.task(NewTask::new("Say hi").check("test -f hi.txt")).await;
    let report = s.hub.run(task, &StepLimits::steps(4)).await.unwrap();
    assert!(matches!(report.stop, StopReason::Done { .. }), "{report:?}");
}

#[test]
fn tools_in_one_shared_folder_need_a_root() {
    let e = Worker::builder(AgentId::new("w").unwrap())
        .llm(Arc::new(ScriptedProvider::new(Vec::<String>::new())))
        .executor(Arc::new(ShellExecutor::new(".")))
        .protocol(Protocol::Tools)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("tool_root"), "{e}");
}

#[tokio::test]
async fn a_model_that_never_calls_tools_is_asked_in_text_after_three_answers() {
    let s = setup(
        vec![
            ScriptedReply::from("I would make a file."),
            ScriptedReply::from("Maybe a file called hi.txt."),
            ScriptedReply::from("Files are useful."),
            ScriptedReply::from(r#"{"analysis": "now", "next": {"command": "echo hi > hi.txt"}}"#),
            ScriptedReply::from(r#"{"analysis": "done", "next": {"finish": "wrote hi"}}"#),
        ],
        ToolAccess::ReadWrite,
    )
    .await;
    let task = s.task(NewTask::new("Say hi").check("test -f hi.txt")).await;
    let report = s.hub.run(task, &StepLimits::steps(8)).await.unwrap();
    assert!(matches!(report.stop, StopReason::Done { .. }), "{report:?}");
    let requests = s.llm.requests();
    let offered: Vec<usize> = requests.iter().map(|r| r.tools.len()).collect();
    assert_eq!(offered, [7, 7, 7, 0, 0], "tools offered per request");
    assert!(
        requests[3].messages[0]
            .content
            .contains(r#""next": {"command""#),
        "the text protocol's system prompt: {}",
        requests[3].messages[0].content
    );
}
