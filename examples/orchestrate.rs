//! Orchestration: one prompt becomes a plan of tasks, each task goes to the agent that fits
//! best, and the plan runs as a pipeline — in parallel where it can, each task seeing the
//! outputs it depends on.
//!
//! `cargo run -p ananta-examples --example orchestrate`
//!
//! Five text agents are registered with a Hub as node agents (researcher, summariser,
//! translator, code reviewer, data analyst). For the two example prompts of the original Ananta — a three-step
//! chain, and "research A and B, then compare" (a diamond) — `Hub::orchestrate` plans, matches
//! and runs; the example prints the plan and the assignments with their match scores (read back
//! from the board when the `run_started` event arrives), progress from the node events, the
//! trace and the final output.
//!
//! By default the planner and the agents are scripted (`ScriptedProvider`), so it runs anywhere.
//! With `ANANTA_LLM_URL` set to an OpenAI-compatible server (e.g. `scripts/llm-server.sh start`),
//! a real model plans (validated, repaired or refused with a typed error) and answers.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ananta_core::decompose::LlmDecomposer;
use ananta_core::llm::{ChatRequest, ChatResponse, Role};
use ananta_core::orchestrate::OrchestrateError;
use ananta_core::pipeline::{NodeStatus, NodeTrace, PipelineError, TextAgent};
use ananta_core::{AgentCard, AgentId, Event, EventKind, Hub, LlmProvider};
use ananta_llm::{OpenAiProvider, ProviderExt, RetryPolicy, ScriptedProvider};
use ananta_store::MemoryStore;

const AGENTS: &[(&str, &str)] = &[
    (
        "researcher",
        "Researches topics, finds sources and current trends, collects facts",
    ),
    (
        "summariser",
        "Summarises findings and long texts into short summaries",
    ),
    ("translator", "Translates text between German and English"),
    (
        "code-reviewer",
        "Reviews source code and pull requests for bugs and style",
    ),
    (
        "data-analyst",
        "Analyses data sets and statistics, builds charts",
    ),
];

const PROMPTS: &[&str] = &[
    "Research the current AI trends, summarise the findings, then translate the German summary into English.",
    "Research Rust and research Go, then compare the findings of both languages.",
];

/// The scripted planner: the plan a good model gives for each of the two prompts.
fn scripted_planner() -> ScriptedProvider {
    ScriptedProvider::from_fn(|request: &ChatRequest| {
        let prompt = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.content.clone())
            .unwrap_or_default();
        let plan = if prompt.contains("compare") {
            r#"{"reasoning": "Both languages can be researched in parallel; the comparison needs both.",
                "tasks": [
                  {"id": "research_rust", "description": "Research the Rust language: facts and current trends"},
                  {"id": "research_go", "description": "Research the Go language: facts and current trends"},
                  {"id": "compare", "description": "Compare the findings on Rust and Go and summarise the differences", "dependencies": ["research_rust", "research_go"]}
                ]}"#
        } else {
            r#"{"reasoning": "Each step needs the previous one.",
                "tasks": [
                  {"id": "research", "description": "Research the current AI trends and collect facts"},
                  {"id": "summarise", "description": "Summarise the findings into a short summary", "dependencies": ["research"]},
                  {"id": "translate", "description": "Translate the German text into English", "dependencies": ["summarise"]}
                ]}"#
        };
        Ok(ChatResponse::text(plan))
    })
}

/// A scripted text model for one role: a short, recognisable answer after a short delay.
fn scripted_agent(role: &'static str) -> ScriptedProvider {
    ScriptedProvider::from_fn(move |request: &ChatRequest| {
        let task = request
            .messages
            .iter()
            .find(|m| m.role == Role::User)
            .map(|m| m.content.lines().next().unwrap_or_default().to_string())
            .unwrap_or_default();
        Ok(ChatResponse::text(format!("({role}) done: {task}")))
    })
    .latency(Duration::from_millis(300))
}

/// Prints a run as its events arrive: the plan and the assignments when it starts (read back
/// from the board), then every task starting, retrying, finishing or failing. Ends with the
/// run.
async fn show_progress(
    hub: Hub,
    mut events: tokio::sync::broadcast::Receiver<Event>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let ms = || started.elapsed().as_millis();
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                println!("  (missed {n} events)");
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
        };
        match event.kind {
            EventKind::RunStarted { run_id, .. } => {
                let record = hub.run_record(run_id).await?;
                println!("run {run_id}");
                if !record.plan.reasoning.is_empty() {
                    println!("reasoning: {}", record.plan.reasoning);
                }
                print!("{}", record.plan.table());
                println!("\nassignments:");
                for a in &record.assignments {
                    println!(
                        "  {:<14} → {:<13} score {:.2} ({:?}, {})",
                        a.node,
                        a.agent.as_str(),
                        a.score,
                        a.reason,
                        a.embedder
                    );
                }
                println!("\nprogress:");
            }
            EventKind::NodeStarted { node, agent, .. } => {
                println!("  {:>5} ms  ▶ {node} starts on {agent}", ms());
            }
            EventKind::NodeRetried {
                node,
                attempt,
                error,
                ..
            } => println!(
                "  {:>5} ms  ↻ {node} retries after attempt {attempt}: {error}",
                ms()
            ),
            EventKind::NodeCompleted {
                node, output_chars, ..
            } => println!(
                "  {:>5} ms  ✓ {node} finished ({output_chars} characters)",
                ms()
            ),
            EventKind::NodeFailed { node, error, .. } => {
                println!("  {:>5} ms  ✗ {node} failed: {error}", ms());
            }
            EventKind::NodeCancelled { node, .. } => {
                println!("  {:>5} ms  ✗ {node} cancelled", ms());
            }
            EventKind::RunFinished { status, .. } => {
                println!("  {:>5} ms  run {status}", ms());
                return Ok(());
            }
            _ => {}
        }
    }
}

fn print_trace(trace: &[NodeTrace]) {
    println!("\ntrace:");
    println!(
        "  {:<14} {:<13} {:>5} {:>8} {:>8} {:>7} {:>7}  status",
        "task", "agent", "score", "attempts", "ms", "tokens", "chars"
    );
    for t in trace {
        let status = match &t.status {
            NodeStatus::Done => "done".to_string(),
            NodeStatus::Failed { error } => format!("failed: {error}"),
            NodeStatus::Cancelled => "cancelled".into(),
            NodeStatus::Skipped => "skipped".into(),
        };
        println!(
            "  {:<14} {:<13} {:>5.2} {:>8} {:>8} {:>7} {:>7}  {status}",
            t.task_id,
            t.agent.as_str(),
            t.score,
            t.attempts,
            t.duration_ms,
            t.tokens.prompt_tokens + t.tokens.completion_tokens,
            t.output_chars
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let real = std::env::var("ANANTA_LLM_URL")
        .ok()
        .filter(|u| !u.trim().is_empty());
    let real_llm: Option<Arc<dyn LlmProvider>> = match &real {
        Some(url) => Some(Arc::new(
            OpenAiProvider::builder(url)
                .build()?
                .with_retry(RetryPolicy::default()),
        )),
        None => None,
    };
    println!(
        "LLM: {}",
        real.as_deref()
            .map_or("scripted planner and agents".to_string(), |u| format!(
                "OpenAI-compatible server at {u}"
            ))
    );

    let planner: Arc<dyn LlmProvider> = match &real_llm {
        Some(llm) => llm.clone(),
        None => Arc::new(scripted_planner()),
    };
    let decomposer = LlmDecomposer::new(planner)
        .max_tokens(512)
        .agents(AGENTS.iter().map(|(n, d)| format!("{n}: {d}")));
    // The board lives in memory here; any TaskStore (SQLite, PostgreSQL) makes runs durable.
    let hub = Hub::builder()
        .store(Arc::new(MemoryStore::new()))
        .decomposer(Arc::new(decomposer))
        .build()?;
    for (name, description) in AGENTS {
        let llm: Arc<dyn LlmProvider> = match &real_llm {
            Some(llm) => llm.clone(),
            None => Arc::new(scripted_agent(name)),
        };
        let specialisation = format!("You are the {name}: {description}.");
        let card = AgentCard::in_process(AgentId::new(*name)?)
            .description(*description)
            .system_prompt(specialisation.clone());
        let agent = TextAgent::new(llm, specialisation).max_tokens(256);
        hub.add_node_agent(card, Arc::new(agent)).await?;
    }

    for prompt in PROMPTS {
        println!("\n=== {prompt}\n");
        let progress = tokio::spawn(show_progress(hub.clone(), hub.subscribe()));
        let result = hub.orchestrate(prompt).await;
        match result {
            Ok(result) => {
                progress.await??;
                print_trace(&result.outcome.trace);
                println!("\noutput:\n{}", result.outcome.output);
            }
            Err(OrchestrateError::Pipeline { run_id, source }) => {
                progress.await??;
                println!("run {run_id} stopped: {source}");
                if let PipelineError::Failed { partial, .. }
                | PipelineError::BudgetExceeded { partial, .. }
                | PipelineError::Cancelled { partial } = source
                {
                    print_trace(&partial.trace);
                }
            }
            Err(e) => {
                progress.abort();
                println!("no run: {e}");
            }
        }
    }
    Ok(())
}
