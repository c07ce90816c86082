//! The Worker's calls that report live progress: the model's answer streamed, and a command's
//! output forwarded while it runs.

use futures::StreamExt;

use super::Worker;
use super::progress::{Progress, ProgressSink, forward_output};
use crate::error::{ExecError, LlmError};
use crate::exec::{ExecOutcome, ExecRequest};
use crate::ids::TaskId;
use crate::llm::{ChatRequest, ChatResponse};

impl Worker {
    /// Adds a listener for live progress under `key`, replacing one added before under the
    /// same key (a Hub uses its own key, so registering the worker again adds nothing).
    pub fn add_progress_sink(&self, key: impl Into<String>, sink: ProgressSink) {
        self.inner.listeners.add(key.into(), sink);
    }

    /// Asks the model. With listeners the answer is streamed and each piece reported as
    /// [`Progress::LlmDelta`]; a provider that cannot stream ([`LlmError::Unsupported`] before
    /// the first piece) is asked again without streaming. Other errors are the answer.
    pub(super) async fn ask(
        &self,
        task_id: TaskId,
        step: u32,
        request: ChatRequest,
    ) -> Result<ChatResponse, LlmError> {
        let llm = &self.inner.llm;
        if self.inner.listeners.is_empty() {
            return llm.complete(request).await;
        }
        let mut stream = match llm.complete_stream(request.clone()).await {
            Ok(s) => s,
            Err(e @ LlmError::Unsupported { .. }) => {
                tracing::debug!(error = %e, "no streaming; asking without it");
                return llm.complete(request).await;
            }
            Err(e) => return Err(e),
        };
        let mut response = ChatResponse::default();
        let mut pieces = 0usize;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e @ LlmError::Unsupported { .. }) if pieces == 0 => {
                    tracing::debug!(error = %e, "no streaming; asking without it");
                    return llm.complete(request).await;
                }
                Err(e) => return Err(e),
            };
            pieces += 1;
            if !chunk.delta.is_empty() {
                response.content.push_str(&chunk.delta);
                self.inner.listeners.send(Progress::LlmDelta {
                    task_id,
                    step,
                    text: chunk.delta,
                });
            }
            if chunk.usage.is_some() {
                response.usage = chunk.usage;
            }
            if chunk.finish_reason.is_some() {
                response.finish_reason = chunk.finish_reason;
            }
            response.tool_calls.extend(chunk.tool_calls);
        }
        Ok(response)
    }

    /// Runs a command. With listeners its output is reported as
    /// [`Progress::CommandOutput`] while it runs, all of it before this returns.
    pub(super) async fn run_command(
        &self,
        task_id: TaskId,
        step: u32,
        request: ExecRequest,
    ) -> Result<ExecOutcome, ExecError> {
        if self.inner.listeners.is_empty() {
            return self.inner.executor.run(request, None).await;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let forward = tokio::spawn(forward_output(
            rx,
            self.inner.listeners.clone(),
            task_id,
            step,
        ));
        let outcome = self.inner.executor.run(request, Some(tx)).await;
        // The executor dropped its sender: the forwarder ends after the last chunk (an
        // executor that kept the sender gets two seconds).
        match tokio::time::timeout(std::time::Duration::from_secs(2), forward).await {
            Ok(Err(e)) => tracing::warn!(error = %e, "the output forwarder failed"),
            Ok(Ok(())) => {}
            Err(_) => tracing::warn!("the executor kept its output sink after the command ended"),
        }
        outcome
    }
}
