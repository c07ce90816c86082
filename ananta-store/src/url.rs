//! [`open_url`]: a store chosen by a URL, e.g. from `DATABASE_URL`.

use std::sync::Arc;

use ananta_core::error::StoreError;
use ananta_core::registry::{AgentRegistry, InMemoryRegistry};
use ananta_core::store::TaskStore;

use crate::MemoryStore;

/// Opens the store a URL names, so a host can take it from its configuration (the original Ananta's
/// `DATABASE_URL`):
///
/// - `postgres://…` or `postgresql://…`: a `PostgresStore` (feature `postgres`);
/// - `sqlite://PATH`, `sqlite:PATH` or a plain file path: a `SqliteStore` (feature `sqlite`);
/// - `memory:`: a [`MemoryStore`].
///
/// A URL for a backend this build lacks is [`StoreError::InvalidInput`] naming the feature.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = ananta_store::open_url("memory:").await?;
/// assert!(store.list_tasks(Default::default()).await?.is_empty());
/// # Ok(())
/// # }
/// ```
pub async fn open_url(url: &str) -> Result<Arc<dyn TaskStore>, StoreError> {
    Ok(open_url_with_registry(url).await?.store)
}

/// A board opened by [`open_url_with_registry`]: the task store and the agent registry of the
/// same backend.
#[derive(Clone)]
pub struct OpenedStore {
    /// Tasks, templates, steps, logs and claims.
    pub store: Arc<dyn TaskStore>,
    /// The agents: in the same database for `postgres://` and SQLite URLs (they survive a
    /// restart like the tasks), an [`InMemoryRegistry`] for `memory:`.
    pub registry: Arc<dyn AgentRegistry>,
}

impl std::fmt::Debug for OpenedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedStore").finish_non_exhaustive()
    }
}

/// [`open_url`], and the backend's agent registry with it, for a Hub whose agents should
/// survive a restart like its tasks:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use ananta_core::Hub;
///
/// let dir = tempfile::tempdir()?;
/// let url = format!("sqlite://{}", dir.path().join("hub.db").display());
/// let opened = ananta_store::open_url_with_registry(&url).await?;
/// let hub = Hub::builder()
///     .store(opened.store)
///     .registry(opened.registry)
///     .build()?;
/// assert!(hub.registry().list().await?.is_empty());
/// # Ok(())
/// # }
/// ```
pub async fn open_url_with_registry(url: &str) -> Result<OpenedStore, StoreError> {
    let url = url.trim();
    if url.is_empty() {
        return Err(StoreError::InvalidInput("empty store URL".into()));
    }
    if url == "memory:" || url == "memory://" {
        return Ok(OpenedStore {
            store: Arc::new(MemoryStore::new()),
            registry: Arc::new(InMemoryRegistry::new()),
        });
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        {
            let store = Arc::new(crate::PostgresStore::connect(url).await?);
            return Ok(OpenedStore {
                store: store.clone(),
                registry: store,
            });
        }
        #[cfg(not(feature = "postgres"))]
        return Err(StoreError::InvalidInput(
            "a PostgreSQL URL needs ananta-store's `postgres` feature".into(),
        ));
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if let Some((scheme, _)) = path.split_once("://") {
        return Err(StoreError::InvalidInput(format!(
            "unknown store URL scheme {scheme:?} (postgres://, sqlite://, memory: or a file path)"
        )));
    }
    #[cfg(feature = "sqlite")]
    {
        let store = Arc::new(crate::SqliteStore::open(path).await?);
        Ok(OpenedStore {
            store: store.clone(),
            registry: store,
        })
    }
    #[cfg(not(feature = "sqlite"))]
    Err(StoreError::InvalidInput(format!(
        "{path}: a SQLite store needs ananta-store's `sqlite` feature"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn schemes() {
        assert!(open_url("memory:").await.is_ok());
        assert!(matches!(
            open_url("  ").await.err(),
            Some(StoreError::InvalidInput(_))
        ));
        assert!(matches!(
            open_url("mysql://root@localhost/x").await.err(),
            Some(StoreError::InvalidInput(m)) if m.contains("mysql")
        ));
        #[cfg(feature = "sqlite")]
        {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("a.db");
            let store = open_url(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            assert!(
                store
                    .list_tasks(Default::default())
                    .await
                    .unwrap()
                    .is_empty()
            );
            drop(store);
            assert!(open_url(path.to_str().unwrap()).await.is_ok());
        }
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn the_registry_of_a_file_keeps_its_agents() {
        use ananta_core::agent::AgentCard;
        use ananta_core::ids::AgentId;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("r.db").display());
        let opened = open_url_with_registry(&url).await.unwrap();
        let card = AgentCard::in_process(AgentId::new("keeper").unwrap());
        opened.registry.register(card).await.unwrap();
        drop(opened);
        let again = open_url_with_registry(&url).await.unwrap();
        let names: Vec<String> = again
            .registry
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.card.name.to_string())
            .collect();
        assert_eq!(names, vec!["keeper".to_string()]);
        let memory = open_url_with_registry("memory:").await.unwrap();
        assert!(memory.registry.list().await.unwrap().is_empty());
    }
}
