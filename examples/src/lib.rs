//! # ananta-examples — runnable examples and a "downstream" library
//!
//! The examples (`cargo run --example quickstart`) show how a host wires Ananta. This small
//! library stands for a host's own code built on Ananta's traits; `tests/mocks.rs` unit-tests it
//! with `ananta_core::mocks`, the way a downstream project would.
//!
//! ```
//! use ananta_core::mocks::MockExecutor;
//! use ananta_core::exec::ExecOutcome;
//!
//! # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
//! let mut exec = MockExecutor::new();
//! exec.expect_run().returning(|_, _| Ok(ExecOutcome { exit_code: Some(0), ..Default::default() }));
//! assert!(ananta_examples::is_clean_worktree(&exec).await?);
//! # Ok::<(), ananta_core::Error>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use ananta_core::exec::ExecRequest;
use ananta_core::llm::{ChatMessage, ChatRequest};
use ananta_core::{Error, Executor, LlmProvider};

pub mod exec_cli;
pub mod suite;

/// Whether `git status --porcelain` reports nothing (exit code 0 and empty output).
pub async fn is_clean_worktree(exec: &dyn Executor) -> Result<bool, Error> {
    let outcome = exec
        .run(ExecRequest::new("git status --porcelain"), None)
        .await?;
    if !outcome.success() {
        return Err(Error::InvalidInput(format!(
            "git status failed: {}",
            outcome.summary_for_model(500)
        )));
    }
    Ok(outcome.stdout.trim().is_empty())
}

/// Asks the model for a one-line commit message for `diff`; the answer is trimmed to its
/// first line and must not be empty.
pub async fn commit_message(llm: &dyn LlmProvider, diff: &str) -> Result<String, Error> {
    let request = ChatRequest::new(vec![
        ChatMessage::system(
            "Write a one-line git commit message for the diff. Answer with the message only.",
        ),
        ChatMessage::user(diff),
    ])
    .temperature(0.0);
    let answer = llm.complete(request).await?;
    let line = answer
        .content
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    if line.is_empty() {
        return Err(Error::InvalidInput(
            "the model returned no commit message".into(),
        ));
    }
    Ok(line.trim_matches('"').to_string())
}

/// The README's code blocks, compiled and run as doctests so the README stays true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
