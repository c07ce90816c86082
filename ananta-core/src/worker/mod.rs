//! The Worker: asks an LLM for the next shell command of a task, runs it, and logs everything.

mod config;
mod local;
mod prompt;
mod workspace;

pub use config::WorkerConfig;
pub use workspace::{Cleanup, Workspaces};

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::Utc;
use serde_json::json;

use crate::agent::{AgentCard, AgentClient, ExecuteRequest, ProposeRequest};
use crate::error::{AgentError, Error, ExecError};
use crate::exec::{CommandGate, Decision, Executor};
use crate::ids::{AgentId, TaskId};
use crate::llm::{ChatRequest, LlmProvider};
use crate::log::{Direction, LogEntry, LogQuery};
use crate::parse::{AnswerFormat, ParsedAnswer, parse_answer};
use crate::task::{Completion, Proposal, Proposed, StepRecord, Task, TaskStatus};
use crate::template::Template;

/// The default system prompt; it tells the model the answer format [`parse_answer`] reads best.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are an autonomous software engineering agent working in a Linux shell, in the task's own directory. \
Each answer is ONE action: a shell command to run (you then see its output), or the statement that the task is finished. \
Answer with one JSON object and nothing else: {\"analysis\": \"<what the last output shows and why the next action is right>\", \"next\": {\"run\": \"<one shell command>\"}}. \
When the task is complete, answer {\"analysis\": \"<what you checked>\", \"next\": {\"finish\": \"<summary of what was achieved>\"}}. \
Never run interactive programs (editors, pagers, prompts) and prefer commands that do not destroy data.";

/// The worker's plain settings, shared by the builder and the built worker.
struct Settings {
    name: AgentId,
    workspaces: Workspaces,
    system_prompt: String,
    specialisation: String,
    log_capacity: usize,
}

/// Builds a [`Worker`].
pub struct WorkerBuilder {
    settings: Settings,
    config: WorkerConfig,
    llm: Option<Arc<dyn LlmProvider>>,
    executor: Option<Arc<dyn Executor>>,
    gate: Option<Arc<dyn CommandGate>>,
}

impl WorkerBuilder {
    /// The LLM that proposes commands (required).
    pub fn llm(mut self, llm: Arc<dyn LlmProvider>) -> Self {
        self.llm = Some(llm);
        self
    }

    /// The executor that runs them (required).
    pub fn executor(mut self, executor: Arc<dyn Executor>) -> Self {
        self.executor = Some(executor);
        self
    }

    /// The gate every command passes before it runs (none by default: every command runs).
    /// A refused command fails with [`ExecError::Denied`];
    /// one that needs a human with
    /// [`ExecError::NeedsApproval`] until it is run
    /// with approval ([`Worker::approve`], or `Hub::approve` for a Hub's task).
    pub fn gate(mut self, gate: Arc<dyn CommandGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Replaces the whole system prompt (the default explains the answer format).
    pub fn system_prompt(mut self, prompt: impl Into<String>) -> Self {
        self.settings.system_prompt = prompt.into();
        self
    }

    /// The agent's specialisation, appended to the system prompt and shown on its card.
    pub fn specialisation(mut self, text: impl Into<String>) -> Self {
        self.settings.specialisation = text.into();
        self
    }

    /// The model to ask (a template's `model` overrides it per task).
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.config.model = Some(model.into());
        self
    }

    /// Sampling temperature.
    pub fn temperature(mut self, temperature: f32) -> Self {
        self.config.temperature = Some(temperature);
        self
    }

    /// Answer token limit.
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.config.max_tokens = Some(max_tokens);
        self
    }

    /// Asks the server to constrain every answer to [`AnswerFormat`]'s JSON schema (structured
    /// output). Small local models then always answer in the shape [`parse_answer`] reads;
    /// leave it off (the default) for servers that do not support `json_schema` output.
    pub fn structured_output(mut self, on: bool) -> Self {
        self.config.structured_output = on;
        self
    }

    /// Characters of each stream (stdout, stderr) of a step fed back to the model (default
    /// 4,000; head and tail are kept, with a marker of what was cut).
    pub fn output_budget(mut self, chars: usize) -> Self {
        self.config.output_budget = chars;
        self
    }

    /// How many of the latest steps the prompt shows (default 20; older ones are summarised
    /// as a count).
    pub fn history_steps(mut self, steps: usize) -> Self {
        self.config.history_steps = steps;
        self
    }

    /// Where each task runs: the executor's working directory for all (the default), a
    /// directory per task, or a git worktree per task (see [`Workspaces`]).
    pub fn workspaces(mut self, workspaces: Workspaces) -> Self {
        self.settings.workspaces = workspaces;
        self
    }

    /// How many log entries the worker keeps in memory (default 10,000; oldest dropped first).
    pub fn log_capacity(mut self, entries: usize) -> Self {
        self.settings.log_capacity = entries;
        self
    }

    /// Builds the worker; fails when the LLM or the executor is missing.
    pub fn build(self) -> Result<Worker, Error> {
        let llm = self
            .llm
            .ok_or_else(|| Error::InvalidInput("Worker needs an LLM provider".into()))?;
        let executor = self
            .executor
            .ok_or_else(|| Error::InvalidInput("Worker needs an executor".into()))?;
        let mut settings = self.settings;
        settings.log_capacity = settings.log_capacity.max(1);
        let mut config = self.config;
        config.output_budget = config.output_budget.max(100);
        config.history_steps = config.history_steps.max(1);
        let config = std::sync::RwLock::new(config);
        Ok(Worker {
            inner: Arc::new(WorkerInner {
                settings,
                config,
                llm,
                executor,
                gate: self.gate,
                log: Mutex::new(LogRing {
                    entries: VecDeque::new(),
                    next_seq: 1,
                }),
            }),
        })
    }
}

struct LogRing {
    entries: VecDeque<LogEntry>,
    next_seq: u64,
}

struct WorkerInner {
    settings: Settings,
    config: std::sync::RwLock<WorkerConfig>,
    llm: Arc<dyn LlmProvider>,
    executor: Arc<dyn Executor>,
    gate: Option<Arc<dyn CommandGate>>,
    log: Mutex<LogRing>,
}

/// An agent that proposes shell commands with an LLM and runs them with an executor.
///
/// Cheap to clone (shared state). It implements [`AgentClient`], so a Hub can use it
/// in-process: `hub.register_worker(&worker)`.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<WorkerInner>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("name", &self.inner.settings.name)
            .field("llm", &self.inner.llm.name())
            .field("model", &self.config().model)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Starts building a worker named `name`.
    pub fn builder(name: AgentId) -> WorkerBuilder {
        WorkerBuilder {
            settings: Settings {
                name,
                system_prompt: DEFAULT_SYSTEM_PROMPT.to_string(),
                specialisation: String::new(),
                log_capacity: 10_000,
                workspaces: Workspaces::Shared,
            },
            config: WorkerConfig::default(),
            llm: None,
            executor: None,
            gate: None,
        }
    }

    /// The worker's name.
    pub fn name(&self) -> &AgentId {
        &self.inner.settings.name
    }

    /// The settings that may change while the worker runs.
    pub fn config(&self) -> WorkerConfig {
        self.inner
            .config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the changeable settings (checked first; nothing changes when they are invalid).
    /// Steps already asking the LLM finish with the old settings.
    pub fn set_config(&self, config: WorkerConfig) -> Result<(), Error> {
        config.validate()?;
        *self.inner.config.write().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(())
    }

    /// The worker's specialisation (shown on its card).
    pub fn specialisation(&self) -> &str {
        &self.inner.settings.specialisation
    }

    /// An in-process card for registering this worker with a Hub.
    pub fn card(&self) -> AgentCard {
        let mut card = AgentCard::in_process(self.inner.settings.name.clone());
        // The specialisation is what the agent is good at: matching reads the description.
        card.description = self.inner.settings.specialisation.clone();
        card.system_prompt = self.inner.settings.specialisation.clone();
        card
    }

    fn log(&self, entry: LogEntry) {
        let mut ring = self.inner.log.lock().unwrap_or_else(|p| p.into_inner());
        let mut entry = entry.agent(Some(self.inner.settings.name.clone()));
        entry.seq = ring.next_seq;
        ring.next_seq += 1;
        ring.entries.push_back(entry);
        while ring.entries.len() > self.inner.settings.log_capacity {
            ring.entries.pop_front();
        }
    }

    /// The worker's own log (the original Ananta's worker `/logs`), newest `limit` entries ascending.
    pub fn logs(&self, query: LogQuery) -> Vec<LogEntry> {
        let ring = self.inner.log.lock().unwrap_or_else(|p| p.into_inner());
        query.select(&ring.entries)
    }

    /// Asks the LLM for the next step of `task`.
    pub async fn propose(
        &self,
        task: &Task,
        template: Option<&Template>,
    ) -> Result<Proposed, AgentError> {
        let inner = &self.inner;
        let config = self.config();
        let messages = self.build_messages(task, template)?;
        let prompt = messages
            .last()
            .map(|m| m.content.clone())
            .unwrap_or_default();
        let step = task.next_step_index().unwrap_or(u32::MAX);
        let mut request = ChatRequest::new(messages);
        request.model = template
            .and_then(|t| t.model.clone())
            .or_else(|| config.model.clone());
        request.temperature = config.temperature;
        request.max_tokens = config.max_tokens;
        if config.structured_output {
            request = request.json_schema_for::<AnswerFormat>();
        }
        self.log(
            LogEntry::new(
                Direction::In,
                "prompt",
                json!({"prompt": prompt, "model": request.model}),
            )
            .task(task.id)
            .step(step),
        );
        tracing::debug!(task = %task.id, agent = %inner.settings.name, "asking the LLM for the next step");
        let response = match inner.llm.complete(request).await {
            Ok(r) => r,
            Err(e) => {
                self.log(
                    LogEntry::new(Direction::Out, "error", json!({"error": e.to_string()}))
                        .task(task.id)
                        .step(step),
                );
                return Err(e.into());
            }
        };
        let parsed = parse_answer(&response.content);
        self.log(
            LogEntry::new(
                Direction::Out,
                "answer",
                json!({"raw": response.content, "usage": response.usage, "parsed": parsed.is_ok()}),
            )
            .task(task.id)
            .step(step),
        );
        Ok(match parsed? {
            ParsedAnswer::Command { reason, command } => Proposed::Command(Proposal {
                reason,
                command,
                raw: response.content,
                prompt,
                usage: response.usage,
                agent: Some(inner.settings.name.clone()),
                proposed_at: Utc::now(),
                needs_approval: Vec::new(),
            }),
            ParsedAnswer::Done { summary } => Proposed::Done(Completion {
                summary,
                raw: response.content,
                usage: response.usage,
            }),
        })
    }

    /// Runs `command` (or the task's pending proposal) and returns the step record; it does
    /// not change `task` (see [`Worker::run`] for that). With a [gate](WorkerBuilder::gate),
    /// a command it refuses or holds for approval is not run.
    pub async fn execute(
        &self,
        task: &Task,
        command: Option<String>,
    ) -> Result<StepRecord, AgentError> {
        self.execute_step(task, command, false).await
    }

    /// [`Worker::execute`] for a command a human approved: the gate's `NeedsApproval` is
    /// satisfied (its `Deny` still refuses). `command` replaces the proposal when the human
    /// edited it.
    pub async fn approve(
        &self,
        task: &Task,
        command: Option<String>,
    ) -> Result<StepRecord, AgentError> {
        self.execute_step(task, command, true).await
    }

    async fn execute_step(
        &self,
        task: &Task,
        command: Option<String>,
        approved: bool,
    ) -> Result<StepRecord, AgentError> {
        let proposal = task.proposal.clone();
        let command = match command {
            Some(c) if c.trim().is_empty() => {
                return Err(
                    crate::error::ExecError::InvalidRequest("the command is empty".into()).into(),
                );
            }
            Some(c) => c,
            None => proposal
                .as_ref()
                .map(|p| p.command.clone())
                .ok_or(AgentError::NoCommand(task.id))?,
        };
        let index = task.next_step_index().unwrap_or(u32::MAX);
        if let Some(gate) = &self.inner.gate {
            let refusal = match gate.decide(&command) {
                Decision::Allow => None,
                Decision::NeedsApproval { .. } if approved => None,
                Decision::NeedsApproval { reasons } => {
                    Some(("approval_required", ExecError::NeedsApproval { reasons }))
                }
                Decision::Deny { rule, reason } => {
                    Some(("denied", ExecError::Denied { rule, reason }))
                }
            };
            if let Some((kind, error)) = refusal {
                self.log(
                    LogEntry::new(
                        Direction::Out,
                        kind,
                        json!({"command": command, "error": error.to_string()}),
                    )
                    .task(task.id)
                    .step(index),
                );
                return Err(error.into());
            }
        }
        self.log(
            LogEntry::new(
                Direction::In,
                "command",
                json!({"command": command, "approved": approved}),
            )
            .task(task.id)
            .step(index),
        );
        let request = match self.exec_request(task, command.clone()).await {
            Ok(r) => r,
            Err(e) => {
                self.log(
                    LogEntry::new(Direction::Out, "error", json!({"error": e.to_string()}))
                        .task(task.id)
                        .step(index),
                );
                return Err(e);
            }
        };
        let started_at = Utc::now();
        let outcome = match self.inner.executor.run(request, None).await {
            Ok(o) => o,
            Err(e) => {
                self.log(
                    LogEntry::new(Direction::Out, "error", json!({"error": e.to_string()}))
                        .task(task.id)
                        .step(index),
                );
                return Err(e.into());
            }
        };
        let finished_at = Utc::now();
        self.log(
            LogEntry::new(Direction::Out, "output", output_payload(&outcome))
                .task(task.id)
                .step(index),
        );
        Ok(StepRecord {
            index,
            agent: Some(self.inner.settings.name.clone()),
            prompt: proposal
                .as_ref()
                .map(|p| p.prompt.clone())
                .unwrap_or_default(),
            proposal,
            command,
            outcome,
            started_at,
            finished_at,
        })
    }
}

/// The log payload of an outcome: status and the head/tail of each stream.
pub(crate) fn output_payload(outcome: &crate::exec::ExecOutcome) -> serde_json::Value {
    json!({
        "exit_code": outcome.exit_code,
        "signal": outcome.signal,
        "timed_out": outcome.timed_out,
        "duration_ms": outcome.duration_ms,
        "stdout": crate::exec::head_tail(&outcome.stdout, 4_000),
        "stderr": crate::exec::head_tail(&outcome.stderr, 4_000),
        "stdout_truncated": outcome.stdout_truncated,
        "stderr_truncated": outcome.stderr_truncated,
    })
}

#[async_trait]
impl AgentClient for Worker {
    async fn propose(&self, request: ProposeRequest) -> Result<Proposed, AgentError> {
        Worker::propose(self, &request.task, request.template.as_ref()).await
    }

    async fn execute(&self, request: ExecuteRequest) -> Result<StepRecord, AgentError> {
        self.execute_step(&request.task, request.command, request.approved)
            .await
    }

    async fn ping(&self) -> Result<(), AgentError> {
        Ok(())
    }

    async fn release(&self, task: TaskId, status: TaskStatus) -> Result<(), AgentError> {
        self.release_workspace(task, status).await
    }
}
