//! The Worker: asks an LLM for the next shell command of a task, runs it, and logs everything.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::Utc;
use serde_json::json;

use crate::agent::{AgentCard, AgentClient, ExecuteRequest, ProposeRequest};
use crate::error::{AgentError, Error, ExecError, InvalidInput};
use crate::exec::{CommandGate, Decision, ExecRequest, Executor};
use crate::ids::AgentId;
use crate::llm::{ChatMessage, ChatRequest, LlmProvider};
use crate::log::{Direction, LogEntry, LogQuery};
use crate::parse::{AnswerFormat, ParsedAnswer, parse_answer};
use crate::steps::{StepDriver, StepLimits, StepReport, drive};
use crate::task::{Completion, Proposal, Proposed, StepRecord, Task};
use crate::template::{Template, task_variables};

/// The default system prompt; it tells the model the answer format [`parse_answer`] reads best.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are an autonomous software engineering agent working in a Linux shell. \
You work on one task by proposing exactly ONE shell command per answer; after each command you see its output. \
Answer with a single JSON object and nothing else: {\"reason\": \"<why this is the right next step>\", \"command\": \"<one shell command>\"}. \
When the task is complete, answer {\"reason\": \"<summary of what was achieved>\", \"done\": true}. \
Never run interactive programs (editors, pagers, prompts) and prefer commands that do not destroy data.";

/// The worker's plain settings, shared by the builder and the built worker.
struct Settings {
    name: AgentId,
    system_prompt: String,
    specialisation: String,
    log_capacity: usize,
}

/// The settings of a [`Worker`] that may change while it runs (the original Ananta's `/config`): read
/// them with [`Worker::config`], change them with [`Worker::set_config`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct WorkerConfig {
    /// The model to ask (a template's `model` overrides it per task).
    #[serde(default)]
    pub model: Option<String>,
    /// Sampling temperature, `0.0..=2.0`.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Answer token limit.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Whether answers are constrained to [`AnswerFormat`]'s schema.
    #[serde(default)]
    pub structured_output: bool,
    /// Characters of each output stream fed back to the model (at least 100).
    pub output_budget: usize,
    /// How many of the latest steps the prompt shows (at least 1).
    pub history_steps: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            model: None,
            temperature: None,
            max_tokens: None,
            structured_output: false,
            output_budget: 4_000,
            history_steps: 20,
        }
    }
}

impl WorkerConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(InvalidInput::new(
                "temperature",
                format!("temperature {t} is outside 0.0..=2.0"),
            ));
        }
        if self.output_budget < 100 {
            return Err(InvalidInput::new(
                "output_budget",
                "output_budget must be at least 100 characters",
            ));
        }
        if self.history_steps == 0 {
            return Err(InvalidInput::new(
                "history_steps",
                "history_steps must be at least 1",
            ));
        }
        if self.model.as_ref().is_some_and(|m| m.trim().is_empty()) {
            return Err(InvalidInput::new(
                "model",
                "model must not be empty (leave it out for the provider's default)",
            ));
        }
        Ok(())
    }
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

    /// The messages the worker sends its LLM for the next step of `task`: the system prompt,
    /// the task (its template rendered, or title and description), then the latest steps as
    /// assistant answers and user messages with their output.
    pub fn build_messages(
        &self,
        task: &Task,
        template: Option<&Template>,
    ) -> Result<Vec<ChatMessage>, AgentError> {
        let inner = &self.inner;
        let config = self.config();
        let mut system = inner.settings.system_prompt.clone();
        if !inner.settings.specialisation.is_empty() {
            system.push_str("\n\nYour specialisation: ");
            system.push_str(&inner.settings.specialisation);
        }
        let task_text = match template {
            Some(t) => t.render(&task_variables(task))?,
            None if task.description.trim().is_empty() => {
                format!("Task {}: {}", task.id, task.title)
            }
            None => format!("Task {}: {}\n\n{}", task.id, task.title, task.description),
        };
        let mut messages = vec![ChatMessage::system(system), ChatMessage::user(task_text)];
        let skip = task.steps.len().saturating_sub(config.history_steps);
        if skip > 0 {
            messages.push(ChatMessage::user(format!(
                "({skip} earlier step(s) omitted; the latest {} follow.)",
                task.steps.len() - skip
            )));
        }
        for step in &task.steps[skip..] {
            let answer = match &step.proposal {
                Some(p) if p.command == step.command && !p.raw.is_empty() => p.raw.clone(),
                Some(p) => json!({"reason": p.reason, "command": step.command}).to_string(),
                None => json!({"reason": "command given by the operator", "command": step.command})
                    .to_string(),
            };
            messages.push(ChatMessage::assistant(answer));
            messages.push(ChatMessage::user(format!(
                "Step {} ran `{}`:\n{}\nPropose the next command, or answer done.",
                step.index,
                step.command,
                step.outcome.summary_for_model(config.output_budget)
            )));
        }
        Ok(messages)
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
        let started_at = Utc::now();
        let outcome = match self
            .inner
            .executor
            .run(ExecRequest::new(command.clone()), None)
            .await
        {
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

    /// Works on `task` autonomously: propose → execute → feed the output back, until the model
    /// says the task is done, a budget in `limits` is used up, `limits.cancel` fires, or the
    /// gate holds a command for approval (the proposal then stays on `task` with its
    /// `needs_approval` reasons; run it with [`Worker::approve`]). Steps
    /// are appended to `task.steps` as they happen, so nothing is lost when it returns an error.
    /// It does not change the task's status (a Hub does that).
    pub async fn run(
        &self,
        task: &mut Task,
        template: Option<&Template>,
        limits: &StepLimits,
    ) -> Result<StepReport, Error> {
        let mut driver = LocalDriver {
            worker: self,
            task,
            template,
        };
        drive(&mut driver, limits).await
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

struct LocalDriver<'a> {
    worker: &'a Worker,
    task: &'a mut Task,
    template: Option<&'a Template>,
}

impl StepDriver for LocalDriver<'_> {
    async fn propose(&mut self) -> Result<Proposed, Error> {
        Ok(self.worker.propose(self.task, self.template).await?)
    }

    async fn execute(&mut self, proposal: Proposal) -> Result<StepRecord, Error> {
        self.task.proposal = Some(proposal);
        let step = match self.worker.execute(self.task, None).await {
            Ok(step) => step,
            Err(AgentError::Exec(ExecError::NeedsApproval { reasons })) => {
                // The proposal stays on the task, marked, for `Worker::approve`.
                if let Some(p) = &mut self.task.proposal {
                    p.needs_approval = reasons.clone();
                }
                return Err(AgentError::Exec(ExecError::NeedsApproval { reasons }).into());
            }
            Err(e) => return Err(e.into()),
        };
        self.task.proposal = None;
        self.task.steps.push(step.clone());
        self.task.updated_at = Utc::now();
        Ok(step)
    }
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
}
