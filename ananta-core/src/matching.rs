//! Matching a task to the agent that fits it best, by embedding similarity.
//!
//! [`AgentMatcher`] embeds each agent's [`match_text`](crate::agent::AgentCard::match_text)
//! (name, description, specialisation, tools, tags) once per card version and keeps the
//! vectors of the online agents in an [`EmbeddingIndex`]; a task's description is embedded and
//! compared by cosine similarity. Embeddings come from an [`LlmProvider`] when one is given and
//! offers them, and from the model-free [`LexicalEmbedder`] otherwise (also when the provider
//! fails), so matching works on a fresh machine with no model at all.

use std::collections::HashMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::agent::{AgentInfo, AgentStatus};
use crate::embed::{EmbeddingIndex, LexicalEmbedder};

use crate::error::RegistryError;
use crate::ids::AgentId;
use crate::llm::LlmProvider;
use crate::registry::{AgentMatch, AgentRegistry};

/// Why an agent was chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum MatchReason {
    /// The caller pinned the task to this agent.
    Pinned,
    /// The most similar online agent, at or above the threshold.
    BestMatch,
    /// No agent reached the threshold; the fallback agent was used.
    Fallback {
        /// The best score any agent reached.
        best_score: f32,
    },
}

/// The agent chosen for a task, with the evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MatchDecision {
    /// The chosen agent.
    pub agent: AgentId,
    /// Its similarity to the task (1 when pinned).
    pub score: f32,
    /// Why.
    #[serde(flatten)]
    pub reason: MatchReason,
    /// The best candidates, best first.
    pub candidates: Vec<AgentMatch>,
    /// Which embeddings were compared: `lexical` or the provider's name.
    pub embedder: String,
}

#[derive(Default)]
struct Cache {
    /// Provider vectors per agent and card version.
    vectors: HashMap<(AgentId, u64), Vec<f32>>,
    /// The online agents (name, card version) the index was built for, in row order.
    rows: Vec<(AgentId, u64)>,
    /// Their match texts, in row order.
    texts: Vec<String>,
    index: Option<EmbeddingIndex>,
    lexical: Option<LexicalEmbedder>,
    provider_failed: bool,
}

/// Chooses agents for tasks by embedding similarity; see the [module](self).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// use std::sync::Arc;
/// use ananta_core::{AgentCard, AgentId, AgentRegistry};
/// use ananta_core::registry::InMemoryRegistry;
/// use ananta_core::matching::{AgentMatcher, MatchReason};
///
/// let registry = Arc::new(InMemoryRegistry::new());
/// for (name, what) in [("translator", "translates text between German and English"),
///                      ("reviewer", "reviews Rust code for bugs")] {
///     registry.register(AgentCard::in_process(AgentId::new(name)?).description(what)).await?;
/// }
/// let matcher = AgentMatcher::new(registry.clone());
/// let decision = matcher.choose("translate the summary into English", None).await?;
/// assert_eq!(decision.agent.as_str(), "translator");
/// assert_eq!(decision.reason, MatchReason::BestMatch);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct AgentMatcher {
    registry: Arc<dyn AgentRegistry>,
    provider: Option<Arc<dyn LlmProvider>>,
    threshold: f32,
    fallback: Option<AgentId>,
    dimension: usize,
    candidates: Option<CandidateFilter>,
    cache: Mutex<Cache>,
}

/// Which agents a matcher may choose, besides being online.
type CandidateFilter = Arc<dyn Fn(&AgentInfo) -> bool + Send + Sync>;

impl std::fmt::Debug for AgentMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentMatcher")
            .field("provider", &self.provider.as_ref().map(|p| p.name()))
            .field("threshold", &self.threshold)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

impl AgentMatcher {
    /// Matches over `registry`'s online agents with the lexical embedder, threshold 0.1 and no
    /// fallback agent.
    pub fn new(registry: Arc<dyn AgentRegistry>) -> Self {
        Self {
            registry,
            provider: None,
            threshold: 0.1,
            fallback: None,
            dimension: crate::embed::LEXICAL_DIMENSION,
            candidates: None,
            cache: Mutex::default(),
        }
    }

    /// Embeddings from `provider` (its `embed`); the lexical embedder stands in when the
    /// provider does not offer embeddings or fails.
    pub fn embeddings(mut self, provider: Arc<dyn LlmProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Below this similarity the fallback agent is used (default 0.1).
    pub fn threshold(mut self, threshold: f32) -> Self {
        self.threshold = threshold;
        self
    }

    /// Only agents for which `filter` is true are candidates (and may be pinned); the Hub
    /// uses it to match only the agents it can run.
    pub fn candidates(
        mut self,
        filter: impl Fn(&AgentInfo) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.candidates = Some(Arc::new(filter));
        self
    }

    /// The agent used when none reaches the threshold.
    pub fn fallback(mut self, agent: AgentId) -> Self {
        self.fallback = Some(agent);
        self
    }

    /// The `k` online agents most similar to `text`, best first, with their scores.
    /// Fails with [`RegistryError::NoCandidate`] when no agent is online.
    pub async fn best_match(&self, text: &str, k: usize) -> Result<Vec<AgentMatch>, RegistryError> {
        Ok(self.rank(text, k).await?.0)
    }

    /// The agent for a task described by `text`: `pinned` when given (it must be registered
    /// and not offline), else the best match, else — below the threshold — the fallback agent
    /// (or still the best match when there is none).
    pub async fn choose(
        &self,
        text: &str,
        pinned: Option<AgentId>,
    ) -> Result<MatchDecision, RegistryError> {
        if let Some(agent) = pinned {
            let info = self.registry.get(agent.clone()).await?;
            if info.status == AgentStatus::Offline {
                return Err(RegistryError::NoCandidate(format!(
                    "the pinned agent {agent} is offline"
                )));
            }
            if self.candidates.as_ref().is_some_and(|f| !f(&info)) {
                return Err(RegistryError::NoCandidate(format!(
                    "the pinned agent {agent} is not one this matcher may choose"
                )));
            }
            return Ok(MatchDecision {
                agent,
                score: 1.0,
                reason: MatchReason::Pinned,
                candidates: Vec::new(),
                embedder: "none".into(),
            });
        }
        let (candidates, embedder) = self.rank(text, 5).await?;
        let best = candidates
            .first()
            .cloned()
            .ok_or_else(|| RegistryError::NoCandidate("no agent is online".into()))?;
        if best.score >= self.threshold {
            return Ok(MatchDecision {
                agent: best.agent.clone(),
                score: best.score,
                reason: MatchReason::BestMatch,
                candidates,
                embedder,
            });
        }
        let agent = self.fallback.clone().unwrap_or(best.agent.clone());
        tracing::info!(%agent, best = best.score, threshold = self.threshold, "no agent reached the threshold; using the fallback");
        Ok(MatchDecision {
            agent,
            score: best.score,
            reason: MatchReason::Fallback {
                best_score: best.score,
            },
            candidates,
            embedder,
        })
    }

    async fn rank(&self, text: &str, k: usize) -> Result<(Vec<AgentMatch>, String), RegistryError> {
        let agents: Vec<AgentInfo> = self
            .registry
            .list()
            .await?
            .into_iter()
            .filter(|a| a.status != AgentStatus::Offline)
            .filter(|a| self.candidates.as_ref().is_none_or(|f| f(a)))
            .collect();
        if agents.is_empty() {
            return Err(RegistryError::NoCandidate(
                "no agent is registered and online".into(),
            ));
        }
        let mut cache = self.cache.lock().await;
        let rows: Vec<(AgentId, u64)> = agents
            .iter()
            .map(|a| (a.card.name.clone(), a.card_version))
            .collect();
        if cache.rows != rows || cache.index.is_none() {
            self.rebuild(&mut cache, &agents).await;
            cache.rows = rows;
        }
        let (query, embedder) = self.embed_query(&mut cache, text).await;
        let index = cache
            .index
            .as_ref()
            .ok_or_else(|| RegistryError::Backend("the agent index is missing".into()))?;
        let matches = index
            .top_k(&query, k.max(1))
            .into_iter()
            .filter_map(|(row, score)| {
                cache.rows.get(row).map(|(agent, _)| AgentMatch {
                    agent: agent.clone(),
                    score: score.clamp(0.0, 1.0),
                })
            })
            .collect();
        Ok((matches, embedder))
    }

    /// Embeds every online agent (provider vectors cached per card version) into a new index.
    async fn rebuild(&self, cache: &mut Cache, agents: &[AgentInfo]) {
        let texts: Vec<String> = agents.iter().map(|a| a.card.match_text()).collect();
        cache.lexical = Some(LexicalEmbedder::fit(
            self.dimension,
            texts.iter().map(String::as_str),
        ));
        cache.texts = texts.clone();
        cache.provider_failed = false;
        if let Some(provider) = &self.provider {
            let missing: Vec<(usize, String)> = agents
                .iter()
                .enumerate()
                .filter(|(_, a)| {
                    !cache
                        .vectors
                        .contains_key(&(a.card.name.clone(), a.card_version))
                })
                .map(|(i, _)| (i, texts[i].clone()))
                .collect();
            if !missing.is_empty() {
                match provider
                    .embed(missing.iter().map(|(_, t)| t.clone()).collect())
                    .await
                {
                    Ok(vectors) if vectors.len() == missing.len() => {
                        for ((i, _), v) in missing.iter().zip(vectors) {
                            let a = &agents[*i];
                            cache
                                .vectors
                                .insert((a.card.name.clone(), a.card_version), v);
                        }
                    }
                    Ok(_) | Err(_) => cache.provider_failed = true,
                }
            }
            if !cache.provider_failed {
                let vectors: Option<Vec<&Vec<f32>>> = agents
                    .iter()
                    .map(|a| cache.vectors.get(&(a.card.name.clone(), a.card_version)))
                    .collect();
                if let Some(vectors) = vectors {
                    let dimension = vectors.first().map_or(0, |v| v.len());
                    let mut index = EmbeddingIndex::new(dimension);
                    if vectors.iter().all(|v| index.push(v).is_ok()) {
                        cache.index = Some(index);
                        return;
                    }
                }
                cache.provider_failed = true;
            }
            tracing::warn!(
                provider = provider.name(),
                "embeddings from the provider failed; matching lexically"
            );
        }
        self.lexical_index(cache);
    }

    /// Builds the index from the lexical vectors of the agents' texts.
    fn lexical_index(&self, cache: &mut Cache) {
        let mut index = EmbeddingIndex::new(self.dimension);
        if let Some(lexical) = &cache.lexical {
            for text in &cache.texts {
                let mut v = lexical.embed(text);
                if v.iter().all(|x| *x == 0.0) {
                    // A card with no words still gets a row (it matches nothing).
                    v[0] = f32::MIN_POSITIVE;
                }
                let _ = index.push(&v);
            }
        }
        cache.index = Some(index);
    }

    async fn embed_query(&self, cache: &mut Cache, text: &str) -> (Vec<f32>, String) {
        if let (Some(provider), false) = (&self.provider, cache.provider_failed) {
            if let Ok(mut v) = provider.embed(vec![text.to_string()]).await
                && let Some(v) = v.pop()
            {
                return (v, provider.name().to_string());
            }
            tracing::warn!(
                provider = provider.name(),
                "could not embed the task; matching lexically"
            );
            // The index holds the provider's vectors: rebuild it lexically.
            cache.provider_failed = true;
            self.lexical_index(cache);
        }
        let lexical = cache
            .lexical
            .get_or_insert_with(|| LexicalEmbedder::new(self.dimension));
        (lexical.embed(text), "lexical".into())
    }
}
