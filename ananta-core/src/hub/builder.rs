//! [`HubBuilder`]: the parts and settings of a [`Hub`].

use std::sync::{Arc, Mutex};

use super::{Clients, Hub, HubInner, NodeAgents};
use crate::decompose::Decomposer;
use crate::error::Error;
use crate::event::EventBus;
use crate::ids::AgentId;
use crate::llm::LlmProvider;
use crate::matching::AgentMatcher;
use crate::registry::{AgentRegistry, InMemoryRegistry};
use crate::store::TaskStore;

/// Builds a [`Hub`].
#[derive(Default)]
pub struct HubBuilder {
    store: Option<Arc<dyn TaskStore>>,
    registry: Option<Arc<dyn AgentRegistry>>,
    event_capacity: Option<usize>,
    reassign_offline: bool,
    decomposer: Option<Arc<dyn Decomposer>>,
    embeddings: Option<Arc<dyn LlmProvider>>,
    match_threshold: Option<f32>,
    fallback_agent: Option<AgentId>,
}

impl HubBuilder {
    /// Where tasks, templates and logs live (required; e.g. `ananta_store::MemoryStore`).
    pub fn store(mut self, store: Arc<dyn TaskStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The agent registry (default: [`InMemoryRegistry`]).
    pub fn registry(mut self, registry: Arc<dyn AgentRegistry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Events buffered per subscriber before a slow one starts missing them (default 1024).
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = Some(capacity);
        self
    }

    /// When a task's agent is offline, hand the task to the best-matching online agent
    /// instead of failing the step with [`Error::AgentOffline`] (default: off).
    pub fn reassign_offline(mut self, on: bool) -> Self {
        self.reassign_offline = on;
        self
    }

    /// How [`Hub::orchestrate`] splits a prompt into a plan (e.g. an
    /// [`LlmDecomposer`](crate::decompose::LlmDecomposer)); without one, only [`Hub::run_plan`] runs.
    pub fn decomposer(mut self, decomposer: Arc<dyn Decomposer>) -> Self {
        self.decomposer = Some(decomposer);
        self
    }

    /// Match a run's tasks to agents with `provider`'s embeddings (the built-in lexical
    /// embedder stands in when it offers none or fails; see [`AgentMatcher`]).
    pub fn embeddings(mut self, provider: Arc<dyn LlmProvider>) -> Self {
        self.embeddings = Some(provider);
        self
    }

    /// Below this similarity a run's task goes to the fallback agent (default 0.1).
    pub fn match_threshold(mut self, threshold: f32) -> Self {
        self.match_threshold = Some(threshold);
        self
    }

    /// The agent a run's task goes to when no agent reaches the match threshold (default:
    /// the best match anyway).
    pub fn fallback_agent(mut self, agent: AgentId) -> Self {
        self.fallback_agent = Some(agent);
        self
    }

    /// Builds the hub; fails without a store.
    pub fn build(self) -> Result<Hub, Error> {
        let store = self
            .store
            .ok_or_else(|| Error::InvalidInput("Hub needs a TaskStore".into()))?;
        let registry = self
            .registry
            .unwrap_or_else(|| Arc::new(InMemoryRegistry::new()));
        let node_agents: NodeAgents = Arc::default();
        let clients: Clients = Arc::default();
        let (runnable, connected) = (node_agents.clone(), clients.clone());
        let mut matcher = AgentMatcher::new(registry.clone()).candidates(move |info| {
            runnable
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(&info.card.name)
                || connected
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains_key(&info.card.name)
        });
        if let Some(provider) = self.embeddings {
            matcher = matcher.embeddings(provider);
        }
        if let Some(threshold) = self.match_threshold {
            matcher = matcher.threshold(threshold);
        }
        if let Some(agent) = self.fallback_agent {
            matcher = matcher.fallback(agent);
        }
        Ok(Hub {
            inner: Arc::new(HubInner {
                store,
                registry,
                clients,
                events: EventBus::new(self.event_capacity.unwrap_or(1024)),
                reassign_offline: self.reassign_offline,
                decomposer: self.decomposer,
                matcher,
                node_agents,
                active_runs: Mutex::default(),
                task_runs: Mutex::default(),
            }),
        })
    }
}
