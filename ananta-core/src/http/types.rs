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
/// heartbeat — as the original Ananta's workers did).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RegisterRequest {
    /// The worker's unique name.
    pub name: AgentId,
    /// The worker's base URL (the original Ananta's `agent_url`), e.g. `http://127.0.0.1:5001`.
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
/// hub forwards — or, as in the original Ananta, just a `prompt` for a one-off task.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct WorkerProposeBody {
    /// The task (a hub sends it).
    #[serde(default)]
    pub task: Option<Task>,
    /// The task's template.
    #[serde(default)]
    pub template: Option<Template>,
    /// A one-off instruction when no task is given (the original Ananta's `{"prompt": …}`).
    #[serde(default)]
    pub prompt: Option<String>,
}

/// `POST /step/execute` on a worker: the task and a command (or the task's proposal), or, as
/// in the original Ananta, just a `command` (with an optional `task_id` for the log).
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

/// The hub's `/config`: how it watches its agents. `POST /config` takes any subset of the
/// fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HubSettings {
    /// How often workers should register again (their heartbeat), in seconds (at least 1).
    pub heartbeat_interval_secs: u64,
    /// An agent not heard from for this long is marked offline, in seconds (more than the
    /// heartbeat interval).
    pub offline_after_secs: u64,
    /// How often the hub checks its agents' `/health`, in seconds (at least 1).
    pub check_interval_secs: u64,
    /// How long a health check may take, in milliseconds (at least 100).
    pub health_timeout_ms: u64,
}

impl Default for HubSettings {
    fn default() -> Self {
        Self {
            heartbeat_interval_secs: 10,
            offline_after_secs: 30,
            check_interval_secs: 10,
            health_timeout_ms: 3_000,
        }
    }
}

impl HubSettings {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), crate::error::InvalidInput> {
        if self.heartbeat_interval_secs == 0 || self.check_interval_secs == 0 {
            return Err(crate::error::InvalidInput::new(
                "settings",
                "intervals must be at least 1 second",
            ));
        }
        if self.offline_after_secs <= self.heartbeat_interval_secs {
            return Err(crate::error::InvalidInput::new(
                "settings",
                "offline_after_secs must be longer than the heartbeat interval",
            ));
        }
        if self.health_timeout_ms < 100 {
            return Err(crate::error::InvalidInput::new(
                "settings",
                "health_timeout_ms must be at least 100",
            ));
        }
        if self.heartbeat_interval_secs > 86_400
            || self.offline_after_secs > 7 * 86_400
            || self.check_interval_secs > 86_400
            || self.health_timeout_ms > 600_000
        {
            return Err(crate::error::InvalidInput::new(
                "settings",
                "a setting is out of range (intervals up to a day, timeouts up to 10 minutes)",
            ));
        }
        Ok(())
    }
}

/// `GET /tasks` filters.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct TasksQuery {
    /// Comma-separated statuses (`todo,in_progress`).
    #[serde(default)]
    pub status: Option<String>,
    /// Only tasks assigned to this agent.
    #[serde(default)]
    pub agent: Option<AgentId>,
    /// Only tasks with this tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// At most this many.
    #[serde(default)]
    pub limit: Option<usize>,
}

/// `GET /logs` and `GET /tasks/{id}/logs`: the original Ananta's `?limit=&task_id=`, paging with
/// `before_seq`, and `follow=true` for a live stream (server-sent events) of a task's log.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct LogsQuery {
    /// The latest this many entries (default 100, at most 10,000).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Only entries of this task.
    #[serde(default)]
    pub task_id: Option<TaskId>,
    /// Only entries before this sequence number.
    #[serde(default)]
    pub before_seq: Option<u64>,
    /// Stream the log live as server-sent events (`GET /tasks/{id}/logs` only).
    #[serde(default)]
    pub follow: bool,
}

/// `GET /events` filter.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct EventsQuery {
    /// Only events about this task.
    #[serde(default)]
    pub task_id: Option<TaskId>,
}

/// `PATCH /tasks/{id}` optimistic concurrency.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct PatchQuery {
    /// Fail with 409 `version_conflict` unless the task is at this version.
    #[serde(default)]
    pub expected_version: Option<u64>,
}

/// `POST /tasks/{id}/assign`: an agent by name, or — as in the original Ananta — by URL with the token
/// the hub must send it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct AssignBody {
    /// A registered agent's name.
    #[serde(default)]
    pub agent: Option<AgentId>,
    /// A worker's base URL; an unknown one is checked (`/health`) and registered.
    #[serde(default)]
    pub agent_url: Option<String>,
    /// The worker's token (its `AGENT_TOKEN`).
    #[serde(default)]
    pub token: Option<String>,
}

/// `POST /tasks/{id}/step/execute` and `/approve`: a command to run instead of the proposal.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct CommandBody {
    /// The command (default: the task's pending proposal).
    #[serde(default)]
    pub command: Option<String>,
}

/// `POST /step/propose` and `/step/execute` on a hub: the task the step belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct HubStepBody {
    /// The task.
    #[serde(default)]
    pub task_id: Option<TaskId>,
    /// The command to run instead of the proposal (execute only).
    #[serde(default)]
    pub command: Option<String>,
}

/// `POST /tasks/{id}/reject`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct RejectBody {
    /// Why (logged).
    #[serde(default)]
    pub reason: String,
}

/// `POST /rotate-token`: the new token (the old one is no longer accepted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RotateResponse {
    /// The new `AGENT_TOKEN`.
    pub token: String,
}

/// `POST /tasks/{id}/run`: the budgets of the autonomous run (every field optional).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// Most turns (steps plus answers fed back), 1–1,000 (default 10).
    #[serde(default)]
    pub max_steps: Option<u32>,
    /// Most tokens the run may use.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// Count the model's "finished" as done on a task without acceptance checks.
    #[serde(default)]
    pub trust_model: bool,
    /// Seconds a command held for a human waits inside the run, 0–86,400 (default 600; 0
    /// stops the run at the held command).
    #[serde(default)]
    pub approval_wait_secs: Option<u64>,
}

impl RunBody {
    /// The limits these fields stand for, or what is wrong with them.
    pub fn limits(&self) -> Result<crate::steps::StepLimits, crate::error::InvalidInput> {
        use crate::error::InvalidInput;
        let max_steps = self.max_steps.unwrap_or(10);
        if !(1..=1_000).contains(&max_steps) {
            return Err(InvalidInput::new("max_steps", "max_steps must be 1–1000"));
        }
        let mut limits = crate::steps::StepLimits::steps(max_steps).trust_model(self.trust_model);
        if let Some(tokens) = self.max_tokens {
            if tokens == 0 {
                return Err(InvalidInput::new(
                    "max_tokens",
                    "max_tokens must be at least 1",
                ));
            }
            limits = limits.max_tokens(tokens);
        }
        match self.approval_wait_secs {
            Some(0) => limits = limits.approval_wait(None),
            Some(secs) if secs > 86_400 => {
                return Err(InvalidInput::new(
                    "approval_wait_secs",
                    "approval_wait_secs must be at most 86400",
                ));
            }
            Some(secs) => {
                limits = limits.approval_wait(Some(std::time::Duration::from_secs(secs)));
            }
            None => {}
        }
        Ok(limits)
    }
}

/// The answer of `POST /tasks/{id}/run`: the run started; follow it on `GET /events?task_id=`
/// (it ends with a `task_run_finished` event) and stop it with `DELETE /tasks/{id}/run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RunStartedResponse {
    /// The task.
    pub task_id: TaskId,
    /// Its turn budget.
    pub max_steps: u32,
    /// Where its progress streams.
    pub events: String,
}
