//! The agent suite: everyday tasks, each with a setup and an acceptance check, run by a Worker
//! on a real model in each protocol, and a report of how it went (`cargo run -p
//! ananta-examples --example agent_suite`; `scripts/agent-suite.sh` runs all of it).
//!
//! Per protocol it counts: runs that completed (no crash, no hang), tasks solved (the check
//! passes when run again independently), false "done" (the run said done but the check fails:
//! must be 0) and the average steps.

mod tasks;

use std::sync::Arc;
use std::time::Duration;

use ananta_core::worker::Protocol;
use ananta_core::{AgentId, Executor, Hub, NewTask, StepLimits, StopReason, Worker};
use ananta_exec::ShellExecutor;
use ananta_llm::OpenAiProvider;
use ananta_store::MemoryStore;

pub use tasks::{CI_SUBSET, SuiteTask, TASKS};

/// How the model is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuiteProtocol {
    /// Text answers, free form.
    Text,
    /// Text answers constrained to the answer schema (structured output).
    Structured,
    /// Native tool calls.
    Tools,
}

impl SuiteProtocol {
    /// Its name on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Structured => "structured",
            Self::Tools => "tools",
        }
    }

    /// The protocol named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Text, Self::Structured, Self::Tools]
            .into_iter()
            .find(|p| p.name() == name)
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// The OpenAI-compatible server's base URL (llama-server with `--jinja` for tools).
    pub url: String,
    /// The model name to send, if the server needs one.
    pub model: Option<String>,
    /// The protocols, each over every task.
    pub protocols: Vec<SuiteProtocol>,
    /// The tasks.
    pub tasks: Vec<SuiteTask>,
    /// Turn budget per task.
    pub max_steps: u32,
    /// Answer token limit.
    pub max_tokens: u32,
    /// A run that takes longer counts as a hang.
    pub task_timeout: Duration,
    /// Run the commands in the strict sandbox (when this machine has it).
    pub sandbox: bool,
}

/// How one run of one task went.
#[derive(Debug, Clone)]
pub struct TaskResult {
    /// The task.
    pub task: &'static str,
    /// The protocol.
    pub protocol: SuiteProtocol,
    /// Why the run stopped (`done`, `review`, `step_budget`, `stuck`, …), or the error.
    pub outcome: String,
    /// No panic, no hang, no error of the loop itself.
    pub completed: bool,
    /// The acceptance check passes when run again after the run.
    pub solved: bool,
    /// The run said done but the check fails.
    pub false_done: bool,
    /// Steps executed.
    pub steps: u32,
    /// Answers fed back.
    pub fed_back: u32,
}

/// Runs every protocol over every task, calling `each` after each run.
pub async fn run_suite(
    options: &SuiteOptions,
    mut each: impl FnMut(&TaskResult),
) -> Vec<TaskResult> {
    let mut results = Vec::new();
    for &protocol in &options.protocols {
        for task in &options.tasks {
            let result = run_one(options, protocol, *task).await;
            each(&result);
            results.push(result);
        }
    }
    results
}

fn sh(dir: &std::path::Path, script: &str) -> bool {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

async fn run_one(options: &SuiteOptions, protocol: SuiteProtocol, task: SuiteTask) -> TaskResult {
    let mut result = TaskResult {
        task: task.id,
        protocol,
        outcome: String::new(),
        completed: false,
        solved: false,
        false_done: false,
        steps: 0,
        fed_back: 0,
    };
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            result.outcome = format!("error: no temporary folder: {e}");
            return result;
        }
    };
    if !task.setup.is_empty() && !sh(dir.path(), task.setup) {
        result.outcome = "error: the task's setup failed".into();
        return result;
    }
    let hub = match agent(options, protocol, dir.path()).await {
        Ok(hub) => hub,
        Err(e) => {
            result.outcome = format!("error: {e}");
            return result;
        }
    };
    let run = {
        let hub = hub.clone();
        let limits = StepLimits::steps(options.max_steps).approval_wait(None);
        async move {
            let created = hub
                .create_task(NewTask::new(task.prompt).check(task.check))
                .await?;
            hub.assign(created.id, &AgentId::new("suite")?).await?;
            Ok::<_, ananta_core::Error>(hub.run(created.id, &limits).await)
        }
    };
    // A panic inside the loop shows as a failed join, a hang as the timeout.
    let joined = tokio::time::timeout(options.task_timeout, tokio::spawn(run)).await;
    match joined {
        Err(_) => result.outcome = "hang".into(),
        Ok(Err(join)) => result.outcome = format!("crash: {join}"),
        Ok(Ok(Err(e))) => result.outcome = format!("error: {e}"),
        Ok(Ok(Ok(Err(e)))) => {
            result.steps = e.report.steps;
            result.fed_back = e.report.fed_back;
            result.outcome = format!("error: {}", e.error);
        }
        Ok(Ok(Ok(Ok(report)))) => {
            result.completed = true;
            result.steps = report.steps;
            result.fed_back = report.fed_back;
            result.outcome = stop_name(&report.stop).into();
            result.solved = sh(dir.path(), task.check);
            result.false_done = matches!(report.stop, StopReason::Done { .. }) && !result.solved;
        }
    }
    result
}

fn stop_name(stop: &StopReason) -> &'static str {
    match stop {
        StopReason::Done { .. } => "done",
        StopReason::Unverified { .. } => "review",
        StopReason::StepBudget => "step_budget",
        StopReason::TokenBudget => "token_budget",
        StopReason::Cancelled => "cancelled",
        StopReason::AwaitingApproval { .. } => "awaiting_approval",
        StopReason::Stuck { .. } => "stuck",
    }
}

async fn agent(
    options: &SuiteOptions,
    protocol: SuiteProtocol,
    dir: &std::path::Path,
) -> Result<Hub, ananta_core::Error> {
    let mut llm = OpenAiProvider::llama_cpp(&options.url).timeout(options.task_timeout);
    if let Some(model) = &options.model {
        llm = llm.model(model.clone());
    }
    let llm = llm.build().map_err(ananta_core::Error::Llm)?;
    let plain = ShellExecutor::new(dir).timeout(Duration::from_secs(120));
    let executor: Arc<dyn Executor> = if options.sandbox {
        let sandboxed = ShellExecutor::sandboxed(dir).timeout(Duration::from_secs(120));
        match sandboxed.sandbox_report() {
            Ok(_) => Arc::new(sandboxed),
            Err(_) => Arc::new(plain),
        }
    } else {
        Arc::new(plain)
    };
    let mut worker = Worker::builder(AgentId::new("suite")?)
        .llm(Arc::new(llm))
        .executor(executor)
        .temperature(0.0)
        .max_tokens(options.max_tokens);
    worker = match protocol {
        SuiteProtocol::Text => worker,
        SuiteProtocol::Structured => worker.structured_output(true),
        SuiteProtocol::Tools => worker.protocol(Protocol::Tools).tool_root(dir),
    };
    let worker = worker.build()?;
    let hub = Hub::builder().store(Arc::new(MemoryStore::new())).build()?;
    hub.register_agent(worker.card(), Arc::new(worker)).await?;
    Ok(hub)
}

/// Per protocol: runs, completed, solved, false done, average steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The protocol.
    pub protocol: SuiteProtocol,
    /// Runs.
    pub runs: usize,
    /// Completed without crash, hang or loop error.
    pub completed: usize,
    /// Solved.
    pub solved: usize,
    /// Said done but the check fails.
    pub false_done: usize,
    /// Average steps per run.
    pub average_steps: f64,
}

/// The summary of each protocol in `results`, in the order they ran.
pub fn summarise(results: &[TaskResult]) -> Vec<Summary> {
    let mut protocols: Vec<SuiteProtocol> = Vec::new();
    for r in results {
        if !protocols.contains(&r.protocol) {
            protocols.push(r.protocol);
        }
    }
    protocols
        .into_iter()
        .map(|protocol| {
            let runs: Vec<&TaskResult> =
                results.iter().filter(|r| r.protocol == protocol).collect();
            let steps: u32 = runs.iter().map(|r| r.steps).sum();
            Summary {
                protocol,
                runs: runs.len(),
                completed: runs.iter().filter(|r| r.completed).count(),
                solved: runs.iter().filter(|r| r.solved).count(),
                false_done: runs.iter().filter(|r| r.false_done).count(),
                average_steps: if runs.is_empty() {
                    0.0
                } else {
                    f64::from(steps) / runs.len() as f64
                },
            }
        })
        .collect()
}

/// The report as a Markdown table, one row per protocol.
pub fn report(model: &str, results: &[TaskResult]) -> String {
    let mut out = String::from(
        "| model | protocol | runs | completed (no crash/hang) | solved | false done | avg steps |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for s in summarise(results) {
        out.push_str(&format!(
            "| {model} | {} | {} | {} | {} | {} | {:.1} |\n",
            s.protocol.name(),
            s.runs,
            s.completed,
            s.solved,
            s.false_done,
            s.average_steps
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_has_a_check_that_fails_before_and_an_id_of_its_own() {
        let mut ids: Vec<&str> = TASKS.iter().map(|t| t.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), TASKS.len());
        assert!(TASKS.len() >= 20);
        for task in TASKS {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            assert!(
                task.setup.is_empty() || sh(dir.path(), task.setup),
                "{}: setup",
                task.id
            );
            assert!(
                !sh(dir.path(), task.check),
                "{}: solved before anything ran",
                task.id
            );
        }
    }

    #[test]
    fn the_summary_counts_per_protocol() {
        let result = |protocol, solved, false_done, steps| TaskResult {
            task: "t",
            protocol,
            outcome: "done".into(),
            completed: true,
            solved,
            false_done,
            steps,
            fed_back: 0,
        };
        let results = [
            result(SuiteProtocol::Text, true, false, 2),
            result(SuiteProtocol::Text, false, false, 4),
            result(SuiteProtocol::Tools, true, false, 1),
        ];
        let summary = summarise(&results);
        assert_eq!(summary.len(), 2);
        assert_eq!((summary[0].runs, summary[0].solved), (2, 1));
        assert!((summary[0].average_steps - 3.0).abs() < 1e-9);
        assert!(report("m", &results).contains("| m | tools | 1 | 1 | 1 | 0 | 1.0 |"));
    }
}
