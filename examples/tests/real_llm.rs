//! A Worker proposing a step with a real model: llama.cpp's `llama-server` with SmolLM2-135M,
//! reached through `OpenAiProvider` with structured output (see `scripts/llm-server.sh`).
//!
//! Runs when `ANANTA_TEST_OPENAI_URL` is set; otherwise prints that it did not run, unless
//! `ANANTA_REQUIRE_REAL_LLM=1` (set by `scripts/test.sh` and CI) makes that a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::sync::Arc;
use std::time::Duration;

/// Per request: generous, because the one-slot server queues the requests of every test and a
/// loaded 2-core machine (a CI run at load average 11) answers slowly; nothing here depends on
/// how fast the model is.
const REAL_MODEL_TIMEOUT: Duration = Duration::from_secs(900);

use ananta_core::{AgentId, Hub, NewTask, Proposed, TaskStatus, Worker};
use ananta_exec::ShellExecutor;
use ananta_llm::OpenAiProvider;
use ananta_store::MemoryStore;

fn server_url() -> Option<String> {
    match std::env::var("ANANTA_TEST_OPENAI_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            if std::env::var("ANANTA_REQUIRE_REAL_LLM").is_ok_and(|v| v == "1") {
                panic!("ANANTA_REQUIRE_REAL_LLM=1 but ANANTA_TEST_OPENAI_URL is not set");
            }
            eprintln!("NOT RUN: real-LLM test skipped because ANANTA_TEST_OPENAI_URL is not set");
            None
        }
    }
}

#[tokio::test]
async fn worker_proposes_a_command_with_a_real_model() {
    let Some(url) = server_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let llm = OpenAiProvider::llama_cpp(&url)
        .timeout(REAL_MODEL_TIMEOUT)
        .build()
        .unwrap();
    let hub = Hub::builder()
        .store(Arc::new(MemoryStore::new()))
        .build()
        .unwrap();
    let worker = Worker::builder(AgentId::new("real-1").unwrap())
        .llm(Arc::new(llm))
        .executor(Arc::new(ShellExecutor::new(dir.path())))
        .structured_output(true)
        .temperature(0.0)
        .max_tokens(256)
        .build()
        .unwrap();
    hub.register_agent(worker.card(), Arc::new(worker.clone()))
        .await
        .unwrap();
    let task = hub
        .create_task(
            NewTask::new("List the files").description("Show the files in the current directory."),
        )
        .await
        .unwrap();
    hub.assign(task.id, worker.name()).await.unwrap();

    // The proposal is only stored; nothing is executed with a tiny model's command.
    match hub.propose(task.id).await.unwrap() {
        Proposed::Command(p) => {
            assert!(!p.command.trim().is_empty());
            let usage = p.usage.expect("the real server reports token usage");
            assert!(
                usage.prompt_tokens > 50,
                "the prompt carried the task: {usage:?}"
            );
            let stored = hub.get_task(task.id).await.unwrap();
            assert_eq!(stored.status, TaskStatus::InProgress);
            assert_eq!(stored.proposal.unwrap().command, p.command);
            eprintln!("real model proposed: {} ({})", p.command, p.reason);
        }
        Proposed::Done(c) => {
            // Schema-valid too: the model judged the task done; nothing is pending.
            eprintln!("real model said done: {}", c.summary);
            assert!(hub.get_task(task.id).await.unwrap().proposal.is_none());
        }
    }
}

/// Decomposition with a real model: every plan it returns for ten prompts is valid (after
/// repair), or the decomposer fails with the typed `InvalidPlan` error carrying the raw answer.
#[tokio::test]
async fn decomposition_with_a_real_model_is_valid_or_a_typed_error() {
    use ananta_core::decompose::LlmDecomposer;
    use ananta_core::{DecomposeError, Decomposer};
    let Some(url) = server_url() else { return };
    let llm = OpenAiProvider::llama_cpp(&url)
        .timeout(REAL_MODEL_TIMEOUT)
        .build()
        .unwrap();
    let decomposer = LlmDecomposer::new(Arc::new(llm))
        .repair_attempts(1)
        .max_tokens(384)
        .agents([
            "researcher: finds and collects information",
            "summariser: writes short summaries",
            "translator: translates between German and English",
        ]);
    let prompts = [
        "Research the current AI trends, summarise them, then translate the summary into English.",
        "Research topic A and topic B, then compare them.",
        "List the files in the repository.",
        "Write a README for a small Rust library.",
        "Translate 'Guten Morgen' into English.",
        "Find the three largest files in the project and report their sizes.",
        "Review the pull request and summarise the review.",
        "Analyse the sales CSV and plot the monthly totals.",
        "Set up a Python virtual environment and install requests.",
        "Summarise the changelog, then translate the summary into German.",
    ];
    let (mut valid, mut typed) = (0, 0);
    for prompt in prompts {
        match decomposer.decompose(prompt.to_string()).await {
            Ok(plan) => {
                assert!(
                    plan.problems().is_empty(),
                    "{prompt}: {:?}",
                    plan.problems()
                );
                assert!(plan.waves().is_some() && plan.critical_path().is_some());
                valid += 1;
            }
            Err(DecomposeError::InvalidPlan { problems, raw }) => {
                assert!(!problems.is_empty(), "{prompt}");
                eprintln!(
                    "{prompt}: invalid after repair: {problems:?} (raw {} bytes)",
                    raw.len()
                );
                typed += 1;
            }
            Err(other) => panic!("{prompt}: neither a plan nor InvalidPlan: {other}"),
        }
    }
    eprintln!("real-model decomposition: {valid} valid plans, {typed} typed failures of 10");
}
