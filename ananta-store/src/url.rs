//! [`open_url`]: a store chosen by a URL, e.g. from `DATABASE_URL`.

use std::sync::Arc;

use ananta_core::error::StoreError;
use ananta_core::store::TaskStore;

use crate::MemoryStore;

/// Opens the store a URL names, so a host can take it from its configuration (the seed's
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
    let url = url.trim();
    if url.is_empty() {
        return Err(StoreError::InvalidInput("empty store URL".into()));
    }
    if url == "memory:" || url == "memory://" {
        return Ok(Arc::new(MemoryStore::new()));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        return Ok(Arc::new(crate::PostgresStore::connect(url).await?));
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
    return Ok(Arc::new(crate::SqliteStore::open(path).await?));
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
}
