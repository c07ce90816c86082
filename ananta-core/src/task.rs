//! Tasks: the board's cards, their status machine, proposals and step history.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::InvalidInput;
use crate::exec::ExecOutcome;
use crate::feedback::Feedback;
use crate::ids::{AgentId, TaskId, TemplateId};
pub use crate::status::TaskStatus;
use crate::verify::{Verification, validate_checks};

/// How urgent a task is; claims take higher priorities first.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
    Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Whenever there is time.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Before normal work.
    High,
    /// Before everything else.
    Critical,
}

/// Tokens a model call used, when the provider reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct TokenUsage {
    /// Tokens in the prompt.
    pub prompt_tokens: u64,
    /// Tokens in the answer.
    pub completion_tokens: u64,
}

impl TokenUsage {
    /// Prompt plus completion tokens.
    pub const fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    /// Adds another usage to this one.
    pub fn add(&mut self, other: TokenUsage) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
    }
}

/// A command an agent's LLM proposed for the next step of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Proposal {
    /// Why the model wants to run this command.
    pub reason: String,
    /// The shell command; never empty.
    pub command: String,
    /// The model's raw answer.
    pub raw: String,
    /// The prompt (last user message) that produced it.
    #[serde(default)]
    pub prompt: String,
    /// Tokens used, when the provider reports them.
    #[serde(default)]
    pub usage: Option<TokenUsage>,
    /// The agent that proposed it.
    #[serde(default)]
    pub agent: Option<AgentId>,
    /// When it was proposed.
    pub proposed_at: DateTime<Utc>,
    /// Why it waits for a human's approval before it runs (empty: it does not wait).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs_approval: Vec<String>,
    /// The native tool call this proposal came from (see [`crate::tools`]); `command` then
    /// shows it as `name {arguments}` unless it is `run_command`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call: Option<crate::llm::ToolCall>,
}

impl Proposal {
    /// A proposal of `command` for `reason`, proposed now, with no raw answer or prompt.
    pub fn new(reason: impl Into<String>, command: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            command: command.into(),
            raw: String::new(),
            prompt: String::new(),
            usage: None,
            agent: None,
            proposed_at: Utc::now(),
            needs_approval: Vec::new(),
            tool_call: None,
        }
    }
}

/// The model's answer when it considers the task finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Completion {
    /// The model's summary of what was achieved.
    pub summary: String,
    /// The model's raw answer.
    pub raw: String,
    /// Tokens used, when the provider reports them.
    #[serde(default)]
    pub usage: Option<TokenUsage>,
}

/// What an agent answers when asked for the next step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Proposed {
    /// Run this command next.
    Command(Proposal),
    /// The task is done; nothing more to run.
    Done(Completion),
}

/// One executed step of a task: what was proposed, what ran, and what came of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StepRecord {
    /// 1-based position in the task's history.
    pub index: u32,
    /// The agent that ran it.
    #[serde(default)]
    pub agent: Option<AgentId>,
    /// The prompt that produced the proposal (empty for a command given directly).
    #[serde(default)]
    pub prompt: String,
    /// The proposal, when the command came from one.
    #[serde(default)]
    pub proposal: Option<Proposal>,
    /// The command that actually ran (may differ from the proposal if a human edited it).
    pub command: String,
    /// What happened.
    pub outcome: ExecOutcome,
    /// When execution started.
    pub started_at: DateTime<Utc>,
    /// When execution finished.
    pub finished_at: DateTime<Utc>,
}

/// An agent's time-limited claim on a task, as stored on the task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Lease {
    /// Who holds it.
    pub agent: AgentId,
    /// The fencing token: grows with every claim of this task; only the current one may renew,
    /// release or complete.
    pub token: u64,
    /// When it runs out unless renewed.
    pub expires_at: DateTime<Utc>,
}

/// A unit of work on the board.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Task {
    /// Sortable id, shown as `T-…`.
    pub id: TaskId,
    /// Short title (required, at most 512 characters).
    pub title: String,
    /// What should be done.
    #[serde(default)]
    pub description: String,
    /// Board status.
    #[serde(default)]
    pub status: TaskStatus,
    /// Urgency.
    #[serde(default)]
    pub priority: Priority,
    /// Free-form tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Template used to prompt the agent.
    #[serde(default)]
    pub template_id: Option<TemplateId>,
    /// The agent the task is assigned to.
    #[serde(default)]
    pub assigned_agent: Option<AgentId>,
    /// The pending proposal, if the agent proposed a step not yet executed.
    #[serde(default)]
    pub proposal: Option<Proposal>,
    /// Executed steps, oldest first.
    #[serde(default)]
    pub steps: Vec<StepRecord>,
    /// The current claim, when an agent holds a lease on the task.
    #[serde(default)]
    pub lease: Option<Lease>,
    /// The last fencing token handed out for this task (0 = never claimed).
    #[serde(default)]
    pub fence: u64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency version; every stored change increments it.
    #[serde(default)]
    pub version: u64,
    /// The orchestration run this task belongs to: the id of the run's own task (see
    /// [`Hub::orchestrate`](crate::Hub::orchestrate)). `None` for a task of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<TaskId>,
    /// Tasks of the same run that must be done before this one starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<TaskId>,
    /// Acceptance checks: shell commands that must all exit 0, run in the task's workspace when
    /// the agent says it is finished (see [`crate::verify`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
    /// The evidence of the last time the agent said it was finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// Answers fed back to the model instead of run (see [`crate::feedback`]), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feedback: Vec<Feedback>,
}

/// Limits on task fields, checked by [`NewTask::validate`] and [`TaskUpdate::validate`].
pub const MAX_TITLE_LEN: usize = 512;
/// Maximum length of a description in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 64 * 1024;
/// Maximum number of tags on a task.
pub const MAX_TAGS: usize = 64;

fn validate_title(title: &str) -> Result<(), InvalidInput> {
    if title.trim().is_empty() {
        return Err(InvalidInput::new("title", "title must not be empty"));
    }
    if title.len() > MAX_TITLE_LEN {
        return Err(InvalidInput::new(
            "title",
            format!("title is longer than {MAX_TITLE_LEN} bytes"),
        ));
    }
    Ok(())
}

fn validate_description(description: &str) -> Result<(), InvalidInput> {
    if description.len() > MAX_DESCRIPTION_LEN {
        return Err(InvalidInput::new(
            "description",
            format!("description is longer than {MAX_DESCRIPTION_LEN} bytes"),
        ));
    }
    Ok(())
}

fn validate_tags(tags: &[String]) -> Result<(), InvalidInput> {
    if tags.len() > MAX_TAGS {
        return Err(InvalidInput::new(
            "tags",
            format!("more than {MAX_TAGS} tags"),
        ));
    }
    if let Some(bad) = tags.iter().find(|t| t.trim().is_empty() || t.len() > 64) {
        return Err(InvalidInput::new(
            "tags",
            format!("tag {bad:?} must be 1–64 non-blank bytes"),
        ));
    }
    Ok(())
}

impl Task {
    /// The 1-based index the next executed step gets (`None` past `u32::MAX` steps).
    pub fn next_step_index(&self) -> Option<u32> {
        u32::try_from(self.steps.len() + 1).ok()
    }

    /// Checks the caller-given fields (title, description, tags) by the same rules as
    /// [`NewTask::validate`]; stores call it on tasks they are handed.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        validate_title(&self.title)?;
        validate_description(&self.description)?;
        validate_tags(&self.tags)?;
        validate_checks(&self.checks)
    }
}

/// The fields a caller gives to create a task.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct NewTask {
    /// Short title (required).
    pub title: String,
    /// What should be done.
    #[serde(default)]
    pub description: String,
    /// Initial status (default `backlog`).
    #[serde(default)]
    pub status: Option<TaskStatus>,
    /// Urgency.
    #[serde(default)]
    pub priority: Priority,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Template to prompt with.
    #[serde(default)]
    pub template_id: Option<TemplateId>,
    /// Acceptance checks (see [`Task::checks`]).
    #[serde(default)]
    pub checks: Vec<String>,
}

impl NewTask {
    /// A new task with this title and everything else defaulted.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            ..Self::default()
        }
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Sets the initial status.
    pub fn status(mut self, status: TaskStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Sets the priority.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Sets the template.
    pub fn template(mut self, template: TemplateId) -> Self {
        self.template_id = Some(template);
        self
    }

    /// Adds an acceptance check: a shell command that must exit 0 before the task counts as
    /// done, e.g. `test -f notes/hello.txt` or `cargo test`.
    pub fn check(mut self, command: impl Into<String>) -> Self {
        self.checks.push(command.into());
        self
    }

    /// Checks the fields, returning a message naming the first problem.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        validate_title(&self.title)?;
        validate_description(&self.description)?;
        validate_tags(&self.tags)?;
        validate_checks(&self.checks)
    }

    /// Builds the task (version 0, timestamps now) after validation.
    pub fn into_task(self) -> Result<Task, InvalidInput> {
        self.validate()?;
        let now = Utc::now();
        Ok(Task {
            id: TaskId::new(),
            title: self.title,
            description: self.description,
            status: self.status.unwrap_or_default(),
            priority: self.priority,
            tags: self.tags,
            template_id: self.template_id,
            assigned_agent: None,
            proposal: None,
            steps: Vec::new(),
            lease: None,
            fence: 0,
            created_at: now,
            updated_at: now,
            version: 0,
            run_id: None,
            depends_on: Vec::new(),
            checks: self.checks,
            verification: None,
            feedback: Vec::new(),
        })
    }
}

/// A partial change to a task; `None` fields stay as they are. For the nullable fields
/// (`template_id`, `assigned_agent`, `proposal`), `Some(None)` clears them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct TaskUpdate {
    /// New title.
    #[serde(default)]
    pub title: Option<String>,
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
    /// New status (checked against the transition table).
    #[serde(default)]
    pub status: Option<TaskStatus>,
    /// New priority.
    #[serde(default)]
    pub priority: Option<Priority>,
    /// New tags (replace the old ones).
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// New template, or `Some(None)` to clear it.
    #[serde(default, with = "double_option")]
    #[schemars(with = "Option<TemplateId>")]
    pub template_id: Option<Option<TemplateId>>,
    /// New assignee, or `Some(None)` to unassign.
    #[serde(default, with = "double_option")]
    #[schemars(with = "Option<AgentId>")]
    pub assigned_agent: Option<Option<AgentId>>,
    /// New pending proposal, or `Some(None)` to clear it.
    #[serde(default, with = "double_option")]
    #[schemars(with = "Option<Proposal>")]
    pub proposal: Option<Option<Proposal>>,
    /// New acceptance checks (replace the old ones).
    #[serde(default)]
    pub checks: Option<Vec<String>>,
    /// New verification evidence, or `Some(None)` to clear it.
    #[serde(default, with = "double_option")]
    #[schemars(with = "Option<Verification>")]
    pub verification: Option<Option<Verification>>,
    /// New feedback list (replaces the old one; the step loop appends through it).
    #[serde(default)]
    pub feedback: Option<Vec<Feedback>>,
}

mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(
        value: &Option<Option<T>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(inner) => inner.serialize(serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}

impl TaskUpdate {
    /// An update that only changes the status.
    pub fn status(status: TaskStatus) -> Self {
        Self {
            status: Some(status),
            ..Self::default()
        }
    }

    /// Checks the fields that are set.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if let Some(title) = &self.title {
            validate_title(title)?;
        }
        if let Some(description) = &self.description {
            validate_description(description)?;
        }
        if let Some(tags) = &self.tags {
            validate_tags(tags)?;
        }
        if let Some(checks) = &self.checks {
            validate_checks(checks)?;
        }
        Ok(())
    }

    /// Applies the update to `task` in memory: validates fields and the status transition,
    /// then changes the task; moving it out of the active statuses (see
    /// [`TaskStatus::is_active`]) also clears its lease. Does not touch `version` or `updated_at` (the store does).
    /// Every backend uses this so the rules live in one place.
    pub fn apply(&self, task: &mut Task) -> Result<(), crate::error::StoreError> {
        self.validate()?;
        if let Some(status) = self.status {
            task.status.check_transition(task.id, status)?;
        }
        if let Some(title) = &self.title {
            task.title = title.clone();
        }
        if let Some(description) = &self.description {
            task.description = description.clone();
        }
        if let Some(status) = self.status {
            task.status = status;
            // Leaving the active statuses ends any claim: the lease would otherwise keep a
            // finished or given-back task fenced.
            if !status.is_active() {
                task.lease = None;
            }
        }
        if let Some(priority) = self.priority {
            task.priority = priority;
        }
        if let Some(tags) = &self.tags {
            task.tags = tags.clone();
        }
        if let Some(template_id) = &self.template_id {
            task.template_id = *template_id;
        }
        if let Some(agent) = &self.assigned_agent {
            task.assigned_agent = agent.clone();
        }
        if let Some(proposal) = &self.proposal {
            task.proposal = proposal.clone();
        }
        if let Some(checks) = &self.checks {
            task.checks = checks.clone();
        }
        if let Some(verification) = &self.verification {
            task.verification = verification.clone();
        }
        if let Some(feedback) = &self.feedback {
            task.feedback = feedback.clone();
        }
        Ok(())
    }
}

/// Which tasks [`TaskStore::list_tasks`](crate::store::TaskStore::list_tasks) returns. Empty
/// filter = all tasks, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct TaskFilter {
    /// Only these statuses (empty = any).
    #[serde(default)]
    pub statuses: Vec<TaskStatus>,
    /// Only tasks assigned to this agent.
    #[serde(default)]
    pub assigned_agent: Option<AgentId>,
    /// Only tasks carrying this tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// At most this many tasks.
    #[serde(default)]
    pub limit: Option<usize>,
}

impl TaskFilter {
    /// Whether `task` passes the filter (ignoring `limit`).
    pub fn matches(&self, task: &Task) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&task.status))
            && self
                .assigned_agent
                .as_ref()
                .is_none_or(|a| task.assigned_agent.as_ref() == Some(a))
            && self.tag.as_ref().is_none_or(|t| task.tags.contains(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::TransitionError;

    #[test]
    fn transition_table_matches_docs() {
        use TaskStatus::*;
        let id = TaskId::new();
        for s in TaskStatus::ALL {
            assert!(s.can_transition_to(s), "{s} -> {s} is a no-op");
        }
        assert!(Backlog.can_transition_to(Todo));
        assert!(Todo.can_transition_to(InProgress));
        assert!(InProgress.can_transition_to(Proposing));
        assert!(Proposing.can_transition_to(InProgress));
        assert!(InProgress.can_transition_to(Done));
        assert!(Done.can_transition_to(Todo));
        assert!(!Done.can_transition_to(InProgress));
        assert!(!Backlog.can_transition_to(Done));
        assert!(!Cancelled.can_transition_to(InProgress));
        assert!(!Failed.can_transition_to(Done));
        let err = Done.check_transition(id, Failed).err();
        assert_eq!(
            err,
            Some(TransitionError {
                task: id,
                from: Done,
                to: Failed
            })
        );
        assert_eq!("in_progress".parse::<TaskStatus>(), Ok(InProgress));
        assert!("doing".parse::<TaskStatus>().is_err());
    }

    #[test]
    fn new_task_validation() {
        assert!(NewTask::new("  ").into_task().is_err());
        assert!(
            NewTask::new("x".repeat(MAX_TITLE_LEN + 1))
                .into_task()
                .is_err()
        );
        assert!(NewTask::new("ok").tag("").into_task().is_err());
        let task = NewTask::new("ok").tag("rust").into_task();
        assert!(matches!(
            task,
            Ok(Task {
                status: TaskStatus::Backlog,
                version: 0,
                ..
            })
        ));
    }

    #[test]
    fn update_distinguishes_absent_from_null() {
        let clear: TaskUpdate =
            serde_json::from_str(r#"{"assigned_agent": null}"#).unwrap_or_default();
        assert_eq!(clear.assigned_agent, Some(None));
        let keep: TaskUpdate = serde_json::from_str("{}").unwrap_or_default();
        assert_eq!(keep.assigned_agent, None);
        let mut task = NewTask::new("t")
            .into_task()
            .unwrap_or_else(|e| panic!("{e}"));
        task.assigned_agent = AgentId::new("a").ok();
        assert!(
            TaskUpdate::status(TaskStatus::Done)
                .apply(&mut task)
                .is_err(),
            "backlog -> done is refused"
        );
        assert_eq!(
            task.status,
            TaskStatus::Backlog,
            "a refused update changes nothing"
        );
        clear.apply(&mut task).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(task.assigned_agent, None);
    }
}
