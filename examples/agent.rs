//! A runnable Ananta agent host over HTTP — the original Ananta's `python -m agent.ai_agent`.
//!
//! `ROLE=hub cargo run -p ananta-examples --example agent` starts a hub; `ROLE=worker` (the default) a worker.
//! Everything is configured by environment:
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `ROLE` | `hub` or `worker` | `worker` |
//! | `HOST`, `PORT` | where to listen (`PORT=0`: any free port) | `127.0.0.1`, `5000` |
//! | `AGENT_NAME` | the name `/health` reports and a worker registers under | `hub` / `worker` |
//! | `AGENT_TOKEN` | the bearer token every request but `/health` and `/login` needs; unset = insecure mode (logged loudly) | unset |
//! | `SECRET_KEY`, `INITIAL_ADMIN_PASSWORD`, `INITIAL_ADMIN_USER` | JWT signing key; a first admin user for `POST /login` | random key, no users |
//! | `REGISTRATION_SECRET` | hub: a secret workers may register with instead of a token; worker: the secret it sends | unset |
//! | `DATABASE_URL` | hub: `sqlite://FILE`, `postgres://…` or `memory:` | `sqlite://ananta-hub.db` |
//! | `HUB_URL`, `HUB_TOKEN` | worker: the hub to register with and the hub's token | unset |
//! | `AGENT_URL` | worker: the URL the hub reaches it at | `http://HOST:PORT` |
//! | `AGENT_DESCRIPTION` | worker: what it is good at (for matching) | empty |
//! | `WORKSPACE` | worker: the directory commands run in | `./workspace-NAME` |
//! | `POLICY` | worker: `read-only`, `approve`, `auto` or `off` | `approve` |
//! | `OPENAI_URL`, `OPENAI_API_KEY`, `OPENAI_MODEL` / `LMSTUDIO_URL` / `OLLAMA_URL`, `OLLAMA_MODEL` | worker: the LLM, first one set wins | a scripted demo model |
//! | `CORS_ORIGINS` | comma-separated origins, or `*` | off |
//! | `SHUTDOWN_GRACE_SECS` | how long requests in flight may finish after SIGTERM | `10` |
//!
//! Without an LLM configured, a worker answers with a small scripted model (it looks around,
//! says hello, and reports done), so the whole flow runs on a fresh machine.
//! The README walks through the curl flow of the original Ananta against a hub and a worker.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::Duration;

use ananta_core::http::{
    Auth, Cors, HttpOptions, HubApi, HubClient, RegisterRequest, WorkerApi, serve, shutdown_signal,
};
use ananta_core::llm::ChatResponse;
use ananta_core::{AgentId, CancellationToken, Hub, LlmProvider, Worker};
use ananta_exec::{CommandPolicy, PolicyMode, ShellExecutor};
use ananta_llm::{OllamaProvider, OpenAiProvider, ProviderExt, RetryPolicy, ScriptedProvider};
use anyhow::{Context, bail};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    let role = var("ROLE").unwrap_or_else(|| "worker".into());
    let host = var("HOST").unwrap_or_else(|| "127.0.0.1".into());
    let port: u16 = var("PORT")
        .unwrap_or_else(|| "5000".into())
        .parse()
        .context("PORT must be a port number")?;
    let grace = Duration::from_secs(
        var("SHUTDOWN_GRACE_SECS")
            .map(|s| s.parse())
            .transpose()
            .context("SHUTDOWN_GRACE_SECS must be a number of seconds")?
            .unwrap_or(10),
    );
    let auth = Auth::from_env().context("reading the authentication settings")?;
    let shutdown = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind((host.as_str(), port))
        .await
        .with_context(|| format!("cannot listen on {host}:{port}"))?;
    let address = listener.local_addr()?;
    let options = |name: &str| HttpOptions {
        name: name.to_string(),
        cors: Cors::parse(&var("CORS_ORIGINS").unwrap_or_default()),
        shutdown: shutdown.clone(),
        ..HttpOptions::default()
    };

    let router = match role.as_str() {
        "hub" => {
            let name = var("AGENT_NAME").unwrap_or_else(|| "hub".into());
            let url = var("DATABASE_URL").unwrap_or_else(|| "sqlite://ananta-hub.db".into());
            let opened = ananta_store::open_url_with_registry(&url)
                .await
                .context("opening the store at DATABASE_URL")?;
            let hub = Hub::builder()
                .store(opened.store)
                .registry(opened.registry)
                .reassign_offline(var("REASSIGN_OFFLINE").is_some_and(|v| v == "1" || v == "true"))
                .build()?;
            let api = HubApi::new(hub).auth(auth).options(options(&name));
            tokio::spawn({
                let api = api.clone();
                let cancel = shutdown.clone();
                async move { api.monitor(cancel).await }
            });
            api.router()
        }
        "worker" => {
            let name = AgentId::new(var("AGENT_NAME").unwrap_or_else(|| "worker".into()))
                .context("AGENT_NAME must be a valid agent name")?;
            let worker = build_worker(name.clone())?;
            let mut api = WorkerApi::new(worker)
                .auth(auth)
                .options(options(name.as_str()));
            if let Some(hub_url) = var("HUB_URL") {
                let client = HubClient::new(hub_url, var("HUB_TOKEN"))?;
                let agent_url = var("AGENT_URL").unwrap_or_else(|| format!("http://{address}"));
                let mut registration = RegisterRequest::new(name.clone(), agent_url);
                registration.description = var("AGENT_DESCRIPTION").unwrap_or_default();
                registration.registration_secret = var("REGISTRATION_SECRET");
                api = api.hub(client, registration);
                tokio::spawn({
                    let api = api.clone();
                    let cancel = shutdown.clone();
                    async move {
                        if let Err(e) = api.join_hub(cancel).await {
                            tracing::error!(error = %e, "could not join the hub");
                        }
                    }
                });
            }
            api.router()
        }
        other => bail!("ROLE must be hub or worker, not {other:?}"),
    };

    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown_signal().await;
            shutdown.cancel();
        }
    });
    println!("ananta {role} listening on http://{address}");
    serve(listener, router, shutdown, grace).await?;
    println!("ananta {role} stopped");
    Ok(())
}

fn build_worker(name: AgentId) -> anyhow::Result<Worker> {
    let workspace = var("WORKSPACE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(format!("workspace-{name}")));
    std::fs::create_dir_all(&workspace)
        .with_context(|| format!("cannot create the workspace {}", workspace.display()))?;
    let mode = match var("POLICY").as_deref().unwrap_or("approve") {
        "read-only" | "readonly" => PolicyMode::ReadOnly,
        "approve" => PolicyMode::Approve,
        "auto" => PolicyMode::Auto,
        "off" => PolicyMode::Off,
        other => bail!("POLICY must be read-only, approve, auto or off, not {other:?}"),
    };
    let llm = llm()?;
    tracing::info!(llm = llm.name(), workspace = %workspace.display(), policy = mode.as_str(), "worker ready");
    let executor = ShellExecutor::new(&workspace);
    // With a sandboxed executor (`ShellExecutor::sandboxed`) the containment is the sandbox's,
    // and `approve` then asks only about what the sandbox cannot contain.
    let gate = CommandPolicy::builtin()
        .gate(mode)
        .contained(executor.containment());
    Ok(Worker::builder(name)
        .llm(llm)
        .executor(Arc::new(executor))
        .gate(Arc::new(gate))
        .specialisation(var("AGENT_DESCRIPTION").unwrap_or_default())
        .build()?)
}

fn llm() -> anyhow::Result<Arc<dyn LlmProvider>> {
    let retry = RetryPolicy::default();
    if var("OPENAI_URL").is_some() || var("OPENAI_API_KEY").is_some() {
        return Ok(Arc::new(
            OpenAiProvider::from_env().build()?.with_retry(retry),
        ));
    }
    if var("LMSTUDIO_URL").is_some() {
        return Ok(Arc::new(
            OpenAiProvider::lm_studio_from_env()
                .build()?
                .with_retry(retry),
        ));
    }
    if var("OLLAMA_URL").is_some() {
        return Ok(Arc::new(
            OllamaProvider::from_env().build()?.with_retry(retry),
        ));
    }
    // The scripted demo model: looks around, says hello, then reports done.
    Ok(Arc::new(ScriptedProvider::from_fn(|request| {
        let steps = request
            .messages
            .iter()
            .filter(|m| m.role == ananta_core::llm::Role::Assistant)
            .count();
        Ok(ChatResponse::text(match steps {
            0 => r#"{"reason": "Look at the workspace first", "command": "pwd && ls -la"}"#,
            1 => r#"{"reason": "Say hello", "command": "echo hello from ananta"}"#,
            _ => r#"{"reason": "Looked around and said hello.", "done": true}"#,
        }))
    })))
}
