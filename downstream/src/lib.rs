//! A downstream project's own logic, written against ananta-core's traits.

use ananta_core::{AgentClient, AgentId, AgentRegistry, Decomposer, Error, Executor, LlmProvider, Proposed, Task, TaskFilter, TaskStatus, TaskStore};
use ananta_core::agent::ProposeRequest;
use ananta_core::exec::ExecRequest;
use ananta_core::llm::{ChatMessage, ChatRequest};
use ananta_core::parse::{ParsedAnswer, parse_answer};

/// Asks the model for the first command of a job; `None` when it says the job is done.
pub async fn first_command(llm: &dyn LlmProvider, job: &str) -> Result<Option<String>, Error> {
    let answer = llm
        .complete(ChatRequest::new(vec![ChatMessage::user(job)]))
        .await?;
    match parse_answer(&answer.content).map_err(ananta_core::AgentError::from)? {
        ParsedAnswer::Command { command, .. } => Ok(Some(command)),
        ParsedAnswer::Done { .. } => Ok(None),
    }
}

/// Runs a command and returns its stdout, or an error naming the exit code.
pub async fn run_checked(exec: &dyn Executor, command: &str) -> Result<String, Error> {
    let outcome = exec.run(ExecRequest::new(command), None).await?;
    if outcome.success() {
        Ok(outcome.stdout)
    } else {
        Err(Error::InvalidInput(format!(
            "`{command}` failed: {:?}",
            outcome.exit_code
        )))
    }
}

/// How many tasks are open (todo or in progress).
pub async fn open_tasks(store: &dyn TaskStore) -> Result<usize, Error> {
    let filter = TaskFilter {
        statuses: vec![TaskStatus::Todo, TaskStatus::InProgress],
        ..TaskFilter::default()
    };
    Ok(store.list_tasks(filter).await?.len())
}

/// The best agent for a text, if it scores at least `threshold`.
pub async fn pick_agent(
    registry: &dyn AgentRegistry,
    text: &str,
    threshold: f32,
) -> Result<Option<AgentId>, Error> {
    let best = registry.best_match(text.to_string(), 1).await?;
    Ok(best
        .into_iter()
        .find(|m| m.score >= threshold)
        .map(|m| m.agent))
}

/// How many parallel waves a prompt's plan has.
pub async fn plan_depth(decomposer: &dyn Decomposer, prompt: &str) -> Result<usize, Error> {
    let plan = decomposer.decompose(prompt.to_string()).await?;
    plan.waves()
        .map(|w| w.len())
        .ok_or_else(|| Error::InvalidInput("cyclic plan".into()))
}

/// What an agent would run next for `task`.
pub async fn preview(agent: &dyn AgentClient, task: Task) -> Result<String, Error> {
    match agent
        .propose(ProposeRequest {
            task,
            template: None,
        })
        .await?
    {
        Proposed::Command(p) => Ok(p.command),
        Proposed::Done(_) => Ok("(done)".into()),
    }
}
