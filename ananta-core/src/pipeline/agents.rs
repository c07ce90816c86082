//! The two kinds of pipeline agents that come with Ananta: [`TextAgent`] (an LLM answers
//! with text) and [`ShellAgent`] (a Worker works on the task until done).

use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::{NodeAgent, NodeInput, NodeOutput};
use crate::error::AgentError;

/// A text agent: answers a task with text from its LLM, like the original Ananta's researcher,
/// summariser and translator. Its specialisation is the system prompt; the task's context
/// (its dependencies' outputs) follows the description.
pub struct TextAgent {
    llm: Arc<dyn crate::llm::LlmProvider>,
    specialisation: String,
    model: Option<String>,
    max_tokens: Option<u32>,
}

impl std::fmt::Debug for TextAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextAgent")
            .field("llm", &self.llm.name())
            .field("specialisation", &self.specialisation)
            .finish_non_exhaustive()
    }
}

impl TextAgent {
    /// A text agent asking `llm`, specialised as `specialisation` (e.g. "You translate
    /// between German and English.").
    pub fn new(llm: Arc<dyn crate::llm::LlmProvider>, specialisation: impl Into<String>) -> Self {
        Self {
            llm,
            specialisation: specialisation.into(),
            model: None,
            max_tokens: None,
        }
    }

    /// The model to ask.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Answer token limit.
    pub fn max_tokens(mut self, tokens: u32) -> Self {
        self.max_tokens = Some(tokens);
        self
    }
}

#[async_trait]
impl NodeAgent for TextAgent {
    async fn run(
        &self,
        input: NodeInput,
        cancel: CancellationToken,
    ) -> Result<NodeOutput, AgentError> {
        use crate::llm::{ChatMessage, ChatRequest};
        let system = format!(
            "{}\nAnswer with the result of the task only, without preamble.",
            self.specialisation
        );
        let mut task = format!("Task: {}", input.description);
        if !input.context.is_empty() {
            task.push_str("\n\nResults of earlier tasks you may need:\n");
            task.push_str(&input.context);
        }
        let mut request =
            ChatRequest::new(vec![ChatMessage::system(system), ChatMessage::user(task)]);
        request.model = self.model.clone();
        request.max_tokens = self.max_tokens;
        let response = tokio::select! {
            () = cancel.cancelled() => return Err(AgentError::Cancelled),
            response = self.llm.complete(request) => response?,
        };
        Ok(NodeOutput {
            text: response.content.trim().to_string(),
            usage: response.usage,
        })
    }
}

/// A shell agent: a [`Worker`](crate::worker::Worker) works on the task on its own —
/// propose, run, feed the output back — until its model says it is done or `max_steps` are
/// used. The output is the model's summary and the last command's output. Cancelling stops
/// the worker and kills the running command's process group.
pub struct ShellAgent {
    worker: crate::worker::Worker,
    max_steps: u32,
}

impl std::fmt::Debug for ShellAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShellAgent")
            .field("worker", self.worker.name())
            .field("max_steps", &self.max_steps)
            .finish()
    }
}

impl ShellAgent {
    /// A shell agent running `worker` for at most `max_steps` steps per task.
    pub fn new(worker: crate::worker::Worker, max_steps: u32) -> Self {
        Self {
            worker,
            max_steps: max_steps.max(1),
        }
    }
}

#[async_trait]
impl NodeAgent for ShellAgent {
    async fn run(
        &self,
        input: NodeInput,
        cancel: CancellationToken,
    ) -> Result<NodeOutput, AgentError> {
        use crate::steps::StepLimits;
        let title: String = input
            .description
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        let mut description = input.description.clone();
        if !input.context.is_empty() {
            description.push_str("\n\nResults of earlier tasks:\n");
            description.push_str(&input.context);
        }
        let mut task = crate::task::NewTask::new(title)
            .description(description)
            .into_task()
            .map_err(|e| {
                AgentError::Exec(crate::error::ExecError::InvalidRequest(e.to_string()))
            })?;
        // A plan's task carries no acceptance checks yet: the model's "finished" is its result.
        let limits = StepLimits::steps(self.max_steps)
            .cancel(cancel)
            .trust_model(true);
        let report = self
            .worker
            .run(&mut task, None, &limits)
            .await
            .map_err(|e| agent_error(e.error))?;
        shell_output(report, task.steps.last())
    }
}

/// An error of a step loop as an agent's error (transient where the cause is).
pub(crate) fn agent_error(e: crate::error::Error) -> AgentError {
    match e {
        crate::error::Error::Agent(a) => a,
        crate::error::Error::Llm(l) => AgentError::Llm(l),
        crate::error::Error::Exec(x) => AgentError::Exec(x),
        other => AgentError::Rejected {
            status: 0,
            message: other.to_string(),
        },
    }
}

/// The output of a step loop that worked on a task: the model's summary and the last
/// command's output; an error unless the model said it was done.
pub(crate) fn shell_output(
    report: crate::steps::StepReport,
    last_step: Option<&crate::task::StepRecord>,
) -> Result<NodeOutput, AgentError> {
    use crate::steps::StopReason;
    let last = last_step
        .map(|s| s.outcome.summary_for_model(2_000))
        .unwrap_or_default();
    let text = match report.stop {
        StopReason::Done { summary } => format!("{summary}\n\n{last}").trim().to_string(),
        StopReason::Cancelled => return Err(AgentError::Cancelled),
        StopReason::AwaitingApproval { reasons } => {
            return Err(AgentError::Exec(crate::error::ExecError::NeedsApproval {
                reasons,
            }));
        }
        other => {
            return Err(AgentError::Rejected {
                status: 0,
                message: format!("the agent stopped before it was done: {other:?}"),
            });
        }
    };
    Ok(NodeOutput {
        text,
        usage: Some(report.usage),
    })
}
