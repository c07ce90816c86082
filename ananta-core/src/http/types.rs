//! Request and response bodies of the HTTP API that are not domain types themselves.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agent::{AgentCard, AgentEndpoint, AgentInfo};
use crate::ids::{AgentId, TaskId};
use crate::task::Task;
use crate::template::Template;

/// The header that carries an execute request's idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// `GET /health`: `{"status": "ok", "name", "role"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HealthResponse {
    /// Always `ok` when the server answers.
    pub status: String,
    /// The agent's name (`AGENT_NAME`).
    #[serde(default)]
    pub name: String,
    /// `hub` or `worker`.
    #[serde(default)]
    pub role: String,
}

/// `POST /register` on a hub: a worker announces itself (and, sent again on an interval, its
/// heartbeat — as the seed's workers did).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RegisterRequest {
    /// The worker's unique name.
    pub name: AgentId,
    /// The worker's base URL (the seed's `agent_url`), e.g. `http://127.0.0.1:5001`.
    pub agent_url: String,
    /// The token the hub must send the worker (its `AGENT_TOKEN`), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// What the worker is good at.
    #[serde(default)]
    pub description: String,
    /// Its specialisation (system prompt).
    #[serde(default)]
    pub system_prompt: String,
    /// Tools it has.
    #[serde(default)]
    pub tools: Vec<String>,
    /// Free-form tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Named capabilities.
    #[serde(default)]
    pub capabilities: BTreeMap<String, serde_json::Value>,
    /// The hub's registration secret, when the hub requires one (instead of a hub token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_secret: Option<String>,
}

impl RegisterRequest {
    /// A registration of `name` reachable at `agent_url`.
    pub fn new(name: AgentId, agent_url: impl Into<String>) -> Self {
        Self {
            name,
            agent_url: agent_url.into(),
            token: None,
            description: String::new(),
            system_prompt: String::new(),
            tools: Vec::new(),
            tags: Vec::new(),
            capabilities: BTreeMap::new(),
            registration_secret: None,
        }
    }

    /// The card the hub registers for it.
    pub fn card(&self) -> AgentCard {
        AgentCard {
            name: self.name.clone(),
            endpoint: AgentEndpoint::Url(self.agent_url.trim_end_matches('/').to_string()),
            description: self.description.clone(),
            system_prompt: self.system_prompt.clone(),
            tools: self.tools.clone(),
            tags: self.tags.clone(),
            capabilities: self.capabilities.clone(),
        }
    }
}

/// The hub's answer to `POST /register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RegisterResponse {
    /// The agent as the hub's registry now knows it.
    pub agent: AgentInfo,
    /// How often the hub expects the registration again (the heartbeat), in seconds.
    pub heartbeat_interval_secs: u64,
}

/// `POST /step/propose` on a worker: the task (with its history) and its template — what a
/// hub forwards — or, as in the seed, just a `prompt` for a one-off task.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct WorkerProposeBody {
    /// The task (a hub sends it).
    #[serde(default)]
    pub task: Option<Task>,
    /// The task's template.
    #[serde(default)]
    pub template: Option<Template>,
    /// A one-off instruction when no task is given (the seed's `{"prompt": …}`).
    #[serde(default)]
    pub prompt: Option<String>,
}

/// `POST /step/execute` on a worker: the task and a command (or the task's proposal), or, as
/// in the seed, just a `command` (with an optional `task_id` for the log).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct WorkerExecuteBody {
    /// The task (a hub sends it; its pending proposal runs when `command` is absent).
    #[serde(default)]
    pub task: Option<Task>,
    /// The command to run.
    #[serde(default)]
    pub command: Option<String>,
    /// A human approved the command.
    #[serde(default)]
    pub approved: bool,
    /// The task a one-off command belongs to, for the log.
    #[serde(default)]
    pub task_id: Option<TaskId>,
}
