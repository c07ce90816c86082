//! The Worker's side of native tool calls: reading the model's call, running a file tool in the
//! task's workspace, and showing calls and results in the history.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Instant;

use super::Worker;
use crate::error::{AgentError, ExecError, ProposalError};
use crate::exec::ExecOutcome;
use crate::llm::{ChatMessage, ToolCall};
use crate::task::{StepRecord, Task};
use crate::tools::{
    FINISH, FinishArgs, RUN_COMMAND, RunCommandArgs, ToolAccess, ToolContext, ToolError, arguments,
};

/// Text answers in a row, under [`Protocol::Tools`], after which a model that has never called
/// a tool is asked in the text protocol instead.
pub const TEXT_ANSWERS_BEFORE_FALLBACK: u32 = 3;

/// What the Worker has learned about its model and tool calls.
#[derive(Debug, Default)]
pub(super) struct ToolSupport {
    /// It called a tool at least once.
    seen: AtomicBool,
    /// Answers in a row without a tool call.
    text_in_a_row: AtomicU32,
    /// It does not call tools: the text protocol is used.
    fallen_back: AtomicBool,
}

impl ToolSupport {
    /// Records an answer under the tool protocol.
    pub(super) fn answered(&self, with_call: bool, worker: &crate::AgentId) {
        if with_call {
            self.seen.store(true, Ordering::Relaxed);
            self.text_in_a_row.store(0, Ordering::Relaxed);
            return;
        }
        let in_a_row = self.text_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        if in_a_row >= TEXT_ANSWERS_BEFORE_FALLBACK
            && !self.seen.load(Ordering::Relaxed)
            && !self.fallen_back.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                %worker,
                "the model answered {in_a_row} times in text and never called a tool: using the text protocol"
            );
        }
    }

    fn fallen_back(&self) -> bool {
        self.fallen_back.load(Ordering::Relaxed)
    }
}

/// What a tool call asks for.
pub(super) enum ToolAnswer {
    /// A shell command (`run_command`) or another tool, shown as `command`.
    Act { command: String },
    /// `finish`.
    Finish { summary: String },
}

/// The raw form of a call, for logs and feedback.
pub(super) fn raw_call(call: &ToolCall) -> String {
    serde_json::json!({"tool": call.name, "arguments": call.arguments}).to_string()
}

impl Worker {
    /// The protocol the next request uses: the configured one, except that a worker whose
    /// model never calls tools falls back to the text protocol after
    /// [`TEXT_ANSWERS_BEFORE_FALLBACK`] text answers.
    pub(super) fn protocol_in_use(&self, config: &super::WorkerConfig) -> super::Protocol {
        match config.protocol {
            super::Protocol::Tools if self.inner.tools.fallen_back() => super::Protocol::Text,
            p => p,
        }
    }

    /// Reads the model's call: a known tool with arguments that fit it, or a typed error the
    /// model is told about.
    pub(super) fn read_tool_call(&self, call: &ToolCall) -> Result<ToolAnswer, ProposalError> {
        let invalid = |message: String| ProposalError::InvalidToolCall {
            tool: call.name.clone(),
            message,
            raw: raw_call(call),
        };
        match call.name.as_str() {
            RUN_COMMAND => {
                let args: RunCommandArgs =
                    arguments(&call.arguments).map_err(|e| invalid(e.to_string()))?;
                if args.command.trim().is_empty() {
                    return Err(invalid("`command` is empty".into()));
                }
                Ok(ToolAnswer::Act {
                    command: args.command.trim().to_string(),
                })
            }
            FINISH => {
                let args: FinishArgs =
                    arguments(&call.arguments).map_err(|e| invalid(e.to_string()))?;
                Ok(ToolAnswer::Finish {
                    summary: args.summary,
                })
            }
            name => {
                if self.inner.settings.toolbox.get(name).is_none() {
                    return Err(invalid(format!(
                        "there is no such tool; the tools are {}",
                        self.inner
                            .settings
                            .toolbox
                            .specs()
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                let args = call.arguments.trim();
                Ok(ToolAnswer::Act {
                    command: format!("{name} {}", if args.is_empty() { "{}" } else { args }),
                })
            }
        }
    }

    /// Whether running `call` needs a human first (a write with [`ToolAccess::ApproveWrites`]).
    pub(super) fn tool_needs_approval(&self, call: &ToolCall) -> Option<String> {
        let tool = self.inner.settings.toolbox.get(&call.name)?;
        (tool.writes() && self.inner.settings.tool_access == ToolAccess::ApproveWrites)
            .then(|| format!("{} changes files", call.name))
    }

    /// Runs a file tool (or a host's tool) in the task's workspace. A tool's refusal (a path
    /// outside the workspace, a write when read-only, bad arguments) is the step's failed
    /// outcome, which the model reads; only a missing workspace is an error.
    pub(super) async fn run_tool(
        &self,
        task: &Task,
        call: &ToolCall,
    ) -> Result<ExecOutcome, AgentError> {
        let settings = &self.inner.settings;
        let workspace = match settings.workspaces.prepare(task.id).await? {
            Some(dir) => dir,
            None => settings.tool_root.clone().ok_or_else(|| {
                AgentError::Workspace("the file tools have no folder (tool_root)".into())
            })?,
        };
        let ctx = ToolContext::new(workspace).access(settings.tool_access);
        let started = Instant::now();
        let result = match settings.toolbox.get(&call.name) {
            Some(tool) => tool.call(&ctx, &call.arguments).await,
            None => Err(ToolError::UnknownTool(call.name.clone())),
        };
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(match result {
            Ok(text) => ExecOutcome {
                exit_code: Some(0),
                stdout: text,
                duration_ms,
                ..ExecOutcome::default()
            },
            Err(e) => ExecOutcome {
                exit_code: Some(1),
                stderr: format!("{}: {e}", call.name),
                duration_ms,
                ..ExecOutcome::default()
            },
        })
    }

    /// The refusal of a held tool call, as the gate's would be.
    pub(super) fn held(reason: String) -> AgentError {
        AgentError::Exec(ExecError::NeedsApproval {
            reasons: vec![reason],
        })
    }
}

/// The history messages of a step that came from a tool call: the assistant's call and the
/// tool's result.
pub(super) fn tool_step_messages(
    step: &StepRecord,
    call: &ToolCall,
    output_budget: usize,
) -> [ChatMessage; 2] {
    [
        ChatMessage::assistant_tool_calls("", vec![call.clone()]),
        ChatMessage::tool_result(
            call.id.clone(),
            format!(
                "Step {}:\n{}",
                step.index,
                step.outcome.summary_for_model(output_budget)
            ),
        ),
    ]
}
