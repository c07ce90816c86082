//! `OpenAiProvider` against a real OpenAI-compatible server: llama.cpp's `llama-server` with
//! SmolLM2-135M, started by `scripts/llm-server.sh` (which `scripts/test.sh` and CI run).
//!
//! The server's base URL comes from `ANANTA_TEST_OPENAI_URL`. Without it these tests print that
//! they did not run and return; with `ANANTA_REQUIRE_REAL_LLM=1` (set by `scripts/test.sh`)
//! a missing URL fails them instead, so CI cannot skip them silently.
#![cfg(feature = "openai")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::time::{Duration, Instant};

use ananta_core::LlmProvider;
use ananta_core::llm::{ChatMessage, ChatRequest, FinishReason};
use ananta_llm::{OpenAiProvider, StructuredOutput};
use futures::StreamExt;

/// Per request: generous, because the one-slot server queues the requests of every test and a
/// loaded 2-core machine (a CI run at load average 11) answers slowly; nothing here depends on
/// how fast the model is.
const REAL_MODEL_TIMEOUT: Duration = Duration::from_secs(900);

fn server() -> Option<OpenAiProvider> {
    match std::env::var("ANANTA_TEST_OPENAI_URL") {
        Ok(url) if !url.trim().is_empty() => Some(
            OpenAiProvider::llama_cpp(url.trim())
                .timeout(REAL_MODEL_TIMEOUT)
                .build()
                .unwrap(),
        ),
        _ => {
            if std::env::var("ANANTA_REQUIRE_REAL_LLM").is_ok_and(|v| v == "1") {
                panic!("ANANTA_REQUIRE_REAL_LLM=1 but ANANTA_TEST_OPENAI_URL is not set");
            }
            eprintln!(
                "NOT RUN: real-LLM test skipped because ANANTA_TEST_OPENAI_URL is not set \
                 (run scripts/test.sh, or scripts/llm-server.sh start and export the URL)"
            );
            None
        }
    }
}

fn ask(text: &str) -> ChatRequest {
    ChatRequest::new(vec![ChatMessage::user(text)]).temperature(0.0)
}

#[tokio::test]
async fn completion() {
    let Some(llm) = server() else { return };
    let answer = llm
        .complete(ask("What is the capital of France?").max_tokens(24))
        .await
        .unwrap();
    assert!(!answer.content.trim().is_empty(), "{answer:?}");
    let usage = answer.usage.expect("llama.cpp reports usage");
    assert!(
        usage.prompt_tokens > 5 && usage.completion_tokens > 0,
        "{usage:?}"
    );
    assert!(matches!(
        answer.finish_reason,
        Some(FinishReason::Stop | FinishReason::Length)
    ));
}

#[tokio::test]
async fn streaming_delivers_chunks_before_the_end_and_reports_usage() {
    let Some(llm) = server() else { return };
    let started = Instant::now();
    let mut stream = llm
        .complete_stream(ask("Count from one to twenty in words.").max_tokens(64))
        .await
        .unwrap();
    let mut first_at = None;
    let mut text = String::new();
    let mut pieces = 0;
    let mut last = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        if !chunk.delta.is_empty() {
            pieces += 1;
            first_at.get_or_insert_with(|| started.elapsed());
            text.push_str(&chunk.delta);
        }
        last = Some(chunk);
    }
    let total = started.elapsed();
    let first_at = first_at.expect("at least one text chunk");
    assert!(pieces > 5, "{pieces} pieces: {text:?}");
    assert!(
        first_at < total,
        "first chunk at {first_at:?}, end at {total:?}"
    );
    let last = last.unwrap();
    let usage = last
        .usage
        .expect("usage on the last chunk (stream_options.include_usage)");
    assert!(
        usage.completion_tokens >= pieces as u64 / 2,
        "{usage:?} for {pieces} pieces"
    );
    assert!(last.finish_reason.is_some());
}

/// The shape of a Worker's proposal, bounded so a small model cannot ramble past the limit.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ProposalLike {
    #[schemars(length(max = 160))]
    reason: String,
    #[schemars(length(min = 1, max = 120))]
    command: String,
}

#[tokio::test]
async fn structured_output_parses_for_twenty_prompts() {
    let Some(llm) = server() else { return };
    let tasks = [
        "List the files in the current directory.",
        "Show the last 10 lines of server.log.",
        "Count the lines of every Rust file under src.",
        "Find all TODO comments in the project.",
        "Show the current git branch.",
        "Print the disk usage of the home directory.",
        "Create a directory named build.",
        "Show which process listens on port 8080.",
        "Print the contents of Cargo.toml.",
        "Run the unit tests with cargo.",
        "Show the last five git commits.",
        "Search for the word error in app.log, ignoring case.",
        "Print the current date and time.",
        "Show the size of the file data.csv.",
        "Compress the logs directory into logs.tar.gz.",
        "Show the environment variable PATH.",
        "List the running docker containers.",
        "Print the first 20 lines of README.md.",
        "Show free memory on this machine.",
        "Check the Python version installed.",
    ];
    let mut parsed = 0;
    let mut failures = Vec::new();
    for task in tasks {
        let request = ChatRequest::new(vec![
            ChatMessage::system(
                "You propose exactly one shell command for the user's task. Answer as JSON with \
                 the fields reason and command.",
            ),
            ChatMessage::user(task),
        ])
        .temperature(0.0)
        .max_tokens(512);
        match llm.complete_json::<ProposalLike>(request).await {
            Ok(_) => parsed += 1,
            Err(e) => failures.push(format!("{task}: {e:?}")),
        }
    }
    eprintln!("structured output: {parsed}/{} answers parsed", tasks.len());
    assert_eq!(parsed, tasks.len(), "failures: {failures:#?}");
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[tokio::test]
async fn embeddings_have_a_dimension_keep_order_and_rank_similar_texts_closer() {
    let Some(llm) = server() else { return };
    let texts: Vec<String> = [
        "The cat sat on the mat.",
        "A cat is sitting on a mat.",
        "Quarterly tax revenue rose by four percent.",
    ]
    .map(String::from)
    .to_vec();
    let batch = llm.embed(texts.clone()).await.unwrap();
    assert_eq!(batch.len(), 3);
    let dim = batch[0].len();
    assert!(dim >= 64, "dimension {dim}");
    assert!(
        batch
            .iter()
            .all(|v| v.len() == dim && v.iter().all(|x| x.is_finite()))
    );
    // Batch order: each vector is the one for its own input.
    for (i, text) in texts.iter().enumerate() {
        let single = llm.embed(vec![text.clone()]).await.unwrap().remove(0);
        let sim = cosine(&single, &batch[i]);
        assert!(
            sim > 0.99,
            "input {i}: batch vector differs from the single one ({sim})"
        );
    }
    let close = cosine(&batch[0], &batch[1]);
    let far = cosine(&batch[0], &batch[2]);
    eprintln!("cosine similar = {close:.3}, unrelated = {far:.3}");
    assert!(close > far, "similar {close} should exceed unrelated {far}");
}

#[tokio::test]
async fn health_reports_the_served_model() {
    let Some(llm) = server() else { return };
    let health = llm.health().await.unwrap();
    assert!(health.reachable);
    assert!(
        health
            .models
            .iter()
            .any(|m| m.to_lowercase().contains("smollm2")),
        "{:?}",
        health.models
    );
}
