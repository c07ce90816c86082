//! The "downstream" functions of this crate, tested with ananta-core's mocks.
#![allow(clippy::unwrap_used)]

use ananta_core::exec::ExecOutcome;
use ananta_core::llm::{ChatResponse, Role};
use ananta_core::mocks::{MockExecutor, MockLlmProvider};
use ananta_core::{Error, ExecError, LlmError};
use ananta_examples::{commit_message, is_clean_worktree};

fn outcome(code: i32, stdout: &str) -> ExecOutcome {
    ExecOutcome {
        exit_code: Some(code),
        stdout: stdout.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn clean_dirty_and_failing_worktrees() {
    let mut exec = MockExecutor::new();
    let mut seq = mockall::Sequence::new();
    exec.expect_run()
        .times(1)
        .in_sequence(&mut seq)
        .withf(|req, _| req.command == "git status --porcelain")
        .returning(|_, _| Ok(outcome(0, "")));
    exec.expect_run()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(outcome(0, " M src/lib.rs\n")));
    exec.expect_run()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(outcome(128, "fatal: not a git repository")));
    exec.expect_run()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Err(ExecError::Spawn("EAGAIN".into())));

    assert!(is_clean_worktree(&exec).await.unwrap());
    assert!(!is_clean_worktree(&exec).await.unwrap());
    assert!(
        matches!(is_clean_worktree(&exec).await, Err(Error::InvalidInput(m)) if m.contains("128"))
    );
    let err = is_clean_worktree(&exec).await.unwrap_err();
    assert!(
        err.is_transient(),
        "a spawn failure may succeed later: {err}"
    );
}

#[tokio::test]
async fn commit_message_prompt_and_answers() {
    let mut llm = MockLlmProvider::new();
    llm.expect_complete()
        .withf(|req| {
            req.messages.len() == 2
                && req.messages[0].role == Role::System
                && req.messages[1].content.contains("+fn main")
                && req.temperature == Some(0.0)
        })
        .times(1)
        .returning(|_| Ok(ChatResponse::text("\n\"Add the main function\"\nextra")));
    assert_eq!(
        commit_message(&llm, "+fn main() {}").await.unwrap(),
        "Add the main function"
    );

    let mut empty = MockLlmProvider::new();
    empty
        .expect_complete()
        .returning(|_| Ok(ChatResponse::text("  \n ")));
    assert!(matches!(
        commit_message(&empty, "x").await,
        Err(Error::InvalidInput(_))
    ));

    let mut down = MockLlmProvider::new();
    down.expect_complete()
        .returning(|_| Err(LlmError::Unreachable("connection refused".into())));
    assert!(matches!(
        commit_message(&down, "x").await,
        Err(Error::Llm(LlmError::Unreachable(_)))
    ));
}
