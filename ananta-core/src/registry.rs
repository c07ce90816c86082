//! The [`AgentRegistry`] trait and the in-memory registry.

use std::collections::BTreeMap;
use std::sync::RwLock;

use async_trait::async_trait;
use chrono::Utc;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agent::{AgentCard, AgentInfo, AgentStatus};
use crate::embed::LexicalEmbedder;
use crate::error::RegistryError;
use crate::ids::AgentId;

/// One candidate of [`AgentRegistry::best_match`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentMatch {
    /// The agent.
    pub agent: AgentId,
    /// Similarity in `[0, 1]`; higher is better.
    pub score: f32,
}

/// Who knows which agents exist, whether they are alive, and which fits a task best.
#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait AgentRegistry: Send + Sync {
    /// Registers an agent, or updates its card when the name is known (a heartbeat with a card).
    async fn register(&self, card: AgentCard) -> Result<AgentInfo, RegistryError>;

    /// Removes an agent.
    async fn deregister(&self, id: AgentId) -> Result<(), RegistryError>;

    /// Reads one agent.
    async fn get(&self, id: AgentId) -> Result<AgentInfo, RegistryError>;

    /// All agents, by name.
    async fn list(&self) -> Result<Vec<AgentInfo>, RegistryError>;

    /// Records a heartbeat: `last_seen` now, status online.
    async fn heartbeat(&self, id: AgentId) -> Result<AgentInfo, RegistryError>;

    /// Sets an agent's liveness (used by monitoring).
    async fn set_status(
        &self,
        id: AgentId,
        status: AgentStatus,
    ) -> Result<AgentInfo, RegistryError>;

    /// The `k` agents that fit `text` best, best first; only agents not known to be offline
    /// are candidates.
    async fn best_match(&self, text: String, k: usize) -> Result<Vec<AgentMatch>, RegistryError>;
}

/// Ranks `agents` for a task described by `text`: the `k` that fit best (at least one), best
/// first. Every [`AgentRegistry`] answers [`best_match`](AgentRegistry::best_match) with it,
/// so all backends rank alike.
///
/// The score is the cosine similarity, in `[0, 1]`, of the [`LexicalEmbedder`] vectors of
/// `text` and of each candidate's [`match_text`](AgentCard::match_text) — hashed words, word
/// pairs and character trigrams, TF-IDF weighted over the candidates' texts: a lexical match
/// that needs no model, and the same one [`AgentMatcher`](crate::matching::AgentMatcher) falls
/// back to. Agents known to be offline are not candidates; agents whose status is unknown
/// are. Equal scores are ordered by name.
///
/// Fails with [`RegistryError::NoCandidate`] when no agent is a candidate.
///
/// ```
/// use ananta_core::agent::{AgentCard, AgentInfo, AgentStatus};
/// use ananta_core::error::RegistryError;
/// use ananta_core::ids::AgentId;
/// use ananta_core::registry::rank_agents;
/// use chrono::Utc;
///
/// let agent = |name: &str, description: &str| {
///     let card = AgentCard::in_process(AgentId::new(name).unwrap()).description(description);
///     AgentInfo::registered(None, card, Utc::now())
/// };
/// let mut agents = vec![
///     agent("rust", "writes Rust code, runs cargo build and cargo test"),
///     agent("docs", "writes documentation and markdown"),
///     agent("ops", "deploys with docker"),
/// ];
///
/// let best = rank_agents(&agents, "run cargo test for the Rust crate", 2)?;
/// assert_eq!(best.len(), 2);
/// assert_eq!(best[0].agent.as_str(), "rust");
/// assert!(best[0].score > best[1].score);
///
/// // Offline agents are left out; with none left there is no candidate.
/// for a in &mut agents {
///     a.status = AgentStatus::Offline;
/// }
/// assert!(matches!(rank_agents(&agents, "cargo", 1), Err(RegistryError::NoCandidate(_))));
/// # Ok::<(), RegistryError>(())
/// ```
pub fn rank_agents<'a>(
    agents: impl IntoIterator<Item = &'a AgentInfo>,
    text: &str,
    k: usize,
) -> Result<Vec<AgentMatch>, RegistryError> {
    let candidates: Vec<(&AgentId, String)> = agents
        .into_iter()
        .filter(|a| a.status != AgentStatus::Offline)
        .map(|a| (&a.card.name, a.card.match_text()))
        .collect();
    let embedder = LexicalEmbedder::fit(
        crate::embed::LEXICAL_DIMENSION,
        candidates.iter().map(|(_, t)| t.as_str()),
    );
    let query = embedder.embed(text);
    let mut matches: Vec<AgentMatch> = candidates
        .iter()
        .map(|(name, t)| {
            let v = embedder.embed(t);
            AgentMatch {
                agent: (*name).clone(),
                score: crate::embed::dot(&query, &v).clamp(0.0, 1.0),
            }
        })
        .collect();
    if matches.is_empty() {
        return Err(RegistryError::NoCandidate(
            "no agent is registered and online".into(),
        ));
    }
    matches.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.agent.cmp(&b.agent))
    });
    matches.truncate(k.max(1));
    Ok(matches)
}

/// An [`AgentRegistry`] in memory, for one Hub process.
///
/// `best_match` ranks agents with [`rank_agents`]: the cosine similarity of the lexical
/// vectors of the task text and each agent's [`match_text`](AgentCard::match_text) — a
/// match that needs no model.
#[derive(Debug, Default)]
pub struct InMemoryRegistry {
    agents: RwLock<BTreeMap<AgentId, AgentInfo>>,
}

impl InMemoryRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<AgentId, AgentInfo>> {
        self.agents.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<AgentId, AgentInfo>> {
        self.agents.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl AgentRegistry for InMemoryRegistry {
    async fn register(&self, card: AgentCard) -> Result<AgentInfo, RegistryError> {
        card.validate()?;
        let mut agents = self.write();
        let info = AgentInfo::registered(agents.get(&card.name), card, Utc::now());
        agents.insert(info.card.name.clone(), info.clone());
        Ok(info)
    }

    async fn deregister(&self, id: AgentId) -> Result<(), RegistryError> {
        self.write()
            .remove(&id)
            .map(|_| ())
            .ok_or(RegistryError::NotFound(id))
    }

    async fn get(&self, id: AgentId) -> Result<AgentInfo, RegistryError> {
        self.read()
            .get(&id)
            .cloned()
            .ok_or(RegistryError::NotFound(id))
    }

    async fn list(&self) -> Result<Vec<AgentInfo>, RegistryError> {
        Ok(self.read().values().cloned().collect())
    }

    async fn heartbeat(&self, id: AgentId) -> Result<AgentInfo, RegistryError> {
        let mut agents = self.write();
        let info = agents
            .get_mut(&id)
            .ok_or_else(|| RegistryError::NotFound(id.clone()))?;
        info.last_seen = Utc::now();
        info.status = AgentStatus::Online;
        Ok(info.clone())
    }

    async fn set_status(
        &self,
        id: AgentId,
        status: AgentStatus,
    ) -> Result<AgentInfo, RegistryError> {
        let mut agents = self.write();
        let info = agents
            .get_mut(&id)
            .ok_or_else(|| RegistryError::NotFound(id.clone()))?;
        info.status = status;
        Ok(info.clone())
    }

    async fn best_match(&self, text: String, k: usize) -> Result<Vec<AgentMatch>, RegistryError> {
        rank_agents(self.read().values(), &text, k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::AgentEndpoint;

    fn card(name: &str, description: &str) -> AgentCard {
        AgentCard::in_process(AgentId::new(name).unwrap()).description(description)
    }

    #[tokio::test]
    async fn register_heartbeat_and_match() {
        let reg = InMemoryRegistry::new();
        reg.register(card(
            "rust",
            "writes Rust code, runs cargo build and cargo test",
        ))
        .await
        .unwrap();
        reg.register(card("docs", "writes documentation and markdown"))
            .await
            .unwrap();
        let best = reg
            .best_match("run cargo test for the Rust crate".into(), 2)
            .await
            .unwrap();
        assert_eq!(best[0].agent.as_str(), "rust");
        assert!(best[0].score > best[1].score);

        let again = reg.register(card("rust", "changed")).await.unwrap();
        assert_eq!(again.card_version, 2);
        reg.set_status(AgentId::new("rust").unwrap(), AgentStatus::Offline)
            .await
            .unwrap();
        let best = reg.best_match("cargo".into(), 5).await.unwrap();
        assert_eq!(best.len(), 1, "offline agents are not candidates");
        assert_eq!(
            reg.heartbeat(AgentId::new("rust").unwrap())
                .await
                .unwrap()
                .status,
            AgentStatus::Online
        );
        assert!(matches!(
            reg.get(AgentId::new("ghost").unwrap()).await,
            Err(RegistryError::NotFound(_))
        ));
        let mut bad = card("bad", "");
        bad.endpoint = AgentEndpoint::Url("ftp://x".into());
        assert!(matches!(
            reg.register(bad).await,
            Err(RegistryError::InvalidCard(_))
        ));
    }

    #[test]
    fn ranking_breaks_ties_by_name_and_returns_at_least_one() {
        let now = Utc::now();
        let agents: Vec<AgentInfo> = ["zeta", "alpha", "mid"]
            .into_iter()
            .map(|n| AgentInfo::registered(None, card(n, "shell work"), now))
            .collect();
        // Nothing in common with any agent: every score is 0, and names decide.
        let all = rank_agents(&agents, "quantum", 10).unwrap();
        let names: Vec<&str> = all.iter().map(|m| m.agent.as_str()).collect();
        assert_eq!(names, ["alpha", "mid", "zeta"]);
        assert!(all.iter().all(|m| m.score == 0.0));
        let one = rank_agents(&agents, "quantum", 0).unwrap();
        assert_eq!(one.len(), 1, "k = 0 still gives the best agent");
        assert!(matches!(
            rank_agents(&[], "anything", 3),
            Err(RegistryError::NoCandidate(_))
        ));
    }

    #[test]
    fn registration_rule() {
        let t0 = Utc::now();
        let t1 = t0 + chrono::TimeDelta::seconds(1);
        let mut first = AgentInfo::registered(None, card("a", "x"), t0);
        assert_eq!(first.card_version, 1);
        assert_eq!((first.registered_at, first.last_seen), (t0, t0));
        first.status = AgentStatus::Offline;
        let again = AgentInfo::registered(Some(&first), card("a", "x"), t1);
        assert_eq!(again.card_version, 1);
        assert_eq!((again.registered_at, again.last_seen), (t0, t1));
        assert_eq!(again.status, AgentStatus::Online);
        let changed = AgentInfo::registered(Some(&again), card("a", "y"), t1);
        assert_eq!(changed.card_version, 2);
        assert_eq!(changed.card.description, "y");
    }
}
