//! Test databases on the PostgreSQL server named by `ANANTA_PG_URL`.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

/// The server's URL, or `None` (after saying so) when the tests should not run.
pub fn server(test: &str) -> Option<String> {
    match std::env::var("ANANTA_PG_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("ANANTA_REQUIRE_PG").as_deref() != Ok("1"),
                "{test}: ANANTA_PG_URL not set, and ANANTA_REQUIRE_PG=1"
            );
            eprintln!("NOT RUN: {test}: ANANTA_PG_URL not set");
            None
        }
    }
}

/// `url` with its database replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{database}{query}", &base[..host_end])
}

/// A database of its own for one test (or one conformance case), dropped with the guard.
pub struct TestDb {
    admin_url: String,
    name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create(admin_url: &str) -> Self {
        let name = format!("ananta_test_{:016x}", fastrand::u64(..));
        let mut conn = AsyncPgConnection::establish(admin_url).await.unwrap();
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        Self {
            admin_url: admin_url.to_string(),
            url: with_database(admin_url, &name),
            name,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // The drop may run inside (or while unwinding out of) a runtime: use a runtime of
        // its own, on a thread of its own, and wait for it.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut conn = AsyncPgConnection::establish(&admin_url).await?;
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .map_err(diesel::ConnectionError::CouldntSetupConfiguration)
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(_))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}
