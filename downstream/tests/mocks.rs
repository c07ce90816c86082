//! Every ananta-core mock, used from outside the Ananta workspace.
#![allow(clippy::unwrap_used)]

use ananta_core::mocks::{
    MockAgentClient, MockAgentRegistry, MockDecomposer, MockExecutor, MockLlmProvider,
    MockTaskStore,
};
use ananta_core::{AgentError, AgentId, Error, LlmError, NewTask, Plan, PlannedTask, Proposal, Proposed, TaskStatus};
use ananta_core::exec::ExecOutcome;
use ananta_core::llm::ChatResponse;
use ananta_core::registry::AgentMatch;
use ananta_downstream_check::*;

#[tokio::test]
async fn llm_mock() {
    let mut llm = MockLlmProvider::new();
    llm.expect_complete().times(1).returning(|req| {
        assert_eq!(req.messages[0].content, "build it");
        Ok(ChatResponse::text("COMMAND: cargo build"))
    });
    assert_eq!(
        first_command(&llm, "build it").await.unwrap().as_deref(),
        Some("cargo build")
    );

    let mut failing = MockLlmProvider::new();
    failing
        .expect_complete()
        .returning(|_| Err(LlmError::RateLimited { retry_after: None }));
    let err = first_command(&failing, "x").await.unwrap_err();
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn executor_mock() {
    let mut exec = MockExecutor::new();
    exec.expect_run()
        .withf(|req, sink| req.command == "git status" && sink.is_none())
        .returning(|_, _| {
            Ok(ExecOutcome {
                exit_code: Some(0),
                stdout: "clean".into(),
                ..Default::default()
            })
        });
    exec.expect_run()
        .withf(|req, _| req.command == "false")
        .returning(|_, _| {
            Ok(ExecOutcome {
                exit_code: Some(1),
                ..Default::default()
            })
        });
    assert_eq!(run_checked(&exec, "git status").await.unwrap(), "clean");
    assert!(matches!(
        run_checked(&exec, "false").await,
        Err(Error::InvalidInput(_))
    ));
}

#[tokio::test]
async fn store_mock() {
    let mut store = MockTaskStore::new();
    store
        .expect_list_tasks()
        .withf(|f| f.statuses == [TaskStatus::Todo, TaskStatus::InProgress])
        .returning(|_| {
            Ok(vec![
                NewTask::new("a").into_task().unwrap(),
                NewTask::new("b").into_task().unwrap(),
            ])
        });
    assert_eq!(open_tasks(&store).await.unwrap(), 2);
}

#[tokio::test]
async fn registry_mock() {
    let mut registry = MockAgentRegistry::new();
    registry.expect_best_match().returning(|_, k| {
        assert_eq!(k, 1);
        Ok(vec![AgentMatch {
            agent: AgentId::new("rustacean").unwrap(),
            score: 0.8,
        }])
    });
    assert_eq!(
        pick_agent(&registry, "fix the borrow checker error", 0.5)
            .await
            .unwrap()
            .unwrap()
            .as_str(),
        "rustacean"
    );
    assert_eq!(pick_agent(&registry, "anything", 0.9).await.unwrap(), None);
}

#[tokio::test]
async fn decomposer_mock() {
    let task = |id: &str, deps: &[&str]| PlannedTask {
        id: id.into(),
        description: format!("step {id}"),
        dependencies: deps.iter().map(|d| d.to_string()).collect(),
        priority: None,
        agent_hint: None,
    };
    let mut decomposer = MockDecomposer::new();
    decomposer.expect_decompose().returning(move |_| {
        Ok(Plan {
            reasoning: "split".into(),
            tasks: vec![task("a", &[]), task("b", &["a"]), task("c", &["a"])],
        })
    });
    assert_eq!(plan_depth(&decomposer, "ship it").await.unwrap(), 2);
}

#[tokio::test]
async fn agent_client_mock() {
    let mut agent = MockAgentClient::new();
    agent.expect_propose().returning(|req| {
        Ok(Proposed::Command(Proposal::new(
            "look",
            format!("echo {}", req.task.title),
        )))
    });
    let task = NewTask::new("hello").into_task().unwrap();
    assert_eq!(preview(&agent, task.clone()).await.unwrap(), "echo hello");

    let mut down = MockAgentClient::new();
    down.expect_propose()
        .returning(|_| Err(AgentError::Unreachable("connection refused".into())));
    assert!(preview(&down, task).await.unwrap_err().is_transient());
}
