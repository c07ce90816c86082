//! The Worker: asks an LLM for the next shell command of a task, runs it, and logs everything.

mod config;
mod live;
mod local;
mod progress;
mod prompt;
mod tool_calls;
mod workspace;

pub use config::{Protocol, WorkerConfig};
pub use progress::{PROGRESS_OUTPUT_CAP, Progress, ProgressSink};
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
use crate::tools::{ToolAccess, Toolbox};

/// The default system prompt; it tells the model the answer format [`parse_answer`] reads best.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are an autonomous software engineering agent working in a Linux shell, in the task's own directory. \
Each answer is ONE action: a shell command to run (you then see its output), or the statement that the task is finished. \
Answer with one JSON object and nothing else: {\"analysis\": \"<what the last output shows and why the next action is right>\", \"next\": {\"command\": \"<one shell command>\"}}. \
When the task is complete, answer {\"analysis\": \"<what you checked>\", \"next\": {\"finish\": \"<summary of what was achieved>\"}}. \
Never run interactive programs (editors, pagers, prompts) and prefer commands that do not destroy data.";

/// The default system prompt with [`Protocol::Tools`]: the model calls the offered tools.
pub const DEFAULT_TOOLS_SYSTEM_PROMPT: &str = "You are an autonomous software engineering agent working in a Linux shell, in the task's own directory. \
Each answer is ONE tool call: run_command runs a shell command, the file tools read, write, edit, list and search files, and finish says the task is complete with a summary. \
You see each call's result before the next. Never run interactive programs (editors, pagers, prompts) and prefer commands that do not destroy data.";

/// The worker's plain settings, shared by the builder and the built worker.
struct Settings {
    name: AgentId,
    workspaces: Workspaces,
    /// The host's system prompt; `None`: the default of the protocol.
    system_prompt: Option<String>,
    toolbox: Toolbox,
    tool_access: ToolAccess,
    tool_root: Option<std::path::PathBuf>,
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
    listeners: progress::Listeners,
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
        self.settings.system_prompt = Some(prompt.into());
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

    /// Reports live progress to `sink`: the model's answer as it streams in and each
    /// command's output as it is printed (see [`Progress`]). A Hub the worker is registered
    /// with ([`Hub::register_worker`](crate::Hub::register_worker)) adds its own listener,
    /// which publishes them as events.
    pub fn progress(self, sink: ProgressSink) -> Self {
        self.listeners.add("builder".into(), sink);
        self
    }

    /// How the model acts: [`Protocol::Text`] (the default) or native tool calls
    /// ([`Protocol::Tools`]).
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.config.protocol = protocol;
        self
    }

    /// The tools offered with [`Protocol::Tools`] besides `run_command` and `finish` (default
    /// [`Toolbox::files`]).
    pub fn tools(mut self, toolbox: Toolbox) -> Self {
        self.settings.toolbox = toolbox;
        self
    }

    /// What the file tools may do (default: read and write). Writes go through this like
    /// commands through the gate: [`ToolAccess::ApproveWrites`] holds them for a human,
    /// [`ToolAccess::ReadOnly`] refuses them.
    pub fn tool_access(mut self, access: ToolAccess) -> Self {
        self.settings.tool_access = access;
        self
    }

    /// The folder the file tools work in when tasks share one folder ([`Workspaces::Shared`]):
    /// the executor's working directory. Per-task workspaces need none.
    pub fn tool_root(mut self, root: impl Into<std::path::PathBuf>) -> Self {
        self.settings.tool_root = Some(root.into());
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
        if self.config.protocol == Protocol::Tools
            && settings.workspaces == Workspaces::Shared
            && settings.tool_root.is_none()
            && !settings.toolbox.is_empty()
        {
            return Err(Error::InvalidInput(
                "the file tools need a folder: give WorkerBuilder::tool_root (the executor's \
                 working directory) or per-task Workspaces"
                    .into(),
            ));
        }
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
                listeners: Arc::new(self.listeners),
                tools: tool_calls::ToolSupport::default(),
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
    listeners: Arc<progress::Listeners>,
    /// Whether the model is known to answer [`Protocol::Tools`] with tool calls.
    tools: tool_calls::ToolSupport,
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
                system_prompt: None,
                toolbox: Toolbox::files(),
                tool_access: ToolAccess::ReadWrite,
                tool_root: None,
                specialisation: String::new(),
                log_capacity: 10_000,
                workspaces: Workspaces::Shared,
            },
            config: WorkerConfig::default(),
            llm: None,
            executor: None,
            gate: None,
            listeners: progress::Listeners::default(),
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
        let tools = self.protocol_in_use(&config) == Protocol::Tools;
        if tools {
            request.tools = inner.settings.toolbox.specs();
        } else if config.structured_output {
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
        let response = match self.ask(task.id, step, request).await {
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
        // One action per turn: the first tool call, or else the text.
        let call = response.tool_calls.first().cloned();
        if tools {
            inner.tools.answered(call.is_some(), &inner.settings.name);
        }
        let raw = match &call {
            Some(c) => tool_calls::raw_call(c),
            None => response.content.clone(),
        };
        let parsed = match &call {
            Some(c) => self.read_tool_call(c).map(|answer| match answer {
                tool_calls::ToolAnswer::Act { command } => ParsedAnswer::Command {
                    reason: response.content.trim().to_string(),
                    command,
                },
                tool_calls::ToolAnswer::Finish { summary } => ParsedAnswer::Done { summary },
            }),
            None => parse_answer(&response.content),
        };
        self.log(
            LogEntry::new(
                Direction::Out,
                "answer",
                json!({"raw": raw, "usage": response.usage, "parsed": parsed.is_ok()}),
            )
            .task(task.id)
            .step(step),
        );
        Ok(match parsed? {
            ParsedAnswer::Command { reason, command } => Proposed::Command(Proposal {
                reason,
                command,
                raw,
                prompt,
                usage: response.usage,
                agent: Some(inner.settings.name.clone()),
                proposed_at: Utc::now(),
                needs_approval: Vec::new(),
                tool_call: call,
            }),
            ParsedAnswer::Done { summary } => Proposed::Done(Completion {
                summary,
                raw,
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
        // A file tool the model called (an edited command is a shell command again).
        let tool = proposal
            .as_ref()
            .filter(|p| p.command == command)
            .and_then(|p| p.tool_call.clone())
            .filter(|c| c.name != crate::tools::RUN_COMMAND);
        let refusal = match &tool {
            Some(call) => self
                .tool_needs_approval(call)
                .filter(|_| !approved)
                .map(|reason| ("approval_required", Self::held(reason))),
            None => self.gate_refusal(&command, approved),
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
            return Err(error);
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
        let started_at = Utc::now();
        let outcome = match &tool {
            Some(call) => self.run_tool(task, call).await,
            None => self.run_shell(task, index, command.clone()).await,
        };
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                self.log(
                    LogEntry::new(Direction::Out, "error", json!({"error": e.to_string()}))
                        .task(task.id)
                        .step(index),
                );
                return Err(e);
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

    /// The gate's refusal of a shell command, if it refuses it.
    fn gate_refusal(&self, command: &str, approved: bool) -> Option<(&'static str, AgentError)> {
        let gate = self.inner.gate.as_ref()?;
        let (kind, error) = match gate.decide(command) {
            Decision::Allow => return None,
            Decision::NeedsApproval { .. } if approved => return None,
            Decision::NeedsApproval { reasons } => {
                ("approval_required", ExecError::NeedsApproval { reasons })
            }
            Decision::Deny { rule, reason } => ("denied", ExecError::Denied { rule, reason }),
        };
        Some((kind, error.into()))
    }

    /// Runs a shell command in the task's workspace.
    async fn run_shell(
        &self,
        task: &Task,
        index: u32,
        command: String,
    ) -> Result<crate::exec::ExecOutcome, AgentError> {
        let request = self.exec_request(task, command).await?;
        Ok(self.run_command(task.id, index, request).await?)
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
