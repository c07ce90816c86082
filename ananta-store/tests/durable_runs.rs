//! Durable orchestration runs on every store: a Hub "crashes" mid-run (its run is dropped
//! while one task is running), a new Hub on the same store resumes the run, and finished tasks
//! are not run again while the running one is.
//!
//! Runs on `MemoryStore`, `SqliteStore` (a file) and `PostgresStore` (a database of its own on
//! the server named by `ANANTA_PG_URL`; `NOT RUN` without it unless `ANANTA_REQUIRE_PG=1`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ananta_core::agent::AgentCard;
use ananta_core::decompose::{Plan, PlannedTask};
use ananta_core::event::EventKind;
use ananta_core::ids::AgentId;
use ananta_core::log::{Direction, LogEntry, LogQuery};
use ananta_core::orchestrate::{NODE_TAG, OUTPUT_LOG_KIND, RUN_TAG};
use ananta_core::orchestrate::{OrchestrateError, RunOptions};
use ananta_core::pipeline::{NodeAgent, NodeInput, NodeOutput, NodeStatus};
use ananta_core::store::TaskStore;
use ananta_core::task::{NewTask, TaskFilter, TaskStatus};
use ananta_core::{AgentError, CancellationToken, Hub};
use ananta_store::MemoryStore;

#[cfg(feature = "postgres")]
mod pg_support;

/// Counts calls per planned task; blocks (until cancelled) on the tasks in `block`.
struct Counting {
    calls: Arc<Mutex<HashMap<String, u32>>>,
    block: Vec<&'static str>,
}

#[async_trait::async_trait]
impl NodeAgent for Counting {
    async fn run(
        &self,
        input: NodeInput,
        cancel: CancellationToken,
    ) -> Result<NodeOutput, AgentError> {
        *self
            .calls
            .lock()
            .unwrap()
            .entry(input.task_id.clone())
            .or_default() += 1;
        if self.block.contains(&input.task_id.as_str()) {
            cancel.cancelled().await;
            return Err(AgentError::Cancelled);
        }
        let context = input.context.replace('\n', " ");
        Ok(NodeOutput::text(format!("{}<{context}>", input.task_id)))
    }
}

fn task(id: &str, deps: &[&str]) -> PlannedTask {
    PlannedTask {
        id: id.into(),
        description: format!("step {id}"),
        dependencies: deps.iter().map(|d| d.to_string()).collect(),
        priority: None,
        agent_hint: None,
    }
}

/// a → b → c, d on its own, e after c and d.
fn plan() -> Plan {
    Plan {
        reasoning: "a chain and a side branch joining at the end".into(),
        tasks: vec![
            task("a", &[]),
            task("b", &["a"]),
            task("c", &["b"]),
            task("d", &[]),
            task("e", &["c", "d"]),
        ],
    }
}

fn agent_id() -> AgentId {
    AgentId::new("worker").unwrap()
}

async fn hub_with(
    store: Arc<dyn TaskStore>,
    block: Vec<&'static str>,
) -> (Hub, Arc<Mutex<HashMap<String, u32>>>) {
    let hub = Hub::builder().store(store).build().unwrap();
    let calls: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    hub.add_node_agent(
        AgentCard::in_process(agent_id()).description("does every step"),
        Arc::new(Counting {
            calls: calls.clone(),
            block,
        }),
    )
    .await
    .unwrap();
    (hub, calls)
}

/// Waits until `pred` has seen every event it wants.
async fn wait_for(
    rx: &mut tokio::sync::broadcast::Receiver<ananta_core::Event>,
    mut want: Vec<(&str, &str)>,
) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while !want.is_empty() {
            let event = rx.recv().await.unwrap();
            let seen = match &event.kind {
                EventKind::NodeStarted { node, .. } => Some(("node_started", node.clone())),
                EventKind::NodeCompleted { node, .. } => Some(("node_completed", node.clone())),
                _ => None,
            };
            if let Some((kind, node)) = seen {
                want.retain(|(k, n)| !(*k == kind && *n == node));
            }
        }
    })
    .await
    .expect("the events came");
}

async fn resume_after_a_crash(store: Arc<dyn TaskStore>) {
    // --- the first hub: a and d finish, b is running when it "crashes".
    let (hub1, calls1) = hub_with(store.clone(), vec!["b"]).await;
    let mut events = hub1.subscribe();
    let running = tokio::spawn({
        let hub1 = hub1.clone();
        async move {
            hub1.run_plan("chain with a side branch", plan(), RunOptions::default())
                .await
        }
    });
    wait_for(
        &mut events,
        vec![
            ("node_completed", "a"),
            ("node_completed", "d"),
            ("node_started", "b"),
        ],
    )
    .await;
    // b's agent is at work (the event comes just before the call).
    tokio::time::timeout(Duration::from_secs(20), async {
        while !calls1.lock().unwrap().contains_key("b") {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("b started");
    running.abort(); // the crash: nothing of the run's future runs any more
    assert!(running.await.unwrap_err().is_cancelled());
    drop(hub1);
    let calls = calls1.lock().unwrap().clone();
    assert_eq!(
        calls,
        HashMap::from([("a".into(), 1), ("b".into(), 1), ("d".into(), 1)])
    );

    // The board shows where it stopped.
    let runs = store
        .list_tasks(TaskFilter {
            tag: Some(RUN_TAG.into()),
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run.status, TaskStatus::InProgress);
    let nodes = store
        .list_tasks(TaskFilter {
            tag: Some(NODE_TAG.into()),
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    let by_title: HashMap<&str, &ananta_core::Task> =
        nodes.iter().map(|t| (t.title.as_str(), t)).collect();
    assert_eq!(by_title.len(), 5, "every planned task is on the board");
    for (title, status) in [
        ("a", TaskStatus::Done),
        ("b", TaskStatus::InProgress),
        ("c", TaskStatus::Backlog),
        ("d", TaskStatus::Done),
        ("e", TaskStatus::Backlog),
    ] {
        let node = by_title[title];
        assert_eq!(node.status, status, "task {title}");
        assert_eq!(
            node.run_id,
            Some(run.id),
            "task {title} is linked to its run"
        );
        assert_eq!(node.assigned_agent, Some(agent_id()));
    }
    assert_eq!(
        by_title["e"].depends_on,
        vec![by_title["c"].id, by_title["d"].id]
    );
    assert_eq!(by_title["b"].depends_on, vec![by_title["a"].id]);
    let a_logs = store.logs(LogQuery::task(by_title["a"].id)).await.unwrap();
    assert!(
        a_logs
            .iter()
            .any(|e| e.kind == OUTPUT_LOG_KIND && e.payload["text"] == "a<>"),
        "a's output is stored on it: {a_logs:?}"
    );

    // --- a new hub on the same store, whose agents are not registered yet.
    let hub2 = Hub::builder().store(store.clone()).build().unwrap();
    let unfinished = hub2.unfinished_runs().await.unwrap();
    assert_eq!(
        unfinished.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![run.id]
    );
    let missing = hub2.resume_run(run.id, RunOptions::default()).await;
    assert!(
        matches!(&missing, Err(OrchestrateError::NoNodeAgent { agent, .. }) if *agent == agent_id()),
        "{missing:?}"
    );
    assert_eq!(
        store.get_task(run.id).await.unwrap().status,
        TaskStatus::InProgress,
        "a run whose agents are missing stays resumable"
    );

    // --- the agents are back: resume.
    let (hub2, calls2) = hub_with(store.clone(), vec![]).await;
    let mut events = hub2.subscribe();
    let result = hub2
        .resume_run(run.id, RunOptions::default())
        .await
        .unwrap();
    assert!(result.resumed);
    let calls = calls2.lock().unwrap().clone();
    assert_eq!(
        calls,
        HashMap::from([("b".into(), 1), ("c".into(), 1), ("e".into(), 1)]),
        "finished tasks are not run again; the running one and the rest are"
    );
    assert_eq!(
        result.outcome.output,
        "e<Output of task c: c<Output of task b: b<Output of task a: a<>>>  Output of task d: d<>>",
        "stored outputs are handed on as if nothing happened"
    );
    let trace: HashMap<&str, (bool, u32, &NodeStatus)> = result
        .outcome
        .trace
        .iter()
        .map(|t| (t.task_id.as_str(), (t.resumed, t.attempts, &t.status)))
        .collect();
    assert_eq!(trace["a"], (true, 0, &NodeStatus::Done));
    assert_eq!(trace["d"], (true, 0, &NodeStatus::Done));
    assert_eq!(trace["b"], (false, 1, &NodeStatus::Done));
    assert_eq!(trace["e"], (false, 1, &NodeStatus::Done));
    let first = events.recv().await.unwrap();
    assert!(
        matches!(
            first.kind,
            EventKind::RunStarted {
                run_id,
                tasks: 5,
                finished: 2,
                resumed: true
            } if run_id == run.id
        ),
        "{first:?}"
    );

    // Everything is done on the board; the run carries its output.
    let run_now = store.get_task(run.id).await.unwrap();
    assert_eq!(run_now.status, TaskStatus::Done);
    for node in store
        .list_tasks(TaskFilter {
            tag: Some(NODE_TAG.into()),
            ..TaskFilter::default()
        })
        .await
        .unwrap()
    {
        assert_eq!(node.status, TaskStatus::Done, "task {}", node.title);
    }
    let run_logs = store.logs(LogQuery::task(run.id)).await.unwrap();
    assert!(
        run_logs
            .iter()
            .any(|e| e.kind == OUTPUT_LOG_KIND && e.payload["output"] == result.outcome.output)
    );
    assert!(hub2.unfinished_runs().await.unwrap().is_empty());
    let again = hub2.resume_run(run.id, RunOptions::default()).await;
    assert!(
        matches!(
            again,
            Err(OrchestrateError::Ended {
                status: TaskStatus::Done,
                ..
            })
        ),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_a_crash_in_memory() {
    resume_after_a_crash(Arc::new(MemoryStore::new())).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_a_crash_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("board.db");
    let store = ananta_store::SqliteStore::open(&path).await.unwrap();
    resume_after_a_crash(Arc::new(store)).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_a_crash_on_postgres() {
    let Some(admin) = pg_support::server("resume_after_a_crash_on_postgres") else {
        return;
    };
    let db = pg_support::TestDb::create(&admin).await;
    let store = ananta_store::PostgresStore::connect(&db.url).await.unwrap();
    resume_after_a_crash(Arc::new(store)).await;
}

#[tokio::test]
async fn resume_refuses_what_it_cannot_resume() {
    let store: Arc<dyn TaskStore> = Arc::new(MemoryStore::new());
    let (hub, _) = hub_with(store.clone(), vec![]).await;

    let plain = hub.create_task(NewTask::new("not a run")).await.unwrap();
    let err = hub.resume_run(plain.id, RunOptions::default()).await;
    assert!(
        matches!(err, Err(OrchestrateError::NotARun(id)) if id == plain.id),
        "{err:?}"
    );

    // A run that stopped before its plan was stored cannot be resumed, and is marked failed.
    let early = hub
        .create_task(
            NewTask::new("Run: interrupted")
                .status(TaskStatus::InProgress)
                .tag(RUN_TAG),
        )
        .await
        .unwrap();
    let err = hub.resume_run(early.id, RunOptions::default()).await;
    assert!(
        matches!(&err, Err(OrchestrateError::Unresumable { run_id, .. }) if *run_id == early.id),
        "{err:?}"
    );
    assert_eq!(
        hub.get_task(early.id).await.unwrap().status,
        TaskStatus::Failed
    );

    // A garbled record: the same.
    let garbled = hub
        .create_task(
            NewTask::new("Run: garbled")
                .status(TaskStatus::InProgress)
                .tag(RUN_TAG),
        )
        .await
        .unwrap();
    store
        .append_log(
            LogEntry::new(
                Direction::Out,
                ananta_core::orchestrate::PLAN_LOG_KIND,
                serde_json::json!({"plan": 42}),
            )
            .task(garbled.id),
        )
        .await
        .unwrap();
    let err = hub.resume_run(garbled.id, RunOptions::default()).await;
    assert!(
        matches!(err, Err(OrchestrateError::Unresumable { .. })),
        "{err:?}"
    );

    // A readable record whose assignments do not line up with its plan: the same.
    let mismatched = hub
        .create_task(
            NewTask::new("Run: mismatched")
                .status(TaskStatus::InProgress)
                .tag(RUN_TAG),
        )
        .await
        .unwrap();
    let record = ananta_core::orchestrate::RunRecord {
        plan: plan(),
        assignments: vec![],
    };
    store
        .append_log(
            LogEntry::new(
                Direction::Out,
                ananta_core::orchestrate::PLAN_LOG_KIND,
                serde_json::to_value(&record).unwrap(),
            )
            .task(mismatched.id),
        )
        .await
        .unwrap();
    let err = hub.resume_run(mismatched.id, RunOptions::default()).await;
    assert!(
        matches!(&err, Err(OrchestrateError::Unresumable { reason, .. }) if reason.contains("do not match")),
        "{err:?}"
    );
    assert_eq!(
        hub.get_task(mismatched.id).await.unwrap().status,
        TaskStatus::Failed
    );

    let unknown = ananta_core::TaskId::new();
    let err = hub.resume_run(unknown, RunOptions::default()).await;
    assert!(
        matches!(&err, Err(OrchestrateError::Hub(ananta_core::Error::Store(ananta_core::error::StoreError::TaskNotFound(id)))) if *id == unknown),
        "{err:?}"
    );
}
