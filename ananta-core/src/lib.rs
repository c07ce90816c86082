//! # ananta-core — the contract and the composition of Ananta
//!
//! Ananta lets a host application run a team of LLM-driven agents on software-development work.
//! This crate holds everything the other crates agree on, and the two roles built from it:
//!
//! - the **domain model**: [`Task`] with its [`TaskStatus`] machine, [`Template`],
//!   [`AgentCard`], [`Proposal`], [`StepRecord`], [`LogEntry`], [`Event`];
//! - the **five traits** every outside dependency goes through — [`LlmProvider`],
//!   [`Executor`], [`TaskStore`], [`AgentRegistry`], [`Decomposer`] — plus [`AgentClient`],
//!   through which the Hub reaches an agent; each has its own error enum with
//!   `is_transient()`, and [`Error`] wraps them all;
//! - the **[`Hub`]**: task board, templates, agents, assignment, forwarding of steps to the
//!   assigned agent, per-task logs and an event bus;
//! - **orchestration**: [`decompose::LlmDecomposer`] turns a prompt into a validated [`Plan`],
//!   [`matching::AgentMatcher`] picks each task's agent by embedding similarity
//!   ([`embed::LexicalEmbedder`] needs no model), and [`pipeline::Pipeline`] runs the plan in
//!   parallel with context passing, retries, timeouts, cancellation and budgets;
//!   [`Hub::orchestrate`] ties them together as durable runs on the board that a restarted
//!   Hub resumes ([`orchestrate`]);
//! - the **[`Worker`]**: asks its LLM for the next action of a task — a shell command read from
//!   text ([`parse::parse_answer`]) or a native tool call ([`tools`]) — runs it through its
//!   executor in the task's own workspace ([`worker::Workspaces`]), reports live progress, and
//!   can run a task autonomously;
//! - the **step loop** ([`Hub::run`], [`Worker::run`]): "done" only when the task's acceptance
//!   checks pass ([`verify`]), answers that cannot run fed back to the model ([`feedback`]),
//!   approvals inside the run, a report even on error ([`steps::RunError`]);
//! - with feature **`testing`**: `mockall` mocks of every trait in `mocks`, for your own tests;
//! - with feature **`http`**: the original Ananta's HTTP API in `http` — axum routers for the Hub and
//!   the Worker, authentication, the `RemoteAgent` client, registration and heartbeats,
//!   server-sent events, an OpenAPI document (`examples/agent.rs` runs them as processes).
//!
//! Implementations live in sibling crates: `ananta-llm` (providers, e.g. `ScriptedProvider`),
//! `ananta-exec` (`ShellExecutor`), `ananta-store` (`MemoryStore`). A host wires them:
//!
//! ```text
//! let hub = Hub::builder().store(Arc::new(MemoryStore::new())).build()?;
//! let worker = Worker::builder(AgentId::new("w1")?).llm(llm).executor(executor).build()?;
//! hub.register_worker(&worker).await?;
//! let task = hub.create_task(NewTask::new("Write notes/a.txt").check("test -f notes/a.txt")).await?;
//! hub.assign(task.id, worker.name()).await?;
//! hub.run(task.id, &StepLimits::steps(5)).await?;
//! ```
//!
//! (The README and `examples/quickstart` show this end to end.)
//!
//! The crate root holds the domain model, the traits with their errors, the Hub and the Worker
//! with their builders, and the step loop's [`StepLimits`] / [`StepReport`]; everything else
//! has one path, through its module: the LLM's messages in [`llm`], the executor's requests
//! and outcomes in [`exec`], matching in [`matching`], the pipeline in [`pipeline`],
//! orchestration runs in [`orchestrate`], answer parsing in [`parse`].
//!
//! The contract on its own:
//!
//! ```
//! use std::collections::BTreeMap;
//! use ananta_core::{NewTemplate, TaskStatus};
//! use ananta_core::parse::{ParsedAnswer, parse_answer};
//!
//! // Templates report unknown variables instead of rendering holes.
//! let template = NewTemplate::new("review", "Review {{title}}: {{description}}").into_template()?;
//! let vars = BTreeMap::from([("title".to_string(), "PR 7".to_string())]);
//! assert!(template.render(&vars).is_err());
//!
//! // Model answers in many shapes become one typed answer.
//! let answer = parse_answer("REASON: look around\nCOMMAND: ls -la")?;
//! assert_eq!(answer, ParsedAnswer::Command { reason: "look around".into(), command: "ls -la".into() });
//!
//! // One transition table for every store.
//! assert!(TaskStatus::Todo.can_transition_to(TaskStatus::InProgress));
//! assert!(!TaskStatus::Done.can_transition_to(TaskStatus::Failed));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Feature flags
#![doc = document_features::document_features!()]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod agent;
pub mod decompose;
pub mod embed;
pub mod error;
pub mod event;
pub mod exec;
pub mod feedback;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
pub mod hub;
pub mod ids;
pub mod llm;
pub mod log;
pub mod matching;
pub mod orchestrate;
pub mod parse;
pub mod pipeline;
pub mod registry;
mod status;
pub mod steps;
pub mod store;
pub mod task;
pub mod template;
#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub mod tls;
pub mod tools;
pub mod verify;
pub mod worker;

// The crate root holds the domain model, the five traits (and `AgentClient`, through which the
// Hub reaches an agent), their error enums, the Hub and the Worker with their builders, and the
// step loop's limits and report that `Hub::run` takes and gives. Everything else has one path:
// its module (`ananta_core::llm::ChatRequest`, `ananta_core::exec::ExecOutcome`, …).
pub use agent::{AgentCard, AgentClient, AgentInfo, AgentStatus};
pub use decompose::{Decomposer, Plan, PlannedTask};
pub use error::{
    AgentError, DecomposeError, Error, ExecError, InvalidInput, LlmError, RegistryError, Result,
    StoreError,
};
pub use event::{Event, EventKind};
pub use exec::Executor;
pub use hub::{Hub, HubBuilder};
pub use ids::{AgentId, TaskId, TemplateId};
pub use llm::LlmProvider;
pub use log::{LogEntry, LogQuery};
pub use registry::AgentRegistry;
pub use steps::{StepLimits, StepReport, StopReason};
pub use store::TaskStore;
pub use task::{
    Completion, NewTask, Priority, Proposal, Proposed, StepRecord, Task, TaskFilter, TaskStatus,
    TaskUpdate, TokenUsage,
};
pub use template::{NewTemplate, Template, TemplateUpdate};
pub use tokio_util::sync::CancellationToken;
pub use worker::{Worker, WorkerBuilder};

/// `mockall` mocks of every trait, for unit tests of code built on Ananta (feature `testing`).
///
/// ```
/// use std::sync::Arc;
/// use ananta_core::mocks::{MockExecutor, MockLlmProvider};
/// use ananta_core::{AgentId, NewTask, Proposed, Worker};
/// use ananta_core::exec::ExecOutcome;
/// use ananta_core::llm::ChatResponse;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
/// let mut llm = MockLlmProvider::new();
/// llm.expect_complete()
///     .returning(|_| Ok(ChatResponse::text(r#"{"reason": "look", "command": "ls"}"#)));
/// let mut exec = MockExecutor::new();
/// exec.expect_run()
///     .withf(|req, _| req.command == "ls")
///     .returning(|_, _| Ok(ExecOutcome { exit_code: Some(0), stdout: "a.txt\n".into(), ..Default::default() }));
///
/// let worker = Worker::builder(AgentId::new("tester")?)
///     .llm(Arc::new(llm))
///     .executor(Arc::new(exec))
///     .build()?;
/// let mut task = NewTask::new("List files").into_task()?;
/// let Proposed::Command(proposal) = worker.propose(&task, None).await? else { panic!("no command") };
/// task.proposal = Some(proposal);
/// let step = worker.execute(&task, None).await?;
/// assert_eq!(step.outcome.stdout, "a.txt\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod mocks {
    pub use crate::agent::MockAgentClient;
    pub use crate::decompose::MockDecomposer;
    pub use crate::exec::MockExecutor;
    pub use crate::llm::MockLlmProvider;
    pub use crate::registry::MockAgentRegistry;
    pub use crate::store::MockTaskStore;
    /// `mockall`'s call order, for expectations that must come one after another.
    pub use mockall::Sequence;
    /// `mockall`'s argument matchers, for `.with(predicate::eq(..))`.
    pub use mockall::predicate;
}
