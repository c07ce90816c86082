//! The Hub's agents: registration, connected clients and node agents, status, health checks
//! and the monitor that marks silent agents offline.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Hub;
use crate::agent::{AgentCard, AgentClient, AgentInfo, AgentStatus};
use crate::error::Error;
use crate::event::EventKind;
use crate::ids::AgentId;
use crate::pipeline::NodeAgent;
use crate::worker::Progress;

impl Hub {
    /// Registers an agent and the client that reaches it (an in-process `Worker`, or a
    /// remote client). Registering a known name again updates its card and client, and counts
    /// as a heartbeat: the agent is online and was last seen now.
    ///
    /// Publishes `AgentRegistered` when the agent is new or its card changed, and
    /// `AgentStatusChanged` when it was offline before.
    pub async fn register_agent(
        &self,
        card: AgentCard,
        client: Arc<dyn AgentClient>,
    ) -> Result<AgentInfo, Error> {
        let (before, info) = self.register_card(card).await?;
        self.inner
            .clients
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(info.card.name.clone(), client);
        self.announce(before.as_ref(), &info);
        Ok(info)
    }

    /// Registers an in-process `worker` in one call: its [card](crate::worker::Worker::card) (its
    /// specialisation as the description matching reads) and the worker itself as the client
    /// the Hub forwards steps to.
    ///
    /// ```
    /// # async fn demo(hub: ananta_core::Hub, worker: ananta_core::Worker) -> Result<(), ananta_core::Error> {
    /// let info = hub.register_worker(&worker).await?;
    /// assert_eq!(&info.card.name, worker.name());
    /// # Ok(()) }
    /// ```
    pub async fn register_worker(
        &self,
        worker: &crate::worker::Worker,
    ) -> Result<AgentInfo, Error> {
        // The worker's live progress becomes events on this hub's bus.
        let events = Arc::downgrade(&self.inner);
        let key = format!("hub:{:p}", Arc::as_ptr(&self.inner));
        worker.add_progress_sink(
            key,
            Arc::new(move |progress| {
                let Some(inner) = events.upgrade() else {
                    return;
                };
                let kind = match progress {
                    Progress::LlmDelta {
                        task_id,
                        step,
                        text,
                    } => EventKind::LlmDelta {
                        task_id,
                        step,
                        text,
                    },
                    Progress::CommandOutput {
                        task_id,
                        step,
                        stream,
                        text,
                    } => EventKind::CommandOutput {
                        task_id,
                        step,
                        stream,
                        text,
                    },
                };
                inner.events.publish(kind);
            }),
        );
        self.register_agent(worker.card(), Arc::new(worker.clone()))
            .await
    }

    /// Registers `card`, returning the agent as it was before (if known) and as it is now.
    async fn register_card(
        &self,
        card: AgentCard,
    ) -> Result<(Option<AgentInfo>, AgentInfo), Error> {
        let before = match self.inner.registry.get(card.name.clone()).await {
            Ok(info) => Some(info),
            Err(crate::error::RegistryError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let info = self.inner.registry.register(card).await?;
        Ok((before, info))
    }

    /// Publishes `AgentRegistered` for a new or changed card, `AgentStatusChanged` for an
    /// agent that was not online before.
    fn announce(&self, before: Option<&AgentInfo>, info: &AgentInfo) {
        if before.is_none_or(|b| b.card_version != info.card_version) {
            tracing::info!(agent = %info.card.name, version = info.card_version, "agent registered");
            self.publish(EventKind::AgentRegistered {
                agent: Box::new(info.clone()),
            });
        }
        if before.is_some_and(|b| b.status != AgentStatus::Online) {
            tracing::info!(agent = %info.card.name, "agent is back online");
            self.publish(EventKind::AgentStatusChanged {
                agent: info.card.name.clone(),
                status: AgentStatus::Online,
            });
        }
    }

    /// Registers an agent that works on the tasks of orchestration runs
    /// ([`Hub::orchestrate`]): a [`TextAgent`](crate::pipeline::TextAgent), a
    /// [`ShellAgent`](crate::pipeline::ShellAgent) or any other [`NodeAgent`]. Its card is
    /// what tasks are matched against (name, description, system prompt as its
    /// specialisation, tools, tags). Registering a known name again replaces its card and
    /// agent. Only agents registered this way, or with [`register_agent`](Self::register_agent)
    /// in this process (they work on the run's board task themselves), and online, are
    /// matched to a run's tasks.
    pub async fn add_node_agent(
        &self,
        card: AgentCard,
        agent: Arc<dyn NodeAgent>,
    ) -> Result<AgentInfo, Error> {
        let (before, info) = self.register_card(card).await?;
        self.inner
            .node_agents
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(info.card.name.clone(), agent);
        self.announce(before.as_ref(), &info);
        Ok(info)
    }

    /// The agent registered with [`add_node_agent`](Self::add_node_agent) under `id`.
    pub fn node_agent(&self, id: &AgentId) -> Option<Arc<dyn NodeAgent>> {
        self.inner
            .node_agents
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Whether the hub holds a client for the agent (registered in this process).
    pub fn is_connected(&self, id: &AgentId) -> bool {
        self.inner
            .clients
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(id)
    }

    /// Removes an agent.
    pub async fn deregister_agent(&self, id: &AgentId) -> Result<(), Error> {
        self.inner.registry.deregister(id.clone()).await?;
        self.inner
            .clients
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        self.inner
            .node_agents
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        Ok(())
    }

    /// All agents.
    pub async fn list_agents(&self) -> Result<Vec<AgentInfo>, Error> {
        Ok(self.inner.registry.list().await?)
    }

    /// Reads one agent.
    pub async fn get_agent(&self, id: &AgentId) -> Result<AgentInfo, Error> {
        Ok(self.inner.registry.get(id.clone()).await?)
    }

    /// Sets an agent's liveness; publishes `AgentStatusChanged` when it changed.
    pub async fn set_agent_status(
        &self,
        id: &AgentId,
        status: AgentStatus,
    ) -> Result<AgentInfo, Error> {
        let before = self.inner.registry.get(id.clone()).await?.status;
        let info = self.inner.registry.set_status(id.clone(), status).await?;
        if before != status {
            tracing::info!(agent = %id, ?status, "agent status changed");
            self.publish(EventKind::AgentStatusChanged {
                agent: id.clone(),
                status,
            });
        }
        Ok(info)
    }

    /// Pings every connected agent once and records who answered (online) and who did not
    /// (offline). Returns each agent's new status.
    pub async fn check_agents(&self, timeout: Duration) -> Vec<(AgentId, AgentStatus)> {
        let clients: Vec<(AgentId, Arc<dyn AgentClient>)> = self
            .inner
            .clients
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(id, c)| (id.clone(), c.clone()))
            .collect();
        let checks = clients.into_iter().map(|(id, client)| async move {
            let alive = matches!(
                tokio::time::timeout(timeout, client.ping()).await,
                Ok(Ok(()))
            );
            (
                id,
                if alive {
                    AgentStatus::Online
                } else {
                    AgentStatus::Offline
                },
            )
        });
        let results = futures::future::join_all(checks).await;
        for (id, status) in &results {
            if let Err(e) = self.set_agent_status(id, *status).await {
                tracing::warn!(agent = %id, error = %e, "could not record agent status");
            }
        }
        results
    }

    /// Checks agents every `interval` until `cancel` fires (spawn it on the runtime).
    pub async fn monitor_agents(
        &self,
        interval: Duration,
        timeout: Duration,
        cancel: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = ticker.tick() => { self.check_agents(timeout).await; }
            }
        }
    }

    pub(super) fn client(&self, agent: &AgentId) -> Result<Arc<dyn AgentClient>, Error> {
        self.inner
            .clients
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(agent)
            .cloned()
            .ok_or_else(|| Error::AgentNotConnected(agent.clone()))
    }
}
