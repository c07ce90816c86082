//! The pipeline with the two kinds of agents: text agents (LLM only) passing context down a
//! diamond, and a shell agent (a Worker running real commands) whose run is cancelled mid-way
//! without leaving a process behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ananta_core::decompose::{Plan, PlannedTask};
use ananta_core::llm::{ChatResponse, Role};
use ananta_core::pipeline::{Pipeline, PipelineError, PipelineOptions, ShellAgent, TextAgent};
use ananta_core::{AgentId, TokenUsage, Worker};
use ananta_exec::ShellExecutor;
use ananta_llm::ScriptedProvider;

fn task(id: &str, description: &str, deps: &[&str]) -> PlannedTask {
    PlannedTask {
        id: id.into(),
        description: description.into(),
        dependencies: deps.iter().map(|d| d.to_string()).collect(),
        priority: None,
        agent_hint: None,
    }
}

#[tokio::test]
async fn text_agents_pass_context_down_a_diamond() {
    // Each agent answers with its task and the context it was given, so the final output
    // shows what travelled.
    let llm = ScriptedProvider::from_fn(|request| {
        let user = request
            .messages
            .iter()
            .find(|m| m.role == Role::User)
            .map(|m| m.content.clone())
            .unwrap_or_default();
        let mut answer = ChatResponse::text(format!("<{}>", user.replace('\n', " ")));
        answer.usage = Some(TokenUsage {
            prompt_tokens: 10,
            completion_tokens: 5,
        });
        Ok(answer)
    });
    let agent = Arc::new(TextAgent::new(Arc::new(llm), "You are helpful."));
    let plan = Plan {
        reasoning: String::new(),
        tasks: vec![
            task("a", "research A", &[]),
            task("b", "research B", &[]),
            task("compare", "compare A and B", &["a", "b"]),
        ],
    };
    let mut pipeline = Pipeline::new(PipelineOptions::default());
    for t in &plan.tasks {
        pipeline.assign(&t.id, AgentId::new("writer").unwrap(), 0.9, agent.clone());
    }
    let outcome = pipeline.run(&plan).await.unwrap();
    assert!(
        outcome.output.starts_with("<Task: compare A and B"),
        "{}",
        outcome.output
    );
    assert!(
        outcome
            .output
            .contains("Output of task a: <Task: research A>"),
        "{}",
        outcome.output
    );
    assert!(
        outcome
            .output
            .contains("Output of task b: <Task: research B>"),
        "{}",
        outcome.output
    );
    assert_eq!(
        outcome
            .trace
            .iter()
            .map(|t| t.tokens.prompt_tokens)
            .sum::<u64>(),
        30
    );
}

fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(marker) && !cmdline.contains("cargo") {
                found.push(cmdline);
            }
        }
    }
    found
}

#[tokio::test]
async fn cancelling_a_run_stops_the_shell_agents_command() {
    let dir = tempfile::tempdir().unwrap();
    // A duration no other process uses: it marks the command in the process table.
    let marker = "sleep 41.37";
    let llm = ScriptedProvider::new([format!(r#"{{"reason": "wait", "command": "{marker}"}}"#)]);
    let worker = Worker::builder(AgentId::new("shell").unwrap())
        .llm(Arc::new(llm))
        .executor(Arc::new(ShellExecutor::new(dir.path())))
        .build()
        .unwrap();
    let plan = Plan {
        reasoning: String::new(),
        tasks: vec![
            task("wait", "wait a while", &[]),
            task("after", "then this", &["wait"]),
        ],
    };
    let options = PipelineOptions::default();
    let cancel = options.cancel.clone();
    let mut pipeline = Pipeline::new(options);
    let agent = Arc::new(ShellAgent::new(worker, 3));
    for t in &plan.tasks {
        pipeline.assign(&t.id, AgentId::new("shell").unwrap(), 1.0, agent.clone());
    }
    let run = tokio::spawn(async move { pipeline.run(&plan).await });
    let deadline = Instant::now() + Duration::from_secs(20);
    while processes_with(marker).is_empty() {
        assert!(Instant::now() < deadline, "the command never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.cancel();
    let err = run.await.unwrap().unwrap_err();
    let PipelineError::Cancelled { partial } = err else {
        panic!("{err:?}")
    };
    assert_eq!(partial.trace[1].attempts, 0, "the dependant never started");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_with(marker).is_empty() {
        assert!(
            Instant::now() < deadline,
            "left behind: {:?}",
            processes_with(marker)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
