//! One Worker step (propose + execute, no Hub) in the text protocol and with native tool calls:
//! what reading a tool call and running a file tool in-process costs next to parsing a text
//! answer and running a shell command for the same job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use ananta_core::llm::{ChatResponse, FinishReason, ToolCall};
use ananta_core::worker::Protocol;
use ananta_core::{AgentId, NewTask, Proposed, Worker};
use ananta_exec::ShellExecutor;
use ananta_llm::{ScriptedProvider, ScriptedReply};
use criterion::{Criterion, criterion_group, criterion_main};

fn tool_call(name: &str, arguments: &str) -> ScriptedReply {
    ScriptedReply::Response(ChatResponse {
        tool_calls: vec![ToolCall {
            id: "call-1".into(),
            name: name.into(),
            arguments: arguments.into(),
        }],
        finish_reason: Some(FinishReason::ToolCalls),
        ..ChatResponse::default()
    })
}

fn worker(dir: &std::path::Path, reply: ScriptedReply, protocol: Protocol) -> Worker {
    Worker::builder(AgentId::new("bench").unwrap())
        .llm(Arc::new(ScriptedProvider::new([reply]).repeat_last()))
        .executor(Arc::new(ShellExecutor::new(dir)))
        .protocol(protocol)
        .tool_root(dir)
        .build()
        .unwrap()
}

fn steps(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("a.txt"), "hello\n".repeat(20)).unwrap();
    let cases = [
        (
            "text_answer_shell_cat",
            worker(
                tmp.path(),
                ScriptedReply::from(r#"{"analysis": "read it", "next": {"command": "cat a.txt"}}"#),
                Protocol::Text,
            ),
        ),
        (
            "tool_call_run_command_cat",
            worker(
                tmp.path(),
                tool_call("run_command", r#"{"command": "cat a.txt"}"#),
                Protocol::Tools,
            ),
        ),
        (
            "tool_call_read_file",
            worker(
                tmp.path(),
                tool_call("read_file", r#"{"path": "a.txt"}"#),
                Protocol::Tools,
            ),
        ),
    ];
    let mut group = c.benchmark_group("worker_step");
    group.measurement_time(Duration::from_secs(5));
    for (name, worker) in cases {
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut task = NewTask::new("read a.txt").into_task().unwrap();
                    let Proposed::Command(p) = worker.propose(&task, None).await.unwrap() else {
                        panic!("no action");
                    };
                    task.proposal = Some(p);
                    let step = worker.execute(&task, None).await.unwrap();
                    assert_eq!(step.outcome.exit_code, Some(0));
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, steps);
criterion_main!(benches);
