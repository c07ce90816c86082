//! Agents: their cards, liveness, and the [`AgentClient`] trait the Hub reaches them through.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{AgentError, RegistryError};
use crate::ids::AgentId;
use crate::task::{Proposed, StepRecord, Task};
use crate::template::Template;

/// How the Hub reaches an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "url", rename_all = "snake_case")]
pub enum AgentEndpoint {
    /// A Worker in the Hub's own process.
    InProcess,
    /// A Worker behind HTTP at this base URL (the seed's `agent_url`).
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
}

/// How the Hub reaches an agent: an in-process `Worker` implements it directly; a remote
/// worker is reached through an HTTP client implementing it.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait AgentClient: Send + Sync {
    /// Asks the agent for the next step of a task.
    async fn propose(&self, request: ProposeRequest) -> Result<Proposed, AgentError>;

    /// Lets the agent execute a step and returns the record of it.
    async fn execute(&self, request: ExecuteRequest) -> Result<StepRecord, AgentError>;

    /// Checks that the agent answers.
    async fn ping(&self) -> Result<(), AgentError>;
}
