//! `Hub::orchestrate` end to end on a `MemoryStore`: a scripted model plans, the tasks are
//! matched to node agents, the run and its tasks appear on the board, node and run events are
//! published in order; pins and hints; retries, failures and cancellation as the board and
//! the event bus show them; and the typed errors of runs that cannot start. (Resuming after a
//! crash, on every store, is in `ananta-store/tests/durable_runs.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ananta_core::decompose::{LlmDecomposer, Plan, PlannedTask};
use ananta_core::error::StoreError;
use ananta_core::error::{DecomposeError, RegistryError};
use ananta_core::llm::ChatResponse;
use ananta_core::matching::MatchReason;
use ananta_core::orchestrate::OUTPUT_LOG_KIND;
use ananta_core::orchestrate::{NODE_TAG, RUN_TAG};
use ananta_core::orchestrate::{OrchestrateError, RunOptions};
use ananta_core::pipeline::{
    FailurePolicy, NodeAgent, NodeInput, NodeOutput, PipelineError, PipelineOptions,
};
use ananta_core::store::Claim;
use ananta_core::{
    AgentCard, AgentError, AgentId, CancellationToken, Event, EventKind, Hub, LogEntry, LogQuery,
    StepRecord, Task, TaskFilter, TaskId, TaskStatus, TaskStore, TaskUpdate, Template, TemplateId,
    TemplateUpdate,
};
use ananta_llm::ScriptedProvider;
use ananta_store::MemoryStore;

/// Answers with its name, the task and the context it got; fails or blocks as told.
struct Agent {
    name: &'static str,
    /// Transient failures left before it answers.
    flaky: AtomicU32,
    /// Fails for good on these tasks.
    fail: Vec<&'static str>,
    /// Blocks (until cancelled) on these tasks.
    block: Vec<&'static str>,
    calls: Arc<Mutex<Vec<String>>>,
}

impl Agent {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            flaky: AtomicU32::new(0),
            fail: vec![],
            block: vec![],
            calls: Arc::default(),
        }
    }
}

#[async_trait::async_trait]
impl NodeAgent for Agent {
    async fn run(
        &self,
        input: NodeInput,
        cancel: CancellationToken,
    ) -> Result<NodeOutput, AgentError> {
        self.calls.lock().unwrap().push(input.task_id.clone());
        if self
            .flaky
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(AgentError::Unreachable("flaky".into()));
        }
        if self.fail.contains(&input.task_id.as_str()) {
            return Err(AgentError::Rejected {
                status: 400,
                message: "cannot do this".into(),
            });
        }
        if self.block.contains(&input.task_id.as_str()) {
            cancel.cancelled().await;
            return Err(AgentError::Cancelled);
        }
        Ok(NodeOutput::text(format!(
            "{}:{}[{}]",
            self.name,
            input.task_id,
            input.context.replace('\n', " ")
        )))
    }
}

const CARDS: &[(&str, &str)] = &[
    (
        "researcher",
        "Researches topics, finds sources and current trends, collects facts",
    ),
    (
        "summariser",
        "Summarises findings and long texts into short summaries",
    ),
    ("translator", "Translates text between German and English"),
];

async fn hub_with(agents: Vec<Agent>, planner: Option<ScriptedProvider>) -> Hub {
    let mut builder = Hub::builder().store(Arc::new(MemoryStore::new()));
    if let Some(planner) = planner {
        builder = builder.decomposer(Arc::new(LlmDecomposer::new(Arc::new(planner))));
    }
    let hub = builder.build().unwrap();
    for agent in agents {
        let description = CARDS
            .iter()
            .find(|(n, _)| *n == agent.name)
            .map_or("general work", |(_, d)| *d);
        let card =
            AgentCard::in_process(AgentId::new(agent.name).unwrap()).description(description);
        hub.add_node_agent(card, Arc::new(agent)).await.unwrap();
    }
    hub
}

fn three_agents() -> Vec<Agent> {
    CARDS.iter().map(|(n, _)| Agent::new(n)).collect()
}

fn task(id: &str, description: &str, deps: &[&str]) -> PlannedTask {
    PlannedTask {
        id: id.into(),
        description: description.into(),
        dependencies: deps.iter().map(|d| d.to_string()).collect(),
        priority: None,
        agent_hint: None,
    }
}

fn drain(rx: &mut tokio::sync::broadcast::Receiver<Event>) -> Vec<EventKind> {
    std::iter::from_fn(|| rx.try_recv().ok())
        .map(|e| e.kind)
        .collect()
}

/// The position of the first event matching `pred`.
fn at(events: &[EventKind], what: &str, pred: impl Fn(&EventKind) -> bool) -> usize {
    events
        .iter()
        .position(pred)
        .unwrap_or_else(|| panic!("no {what} event in {events:#?}"))
}

#[tokio::test]
async fn orchestrate_runs_a_planned_diamond_on_the_board() {
    let planner = ScriptedProvider::from_fn(|_| {
        Ok(ChatResponse::text(
            r#"{"reasoning": "two researches in parallel, then a summary, then a translation",
                "tasks": [
                  {"id": "research_rust", "description": "Research the current trends of the Rust language"},
                  {"id": "research_go", "description": "Research the current trends of the Go language"},
                  {"id": "summary", "description": "Summarise the findings into a short summary", "dependencies": ["research_rust", "research_go"]},
                  {"id": "english", "description": "Translate the German summary into English", "dependencies": ["summary"]}
                ]}"#,
        ))
    });
    let hub = hub_with(three_agents(), Some(planner)).await;
    let mut rx = hub.subscribe();
    let prompt = "Research Rust and Go, summarise, then translate the summary into English.";
    let result = hub.orchestrate(prompt).await.unwrap();

    let agents: HashMap<&str, &str> = result
        .assignments
        .iter()
        .map(|a| (a.node.as_str(), a.agent.as_str()))
        .collect();
    assert_eq!(
        agents,
        HashMap::from([
            ("research_rust", "researcher"),
            ("research_go", "researcher"),
            ("summary", "summariser"),
            ("english", "translator"),
        ])
    );
    assert!(
        result
            .assignments
            .iter()
            .all(|a| a.reason == MatchReason::BestMatch
                && a.score > 0.1
                && a.embedder == "lexical")
    );
    assert_eq!(
        result.outcome.output,
        "translator:english[Output of task summary: summariser:summary[Output of task research_rust: researcher:research_rust[]  Output of task research_go: researcher:research_go[]]]"
    );
    assert!(!result.resumed);

    // The board: the run (done, its prompt as description) and its four tasks.
    let run = hub.get_task(result.run_id).await.unwrap();
    assert_eq!(run.status, TaskStatus::Done);
    assert_eq!(run.description, prompt);
    assert!(run.tags.contains(&RUN_TAG.to_string()));
    let tasks = result.tasks();
    for (node, task_id) in &tasks {
        let t = hub.get_task(*task_id).await.unwrap();
        assert_eq!(t.status, TaskStatus::Done, "{node}");
        assert_eq!(t.title, *node);
        assert_eq!(t.run_id, Some(run.id));
        assert!(t.tags.contains(&NODE_TAG.to_string()));
        assert_eq!(
            t.assigned_agent.as_ref().map(AgentId::as_str),
            Some(agents[node])
        );
    }
    let summary = hub.get_task(tasks["summary"]).await.unwrap();
    assert_eq!(
        summary.depends_on,
        vec![tasks["research_rust"], tasks["research_go"]]
    );
    let listed = hub
        .list_tasks(TaskFilter {
            tag: Some(NODE_TAG.into()),
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 4);
    assert_eq!(hub.run_record(run.id).await.unwrap().plan, result.plan);

    // The events: the run starts first and finishes last; every task starts, then completes,
    // before anything depending on it starts.
    let events = drain(&mut rx);
    let started = at(
        &events,
        "run_started",
        |e| matches!(e, EventKind::RunStarted { run_id, tasks: 4, finished: 0, resumed: false } if *run_id == run.id),
    );
    let finished = at(
        &events,
        "run_finished",
        |e| matches!(e, EventKind::RunFinished { run_id, status: TaskStatus::Done, error: None } if *run_id == run.id),
    );
    let node_started = |name: &str| {
        at(
            &events,
            "node_started",
            |e| matches!(e, EventKind::NodeStarted { node, run_id, .. } if node == name && *run_id == run.id),
        )
    };
    let node_completed = |name: &str| {
        at(
            &events,
            "node_completed",
            |e| matches!(e, EventKind::NodeCompleted { node, attempts: 1, .. } if node == name),
        )
    };
    for node in ["research_rust", "research_go", "summary", "english"] {
        assert!(started < node_started(node));
        assert!(node_started(node) < node_completed(node));
        assert!(node_completed(node) < finished);
    }
    assert!(node_completed("research_rust") < node_started("summary"));
    assert!(node_completed("research_go") < node_started("summary"));
    assert!(node_completed("summary") < node_started("english"));
    let names: Vec<&str> = events.iter().map(EventKind::name).collect();
    assert_eq!(names.iter().filter(|n| **n == "task_created").count(), 5);
    assert!(events.iter().all(|e| e.task_id().is_some()));
}

#[tokio::test]
async fn pins_and_hints_choose_the_agent() {
    let hub = hub_with(three_agents(), None).await;
    let mut hinted = task("research", "Research the current AI trends", &[]);
    hinted.agent_hint = Some("translator".into());
    let mut unknown_hint = task("more", "Research more trends", &[]);
    unknown_hint.agent_hint = Some("nobody".into());
    let plan = Plan {
        reasoning: String::new(),
        tasks: vec![
            hinted,
            unknown_hint,
            task("summary", "Summarise the trends", &["research", "more"]),
        ],
    };
    let options = RunOptions::default().pin("summary", AgentId::new("researcher").unwrap());
    let result = hub.run_plan("trends", plan.clone(), options).await.unwrap();
    let by_node: HashMap<&str, (&str, &MatchReason)> = result
        .assignments
        .iter()
        .map(|a| (a.node.as_str(), (a.agent.as_str(), &a.reason)))
        .collect();
    assert_eq!(
        by_node["research"],
        ("translator", &MatchReason::Pinned),
        "a hint naming an agent pins"
    );
    assert_eq!(
        by_node["more"],
        ("researcher", &MatchReason::BestMatch),
        "an unknown hint is ignored"
    );
    assert_eq!(by_node["summary"], ("researcher", &MatchReason::Pinned));

    // A pin that cannot be honoured: a typed error, and nothing on the board.
    let before = hub.list_tasks(TaskFilter::default()).await.unwrap().len();
    let options = RunOptions::default().pin("summary", AgentId::new("ghost").unwrap());
    let err = hub.run_plan("trends", plan, options).await.unwrap_err();
    assert!(
        matches!(&err, OrchestrateError::Match { task, source: RegistryError::NotFound(_) } if task == "summary"),
        "{err:?}"
    );
    assert_eq!(
        hub.list_tasks(TaskFilter::default()).await.unwrap().len(),
        before
    );
}

#[tokio::test]
async fn retries_and_failures_show_on_the_board() {
    let mut researcher = Agent::new("researcher");
    researcher.flaky = AtomicU32::new(1);
    let mut summariser = Agent::new("summariser");
    summariser.fail = vec!["summary"];
    let hub = hub_with(vec![researcher, summariser, Agent::new("translator")], None).await;
    let mut rx = hub.subscribe();
    let plan = Plan {
        reasoning: String::new(),
        tasks: vec![
            task(
                "research",
                "Research the current AI trends and collect facts",
                &[],
            ),
            task(
                "summary",
                "Summarise the findings into a short summary",
                &["research"],
            ),
            task(
                "english",
                "Translate the summary into English",
                &["summary"],
            ),
            task("other", "Translate a German greeting into English", &[]),
        ],
    };
    let options = RunOptions::default().pipeline(PipelineOptions {
        backoff: Duration::from_millis(1),
        failure: FailurePolicy::FinishIndependent,
        ..PipelineOptions::default()
    });
    let err = hub.run_plan("trends", plan, options).await.unwrap_err();
    let OrchestrateError::Pipeline {
        run_id,
        source: PipelineError::Failed { task, partial, .. },
    } = err
    else {
        panic!("{err:?}");
    };
    assert_eq!(task, "summary");
    let outputs: Vec<&str> = partial.outputs.keys().map(String::as_str).collect();
    assert_eq!(
        outputs,
        ["other", "research"],
        "the independent branch finished"
    );

    let record = hub.run_record(run_id).await.unwrap();
    let id = |node: &str| {
        record
            .assignments
            .iter()
            .find(|a| a.node == node)
            .unwrap()
            .task_id
    };
    for (node, status) in [
        ("research", TaskStatus::Done),
        ("summary", TaskStatus::Failed),
        ("english", TaskStatus::Cancelled),
        ("other", TaskStatus::Done),
    ] {
        assert_eq!(
            hub.get_task(id(node)).await.unwrap().status,
            status,
            "{node}"
        );
    }
    assert_eq!(
        hub.get_task(run_id).await.unwrap().status,
        TaskStatus::Failed
    );
    assert!(
        hub.unfinished_runs().await.unwrap().is_empty(),
        "a failed run is not resumed"
    );

    let events = drain(&mut rx);
    at(
        &events,
        "node_retried",
        |e| matches!(e, EventKind::NodeRetried { node, attempt: 1, error, .. } if node == "research" && error.contains("flaky")),
    );
    at(
        &events,
        "node_completed",
        |e| matches!(e, EventKind::NodeCompleted { node, attempts: 2, .. } if node == "research"),
    );
    at(
        &events,
        "node_failed",
        |e| matches!(e, EventKind::NodeFailed { node, error, .. } if node == "summary" && error.contains("cannot do this")),
    );
    at(&events, "run_finished", |e| {
        matches!(
            e,
            EventKind::RunFinished {
                status: TaskStatus::Failed,
                error: Some(_),
                ..
            }
        )
    });
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, EventKind::NodeStarted { node, .. } if node == "english")),
        "a task after a failed one never starts"
    );
}

#[tokio::test]
async fn a_cancelled_run_is_cancelled_on_the_board() {
    let mut researcher = Agent::new("researcher");
    researcher.block = vec!["research"];
    let hub = hub_with(vec![researcher, Agent::new("summariser")], None).await;
    let mut rx = hub.subscribe();
    let cancel = CancellationToken::new();
    let plan = Plan {
        reasoning: String::new(),
        tasks: vec![
            task("research", "Research the current AI trends", &[]),
            task("summary", "Summarise the findings", &["research"]),
        ],
    };
    let options = RunOptions::default().pipeline(PipelineOptions {
        cancel: cancel.clone(),
        ..PipelineOptions::default()
    });
    let run = tokio::spawn({
        let hub = hub.clone();
        async move { hub.run_plan("trends", plan, options).await }
    });
    // Cancel once the research is running.
    let running = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(event) = rx.recv().await
                && let EventKind::NodeStarted { run_id, .. } = event.kind
            {
                break run_id;
            }
        }
    })
    .await
    .unwrap();
    assert!(
        hub.unfinished_runs().await.unwrap().is_empty(),
        "a run this hub is running is not an unfinished one"
    );
    let twice = hub.resume_run(running, RunOptions::default()).await;
    assert!(
        matches!(twice, Err(OrchestrateError::Active(id)) if id == running),
        "{twice:?}"
    );
    cancel.cancel();
    let err = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    let OrchestrateError::Pipeline {
        run_id,
        source: PipelineError::Cancelled { .. },
    } = err
    else {
        panic!("{err:?}");
    };
    assert_eq!(
        hub.get_task(run_id).await.unwrap().status,
        TaskStatus::Cancelled
    );
    for a in hub.run_record(run_id).await.unwrap().assignments {
        assert_eq!(
            hub.get_task(a.task_id).await.unwrap().status,
            TaskStatus::Cancelled,
            "{}",
            a.node
        );
    }
    let events = drain(&mut rx);
    at(
        &events,
        "node_cancelled",
        |e| matches!(e, EventKind::NodeCancelled { node, .. } if node == "research"),
    );
    at(&events, "run_finished", |e| {
        matches!(
            e,
            EventKind::RunFinished {
                status: TaskStatus::Cancelled,
                ..
            }
        )
    });
}

#[tokio::test]
async fn runs_that_cannot_start_fail_with_typed_errors() {
    // No decomposer.
    let hub = hub_with(three_agents(), None).await;
    let err = hub.orchestrate("anything").await.unwrap_err();
    assert!(matches!(err, OrchestrateError::NoDecomposer), "{err:?}");

    // A model that never gives a valid plan.
    let planner = ScriptedProvider::from_fn(|_| Ok(ChatResponse::text("no plan, sorry")));
    let hub = hub_with(three_agents(), Some(planner)).await;
    let err = hub.orchestrate("anything").await.unwrap_err();
    assert!(
        matches!(
            err,
            OrchestrateError::Decompose(DecomposeError::InvalidPlan { .. })
        ),
        "{err:?}"
    );

    // A cyclic plan, a plan with an oversized id: refused before anything is stored.
    let cyclic = Plan {
        reasoning: String::new(),
        tasks: vec![task("a", "do a", &["b"]), task("b", "do b", &["a"])],
    };
    let err = hub
        .run_plan("p", cyclic, RunOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, OrchestrateError::InvalidPlan(_)), "{err:?}");
    let long_id = Plan {
        reasoning: String::new(),
        tasks: vec![task(&"x".repeat(600), "do it", &[])],
    };
    let err = hub
        .run_plan("p", long_id, RunOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, OrchestrateError::InvalidPlan(_)), "{err:?}");
    assert!(
        hub.list_tasks(TaskFilter::default())
            .await
            .unwrap()
            .is_empty()
    );

    // No node agents at all: nobody to match.
    let bare = Hub::builder()
        .store(Arc::new(MemoryStore::new()))
        .build()
        .unwrap();
    let one = Plan {
        reasoning: String::new(),
        tasks: vec![task("a", "do a", &[])],
    };
    let err = bare
        .run_plan("p", one.clone(), RunOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            OrchestrateError::Match {
                source: RegistryError::NoCandidate(_),
                ..
            }
        ),
        "{err:?}"
    );

    // A fallback agent the hub cannot run.
    let hub = Hub::builder()
        .store(Arc::new(MemoryStore::new()))
        .match_threshold(0.99)
        .fallback_agent(AgentId::new("ghost").unwrap())
        .build()
        .unwrap();
    hub.add_node_agent(
        AgentCard::in_process(AgentId::new("researcher").unwrap()).description("research"),
        Arc::new(Agent::new("researcher")),
    )
    .await
    .unwrap();
    let err = hub
        .run_plan("p", one, RunOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OrchestrateError::NoNodeAgent { agent, .. } if agent.as_str() == "ghost"),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert!(
        hub.list_tasks(TaskFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
}

/// A `MemoryStore` that refuses to store task outputs while `refuse` is set.
struct NoOutputs {
    inner: MemoryStore,
    refuse: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl TaskStore for NoOutputs {
    async fn create_task(&self, task: Task) -> Result<Task, StoreError> {
        self.inner.create_task(task).await
    }
    async fn get_task(&self, id: TaskId) -> Result<Task, StoreError> {
        self.inner.get_task(id).await
    }
    async fn list_tasks(&self, filter: TaskFilter) -> Result<Vec<Task>, StoreError> {
        self.inner.list_tasks(filter).await
    }
    async fn update_task(
        &self,
        id: TaskId,
        update: TaskUpdate,
        expected_version: Option<u64>,
    ) -> Result<Task, StoreError> {
        self.inner.update_task(id, update, expected_version).await
    }
    async fn delete_task(&self, id: TaskId) -> Result<(), StoreError> {
        self.inner.delete_task(id).await
    }
    async fn append_step(&self, id: TaskId, step: StepRecord) -> Result<Task, StoreError> {
        self.inner.append_step(id, step).await
    }
    async fn create_template(&self, template: Template) -> Result<Template, StoreError> {
        self.inner.create_template(template).await
    }
    async fn get_template(&self, id: TemplateId) -> Result<Template, StoreError> {
        self.inner.get_template(id).await
    }
    async fn list_templates(&self) -> Result<Vec<Template>, StoreError> {
        self.inner.list_templates().await
    }
    async fn update_template(
        &self,
        id: TemplateId,
        update: TemplateUpdate,
    ) -> Result<Template, StoreError> {
        self.inner.update_template(id, update).await
    }
    async fn delete_template(&self, id: TemplateId) -> Result<(), StoreError> {
        self.inner.delete_template(id).await
    }
    async fn append_log(&self, entry: LogEntry) -> Result<LogEntry, StoreError> {
        if entry.kind == OUTPUT_LOG_KIND && self.refuse.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("disk full".into()));
        }
        self.inner.append_log(entry).await
    }
    async fn logs(&self, query: LogQuery) -> Result<Vec<LogEntry>, StoreError> {
        self.inner.logs(query).await
    }
    async fn claim(&self, agent: AgentId, lease: Duration) -> Result<Option<Claim>, StoreError> {
        self.inner.claim(agent, lease).await
    }
    async fn renew(&self, claim: Claim, lease: Duration) -> Result<Claim, StoreError> {
        self.inner.renew(claim, lease).await
    }
    async fn release(&self, claim: Claim, status: TaskStatus) -> Result<Task, StoreError> {
        self.inner.release(claim, status).await
    }
}

#[tokio::test]
async fn an_output_that_cannot_be_stored_fails_its_task_instead_of_being_lost() {
    let store = Arc::new(NoOutputs {
        inner: MemoryStore::new(),
        refuse: std::sync::atomic::AtomicBool::new(true),
    });
    let hub = Hub::builder().store(store.clone()).build().unwrap();
    hub.add_node_agent(
        AgentCard::in_process(AgentId::new("researcher").unwrap()).description("research"),
        Arc::new(Agent::new("researcher")),
    )
    .await
    .unwrap();
    let plan = Plan {
        reasoning: String::new(),
        tasks: vec![
            task("research", "Research the trends", &[]),
            task("summary", "Summarise the research", &["research"]),
        ],
    };
    let err = hub
        .run_plan("trends", plan, RunOptions::default())
        .await
        .unwrap_err();
    let OrchestrateError::Pipeline {
        run_id,
        source: PipelineError::Failed { task, error, .. },
    } = err
    else {
        panic!("{err:?}");
    };
    assert_eq!(task, "research");
    assert!(
        error.contains("could not be recorded") && error.contains("disk full"),
        "{error}"
    );
    let record = hub.run_record(run_id).await.unwrap();
    for a in &record.assignments {
        let status = hub.get_task(a.task_id).await.unwrap().status;
        assert_ne!(
            status,
            TaskStatus::Done,
            "{} is not done without its output",
            a.node
        );
    }
    assert_eq!(
        hub.get_task(run_id).await.unwrap().status,
        TaskStatus::Failed
    );
}

#[tokio::test]
async fn a_connected_worker_works_on_the_board_task_itself() {
    let hub = hub_with(vec![Agent::new("researcher")], None).await;
    let dir = tempfile::tempdir().unwrap();
    let llm = ananta_llm::ScriptedProvider::new([
        r#"{"reason": "show that the shell ran", "command": "echo shell-ran"}"#,
        r#"{"reason": "the command ran", "done": true}"#,
    ]);
    let worker = ananta_core::Worker::builder(AgentId::new("sheller").unwrap())
        .llm(Arc::new(llm))
        .executor(Arc::new(ananta_exec::ShellExecutor::new(dir.path())))
        .build()
        .unwrap();
    hub.register_agent(worker.card(), Arc::new(worker.clone()))
        .await
        .unwrap();
    let mut rx = hub.subscribe();
    let plan = Plan {
        reasoning: String::new(),
        tasks: vec![
            task("research", "Research the current AI trends", &[]),
            task("shell", "Print the findings in a shell", &["research"]),
        ],
    };
    let options = RunOptions::default()
        .pin("shell", AgentId::new("sheller").unwrap())
        .max_steps(3);
    let result = hub.run_plan("trends", plan, options).await.unwrap();

    let shell = hub.get_task(result.tasks()["shell"]).await.unwrap();
    assert_eq!(shell.status, TaskStatus::Done);
    assert_eq!(shell.steps.len(), 1, "the step is on the run's task");
    assert_eq!(shell.steps[0].command, "echo shell-ran");
    assert!(
        shell
            .description
            .contains("Results of earlier tasks:\nOutput of task research:\nresearcher:research[]"),
        "the worker was given the dependency's output: {}",
        shell.description
    );
    assert!(
        result.outcome.output.starts_with("the command ran")
            && result.outcome.output.contains("shell-ran"),
        "{}",
        result.outcome.output
    );
    let events = drain(&mut rx);
    at(
        &events,
        "step_executed",
        |e| matches!(e, EventKind::StepExecuted { task_id, .. } if *task_id == shell.id),
    );
}
