//! Agents: their cards, liveness, and the [`AgentClient`] trait the Hub reaches them through.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{AgentError, RegistryError};
use crate::ids::{AgentId, TaskId};
use crate::task::{Proposed, StepRecord, Task, TaskStatus};
use crate::template::Template;

/// How the Hub reaches an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "url", rename_all = "snake_case")]
pub enum AgentEndpoint {
    /// A Worker in the Hub's own process.
    InProcess,
    /// A Worker behind HTTP at this base URL (the original Ananta's `agent_url`).
    Url(String),
}

/// What an agent is and can do (registered with the Hub).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentCard {
    /// Unique name.
    pub name: AgentId,
    /// How to reach it.
    pub endpoint: AgentEndpoint,
    /// What it is good at, in prose (used for matching).
    #[serde(default)]
    pub description: String,
    /// Its specialisation: the system prompt it runs with.
    #[serde(default)]
    pub system_prompt: String,
    /// Tools it has (e.g. `git`, `cargo`, `docker`).
    #[serde(default)]
    pub tools: Vec<String>,
    /// Free-form tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Named capabilities (e.g. `max_parallel: 2`, `sandbox: landlock`).
    #[serde(default)]
    pub capabilities: BTreeMap<String, serde_json::Value>,
}

impl AgentCard {
    /// An in-process agent card with this name.
    pub fn in_process(name: AgentId) -> Self {
        Self {
            name,
            endpoint: AgentEndpoint::InProcess,
            description: String::new(),
            system_prompt: String::new(),
            tools: Vec::new(),
            tags: Vec::new(),
            capabilities: BTreeMap::new(),
        }
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Sets the system prompt (its specialisation; part of what tasks are matched against).
    pub fn system_prompt(mut self, prompt: impl Into<String>) -> Self {
        self.system_prompt = prompt.into();
        self
    }

    /// Adds a tool.
    pub fn tool(mut self, tool: impl Into<String>) -> Self {
        self.tools.push(tool.into());
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Checks the card.
    pub fn validate(&self) -> Result<(), RegistryError> {
        if let AgentEndpoint::Url(url) = &self.endpoint {
            let ok = (url.starts_with("http://") || url.starts_with("https://"))
                && url.len() > "https://".len()
                && !url.chars().any(char::is_whitespace);
            if !ok {
                return Err(RegistryError::InvalidCard(format!(
                    "agent url {url:?} must be an http(s) URL"
                )));
            }
        }
        if self.description.len() > 16 * 1024 || self.system_prompt.len() > 64 * 1024 {
            return Err(RegistryError::InvalidCard(
                "description or system prompt too long".into(),
            ));
        }
        Ok(())
    }

    /// The text an agent is matched on: name, description, specialisation, tools and tags.
    pub fn match_text(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.name,
            self.description,
            self.system_prompt,
            self.tools.join(" "),
            self.tags.join(" ")
        )
    }
}

/// Whether an agent is reachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// Registered, not yet checked.
    #[default]
    Unknown,
    /// Answering.
    Online,
    /// Not answering.
    Offline,
}

impl AgentStatus {
    /// The status as written in JSON (`unknown`, `online`, `offline`), e.g. for a column.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Online => "online",
            Self::Offline => "offline",
        }
    }
}

/// An agent as the registry knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentInfo {
    /// The card it registered with.
    pub card: AgentCard,
    /// Liveness.
    pub status: AgentStatus,
    /// Last registration or heartbeat.
    pub last_seen: DateTime<Utc>,
    /// When it first registered.
    pub registered_at: DateTime<Utc>,
    /// Increments when the card changes (re-registration with a different card).
    pub card_version: u64,
}

impl AgentInfo {
    /// The agent after registering `card` at `now`, given what the registry holds under the
    /// card's name (`existing`): the rule of [`AgentRegistry::register`](crate::registry::AgentRegistry::register)
    /// for every backend.
    ///
    /// A new agent starts at card version 1 with `registered_at = now`. A known one keeps its
    /// `registered_at`, and its card version goes up by one only when the card differs from
    /// the stored one. Either way the agent is online and was last seen `now`. The card is
    /// not checked here: call [`AgentCard::validate`] first.
    ///
    /// ```
    /// use ananta_core::agent::{AgentCard, AgentInfo, AgentStatus};
    /// use ananta_core::ids::AgentId;
    /// use chrono::{TimeDelta, Utc};
    ///
    /// let card = AgentCard::in_process(AgentId::new("rust")?);
    /// let t0 = Utc::now();
    /// let first = AgentInfo::registered(None, card.clone(), t0);
    /// assert_eq!((first.card_version, first.registered_at), (1, t0));
    ///
    /// let t1 = t0 + TimeDelta::seconds(5);
    /// let same = AgentInfo::registered(Some(&first), card.clone(), t1);
    /// assert_eq!((same.card_version, same.registered_at, same.last_seen), (1, t0, t1));
    ///
    /// let changed = AgentInfo::registered(Some(&same), card.description("writes Rust"), t1);
    /// assert_eq!(changed.card_version, 2);
    /// assert_eq!(changed.status, AgentStatus::Online);
    /// # Ok::<(), ananta_core::ids::ParseIdError>(())
    /// ```
    pub fn registered(existing: Option<&AgentInfo>, card: AgentCard, now: DateTime<Utc>) -> Self {
        match existing {
            Some(existing) => Self {
                card_version: existing.card_version + u64::from(existing.card != card),
                card,
                status: AgentStatus::Online,
                last_seen: now,
                registered_at: existing.registered_at,
            },
            None => Self {
                card,
                status: AgentStatus::Online,
                last_seen: now,
                registered_at: now,
                card_version: 1,
            },
        }
    }
}

/// What the Hub sends an agent to ask for the next step of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProposeRequest {
    /// The task with its step history.
    pub task: Task,
    /// The task's template, if it has one.
    #[serde(default)]
    pub template: Option<Template>,
}

/// What the Hub sends an agent to execute a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExecuteRequest {
    /// The task (its pending proposal is executed when `command` is `None`).
    pub task: Task,
    /// A command to run instead of the proposal (e.g. one a human edited).
    #[serde(default)]
    pub command: Option<String>,
    /// A human approved the command: a gate's `NeedsApproval` is satisfied (a `Deny` is not).
    #[serde(default)]
    pub approved: bool,
}

/// How the Hub reaches an agent: an in-process `Worker` implements it directly; a remote
/// worker is reached through an HTTP client implementing it.
#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait AgentClient: Send + Sync {
    /// Asks the agent for the next step of a task.
    async fn propose(&self, request: ProposeRequest) -> Result<Proposed, AgentError>;

    /// Lets the agent execute a step and returns the record of it.
    async fn execute(&self, request: ExecuteRequest) -> Result<StepRecord, AgentError>;

    /// Checks that the agent answers.
    async fn ping(&self) -> Result<(), AgentError>;

    /// The Hub is finished with `task` on this agent: its run ended in `status` (`done`,
    /// `review` or `failed`). An agent may clean up the task's workspace (see
    /// [`Workspaces`](crate::worker::Workspaces)); the default does nothing.
    async fn release(&self, task: TaskId, status: TaskStatus) -> Result<(), AgentError> {
        let _ = (task, status);
        Ok(())
    }
}
