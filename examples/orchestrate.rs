//! Orchestration: one prompt becomes a plan of tasks, each task goes to the agent that fits
//! best, and the plan runs as a pipeline — in parallel where it can, each task seeing the
//! outputs it depends on.
//!
//! `cargo run --example orchestrate`
//!
//! Five text agents are registered (researcher, summariser, translator, code reviewer, data
//! analyst). For the seed's two example prompts — a three-step chain, and "research A and B,
//! then compare" (a diamond) — it prints the plan, the assignments with their match scores,
//! progress while the pipeline runs, the trace and the final output.
//!
//! By default the planner and the agents are scripted (`ScriptedProvider`), so it runs anywhere.
//! With `ANANTA_LLM_URL` set to an OpenAI-compatible server (e.g. `scripts/llm-server.sh start`),
//! a real model plans (validated, repaired or refused with a typed error) and answers.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ananta_core::decompose::{Decomposer, LlmDecomposer};
use ananta_core::matching::AgentMatcher;
use ananta_core::pipeline::{
    NodeAgent, NodeInput, NodeOutput, NodeStatus, Pipeline, PipelineError, PipelineOptions,
    TextAgent,
};
use ananta_core::{
    AgentCard, AgentError, AgentId, AgentRegistry, CancellationToken, ChatRequest, ChatResponse,
    InMemoryRegistry, LlmProvider, Role,
};
use ananta_llm::{OpenAiProvider, ProviderExt, RetryPolicy, ScriptedProvider};

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

/// Prints progress around an agent.
struct Progress {
    inner: Arc<dyn NodeAgent>,
    agent: AgentId,
    started: Instant,
}

#[async_trait::async_trait]
impl NodeAgent for Progress {
    async fn run(
        &self,
        input: NodeInput,
        cancel: CancellationToken,
    ) -> Result<NodeOutput, AgentError> {
        let at = self.started.elapsed().as_millis();
        println!("  {at:>5} ms  ▶ {} starts on {}", input.task_id, self.agent);
        let result = self.inner.run(input.clone(), cancel).await;
        let at = self.started.elapsed().as_millis();
        match &result {
            Ok(o) => println!(
                "  {at:>5} ms  ✓ {} finished ({} characters)",
                input.task_id,
                o.text.len()
            ),
            Err(e) => println!("  {at:>5} ms  ✗ {} failed: {e}", input.task_id),
        }
        result
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

    let registry = Arc::new(InMemoryRegistry::new());
    let mut workers: Vec<(AgentId, Arc<dyn NodeAgent>)> = Vec::new();
    for (name, description) in AGENTS {
        let id = AgentId::new(*name)?;
        registry
            .register(AgentCard::in_process(id.clone()).description(*description))
            .await?;
        let llm: Arc<dyn LlmProvider> = match &real_llm {
            Some(llm) => llm.clone(),
            None => Arc::new(scripted_agent(name)),
        };
        let agent =
            TextAgent::new(llm, format!("You are the {name}: {description}.")).max_tokens(256);
        workers.push((id, Arc::new(agent)));
    }
    let planner: Arc<dyn LlmProvider> = match &real_llm {
        Some(llm) => llm.clone(),
        None => Arc::new(scripted_planner()),
    };
    let decomposer = LlmDecomposer::new(planner)
        .max_tokens(512)
        .agents(AGENTS.iter().map(|(n, d)| format!("{n}: {d}")));
    let matcher = AgentMatcher::new(registry.clone());

    for prompt in PROMPTS {
        println!("\n=== {prompt}\n");
        let plan = match decomposer.decompose(prompt.to_string()).await {
            Ok(plan) => plan,
            Err(e) => {
                println!("no valid plan: {e}");
                continue;
            }
        };
        if !plan.reasoning.is_empty() {
            println!("reasoning: {}", plan.reasoning);
        }
        print!("{}", plan.table());

        println!("\nassignments:");
        let started = Instant::now();
        let mut pipeline = Pipeline::new(PipelineOptions::default());
        for task in &plan.tasks {
            let decision = matcher.choose(&task.description, None).await?;
            let others: Vec<String> = decision
                .candidates
                .iter()
                .skip(1)
                .take(2)
                .map(|m| format!("{} {:.2}", m.agent, m.score))
                .collect();
            println!(
                "  {:<14} → {:<13} score {:.2} ({:?}; next: {})",
                task.id,
                decision.agent,
                decision.score,
                decision.reason,
                others.join(", ")
            );
            let worker = workers
                .iter()
                .find(|(id, _)| *id == decision.agent)
                .map(|(_, w)| w.clone())
                .ok_or_else(|| anyhow::anyhow!("no worker for {}", decision.agent))?;
            let progress = Progress {
                inner: worker,
                agent: decision.agent.clone(),
                started,
            };
            pipeline.assign(&task.id, decision.agent, decision.score, Arc::new(progress));
        }

        println!("\nprogress:");
        let outcome = match pipeline.run(&plan).await {
            Ok(outcome) => outcome,
            Err(PipelineError::Failed {
                task,
                error,
                partial,
            }) => {
                println!("task {task} failed: {error}");
                *partial
            }
            Err(e) => {
                println!("the run stopped: {e}");
                continue;
            }
        };
        println!("\ntrace:");
        println!(
            "  {:<14} {:<13} {:>5} {:>8} {:>8} {:>7} {:>7}  status",
            "task", "agent", "score", "attempts", "ms", "tokens", "chars"
        );
        for t in &outcome.trace {
            let status = match &t.status {
                NodeStatus::Done => "done".to_string(),
                NodeStatus::Failed { error } => format!("failed: {error}"),
                NodeStatus::Cancelled => "cancelled".into(),
                NodeStatus::Skipped => "skipped".into(),
            };
            println!(
                "  {:<14} {:<13} {:>5.2} {:>8} {:>8} {:>7} {:>7}  {status}",
                t.task_id,
                t.agent,
                t.score,
                t.attempts,
                t.duration_ms,
                t.tokens.prompt_tokens + t.tokens.completion_tokens,
                t.output_chars
            );
        }
        println!("\noutput:\n{}", outcome.output);
    }
    Ok(())
}
