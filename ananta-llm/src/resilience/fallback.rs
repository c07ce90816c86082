//! [`Fallback`]: tries an ordered list of providers until one answers.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use ananta_core::llm::{ChatRequest, ChatResponse, ChatStream, ProviderHealth};
use ananta_core::{LlmError, LlmProvider};
use async_trait::async_trait;

type Predicate = dyn Fn(&LlmError) -> bool + Send + Sync;

/// Tries an ordered list of providers: the first one, then the next whenever a call fails
/// with an error that [falls over](Self::fallback_when), and so on; when every provider
/// failed, the **last** error is returned (and all of them are logged in one
/// `tracing::warn!`).
///
/// By default every error falls over except [`LlmError::InvalidRequest`] and
/// [`LlmError::SchemaMismatch`]: those are about the request or the caller's schema, and the
/// next provider would fail the same way. Errors that do not fall over are returned at once.
///
/// - `complete_stream` falls over only while *opening* the stream; an error inside an open
///   stream is passed through.
/// - `embed` falls over like `complete`. Vectors of different embedding models are not
///   comparable: only put providers serving the same embedding model behind one `Fallback`
///   you embed with.
/// - `health` returns the first provider's health that is reachable, otherwise the last
///   provider's result.
///
/// Put a [`CircuitBreaker`](crate::CircuitBreaker) around each provider so a dead primary is
/// skipped fast instead of being waited for on every call, and a [`Retry`](crate::Retry)
/// around the whole `Fallback` (see [`ProviderExt`](crate::ProviderExt)).
///
/// [`name`](LlmProvider::name) is `fallback(a,b,…)` with the names of the providers.
#[derive(Clone)]
pub struct Fallback {
    providers: Vec<Arc<dyn LlmProvider>>,
    name: String,
    falls_over: Arc<Predicate>,
}

impl fmt::Debug for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Fallback {
    /// Tries `providers` in order. Fails with [`LlmError::InvalidRequest`] when the list is
    /// empty.
    pub fn new<I>(providers: I) -> Result<Self, LlmError>
    where
        I: IntoIterator<Item = Arc<dyn LlmProvider>>,
    {
        let providers: Vec<Arc<dyn LlmProvider>> = providers.into_iter().collect();
        if providers.is_empty() {
            return Err(LlmError::InvalidRequest(
                "a fallback needs at least one provider".into(),
            ));
        }
        Ok(Self::from_non_empty(providers))
    }

    /// [`new`](Self::new) for a list known not to be empty.
    pub(crate) fn from_non_empty(providers: Vec<Arc<dyn LlmProvider>>) -> Self {
        Self {
            name: Self::name_of(&providers),
            providers,
            falls_over: Arc::new(Self::falls_over_by_default),
        }
    }

    /// Adds `provider` after the ones already in the list.
    pub fn then(mut self, provider: impl LlmProvider + 'static) -> Self {
        self.providers.push(Arc::new(provider));
        self.name = Self::name_of(&self.providers);
        self
    }

    /// Falls over to the next provider exactly when `predicate` is true for the error
    /// (instead of [`falls_over_by_default`](Self::falls_over_by_default)).
    pub fn fallback_when<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&LlmError) -> bool + Send + Sync + 'static,
    {
        self.falls_over = Arc::new(predicate);
        self
    }

    /// The default rule: fall over on every error except [`LlmError::InvalidRequest`] and
    /// [`LlmError::SchemaMismatch`].
    pub fn falls_over_by_default(error: &LlmError) -> bool {
        !matches!(
            error,
            LlmError::InvalidRequest(_) | LlmError::SchemaMismatch { .. }
        )
    }

    /// The providers, in the order they are tried.
    pub fn providers(&self) -> &[Arc<dyn LlmProvider>] {
        &self.providers
    }

    fn name_of(providers: &[Arc<dyn LlmProvider>]) -> String {
        let names: Vec<&str> = providers.iter().map(|p| p.name()).collect();
        format!("fallback({})", names.join(","))
    }

    /// Calls each provider in turn until one succeeds or an error does not fall over.
    async fn run<T, F, Fut>(&self, operation: &'static str, mut call: F) -> Result<T, LlmError>
    where
        F: FnMut(Arc<dyn LlmProvider>) -> Fut + Send,
        Fut: Future<Output = Result<T, LlmError>> + Send,
    {
        let mut failures: Vec<String> = Vec::new();
        let mut last = None;
        for (index, provider) in self.providers.iter().enumerate() {
            match call(Arc::clone(provider)).await {
                Ok(value) => {
                    if index > 0 {
                        tracing::info!(
                            fallback = %self.name,
                            operation,
                            provider = provider.name(),
                            position = index,
                            "served by a fallback provider"
                        );
                    }
                    return Ok(value);
                }
                Err(error) => {
                    if !(self.falls_over)(&error) {
                        return Err(error);
                    }
                    if let Some(next) = self.providers.get(index + 1) {
                        tracing::warn!(
                            fallback = %self.name,
                            operation,
                            provider = provider.name(),
                            next = next.name(),
                            error = %error,
                            "LLM provider failed, falling over"
                        );
                    }
                    failures.push(format!("{}: {error}", provider.name()));
                    last = Some(error);
                }
            }
        }
        tracing::warn!(
            fallback = %self.name,
            operation,
            errors = %failures.join("; "),
            "every LLM provider failed"
        );
        Err(last.unwrap_or_else(|| {
            LlmError::InvalidRequest("a fallback needs at least one provider".into())
        }))
    }
}

#[async_trait]
impl LlmProvider for Fallback {
    fn name(&self) -> &str {
        &self.name
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, LlmError> {
        self.run("complete", |provider| {
            let request = request.clone();
            async move { provider.complete(request).await }
        })
        .await
    }

    async fn complete_stream(&self, request: ChatRequest) -> Result<ChatStream, LlmError> {
        self.run("complete_stream", |provider| {
            let request = request.clone();
            async move { provider.complete_stream(request).await }
        })
        .await
    }

    async fn embed(&self, inputs: Vec<String>) -> Result<Vec<Vec<f32>>, LlmError> {
        self.run("embed", |provider| {
            let inputs = inputs.clone();
            async move { provider.embed(inputs).await }
        })
        .await
    }

    async fn health(&self) -> Result<ProviderHealth, LlmError> {
        let mut last = None;
        for provider in &self.providers {
            let health = provider.health().await;
            if matches!(&health, Ok(h) if h.reachable) {
                return health;
            }
            last = Some(health);
        }
        last.unwrap_or_else(|| {
            Err(LlmError::InvalidRequest(
                "a fallback needs at least one provider".into(),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScriptedProvider;

    #[test]
    fn an_empty_list_is_rejected_and_names_list_the_providers() {
        assert!(matches!(
            Fallback::new(Vec::new()),
            Err(LlmError::InvalidRequest(_))
        ));
        let primary: Arc<dyn LlmProvider> = Arc::new(ScriptedProvider::new(["a"]));
        let fallback = Fallback::new([primary])
            .unwrap()
            .then(ScriptedProvider::new(["b"]));
        assert_eq!(fallback.name(), "fallback(scripted,scripted)");
        assert_eq!(fallback.providers().len(), 2);
    }

    #[test]
    fn the_default_rule_keeps_request_errors() {
        assert!(!Fallback::falls_over_by_default(&LlmError::InvalidRequest(
            "x".into()
        )));
        assert!(!Fallback::falls_over_by_default(
            &LlmError::SchemaMismatch {
                message: String::new(),
                raw: String::new()
            }
        ));
        assert!(Fallback::falls_over_by_default(&LlmError::Rejected {
            status: 404,
            body: "no such model".into()
        }));
        assert!(Fallback::falls_over_by_default(&LlmError::Unreachable(
            "refused".into()
        )));
    }
}
