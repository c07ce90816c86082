//! The server side of the HTTP bench (`benches/http.rs` starts it as its own process): the
//! hub's router over a `MemoryStore` (with a token, as deployed) on one port, and a bare axum
//! router answering the same two requests with the same JSON — the ceiling — on another.
//!
//! Prints `hub http://ADDR bare http://ADDR task T-…` and serves until stdin closes.
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use ananta_core::http::{Auth, HttpOptions, HubApi, serve};
use ananta_core::{CancellationToken, Hub, NewTask, Task};
use ananta_store::MemoryStore;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use tokio::io::AsyncReadExt;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let hub = Hub::builder().store(Arc::new(MemoryStore::new())).build()?;
    let task = hub
        .create_task(NewTask::new("Benchmark task").description("read me"))
        .await?;
    let shutdown = CancellationToken::new();
    let auth = Auth::builder().token(Some("bench-token".into())).build()?;
    let hub_router = HubApi::new(hub)
        .auth(auth)
        .options(HttpOptions {
            shutdown: shutdown.clone(),
            ..HttpOptions::named("bench-hub")
        })
        .router();

    // The ceiling: the same answers from plain handlers (no store, no middleware).
    let stored = Arc::new(task.clone());
    let bare_router = Router::new()
        .route(
            "/tasks/{id}",
            get(move |Path(_id): Path<String>| {
                let task = stored.clone();
                async move { Json((*task).clone()) }
            }),
        )
        .route(
            "/tasks",
            axum::routing::post(|Json(new): Json<NewTask>| async move {
                match new.into_task() {
                    Ok(task) => Ok((StatusCode::CREATED, Json::<Task>(task))),
                    Err(e) => Err((StatusCode::UNPROCESSABLE_ENTITY, e.to_string())),
                }
            }),
        );

    let hub_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bare_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!(
        "hub http://{} bare http://{} task {}",
        hub_listener.local_addr()?,
        bare_listener.local_addr()?,
        task.id
    );
    let grace = std::time::Duration::from_secs(1);
    let hub_server = tokio::spawn(serve(hub_listener, hub_router, shutdown.clone(), grace));
    let bare_server = tokio::spawn(serve(bare_listener, bare_router, shutdown.clone(), grace));
    // Serve until the bench closes our stdin.
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    shutdown.cancel();
    let _ = hub_server.await;
    let _ = bare_server.await;
    Ok(())
}
