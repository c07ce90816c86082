//! Decoding a streamed answer: server-sent events, chunk by chunk, with tool-call fragments
//! assembled into whole calls.

use std::collections::BTreeMap;

use ananta_core::llm::{ChatChunk, FinishReason, ToolCall};
use ananta_core::{LlmError, TokenUsage};
use eventsource_stream::EventStreamError;
use serde_json::{Value, json};

use super::wire::{StreamChunk, finish_reason};
use crate::http::{error_message, excerpt, is_context_error};

pub(super) type EventStream = std::pin::Pin<
    Box<
        dyn futures::Stream<Item = Result<eventsource_stream::Event, EventStreamError<LlmError>>>
            + Send,
    >,
>;

pub(super) struct StreamState {
    pub(super) events: Option<EventStream>,
    pub(super) assembler: StreamAssembler,
}

pub(super) fn sse_error(e: EventStreamError<LlmError>) -> LlmError {
    match e {
        EventStreamError::Transport(e) => e,
        EventStreamError::Utf8(e) => LlmError::InvalidResponse {
            message: format!("event stream is not UTF-8: {e}"),
            raw: String::new(),
        },
        EventStreamError::Parser(e) => LlmError::InvalidResponse {
            message: format!("not a server-sent event stream: {e}"),
            raw: String::new(),
        },
    }
}

/// Turns the events of a streamed completion into chunks: text deltas as they come, and one
/// last chunk with the finish reason, the usage and the assembled tool calls.
#[derive(Default)]
pub(super) struct StreamAssembler {
    pub(super) finish_reason: Option<FinishReason>,
    pub(super) usage: Option<TokenUsage>,
    pub(super) tool_calls: BTreeMap<u64, PartialToolCall>,
    pub(super) finished: bool,
}

#[derive(Default)]
pub(super) struct PartialToolCall {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) arguments: String,
}

impl StreamAssembler {
    /// One `data:` payload; a chunk when it carries text.
    pub(super) fn push(&mut self, data: &str) -> Result<Option<ChatChunk>, LlmError> {
        // One pass straight into the chunk type: this runs once per token.
        let chunk: StreamChunk =
            serde_json::from_str(data).map_err(|e| LlmError::InvalidResponse {
                message: format!("unexpected stream chunk: {e}"),
                raw: excerpt(data),
            })?;
        if let Some(error) = chunk.error {
            let text = error.to_string();
            let message = error_message(&json!({ "error": error }).to_string());
            if is_context_error(&text) {
                return Err(LlmError::ContextLengthExceeded(message));
            }
            let status = error
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok());
            return Err(LlmError::Server {
                status: status.unwrap_or(500),
                message,
            });
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.into());
        }
        let mut text = String::new();
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(delta) = choice.delta {
                if let Some(content) = delta.content {
                    text.push_str(&content);
                }
                for call in delta.tool_calls {
                    let slot = self.tool_calls.entry(call.index).or_default();
                    if let Some(id) = call.id {
                        slot.id = id;
                    }
                    if let Some(f) = call.function {
                        if let Some(name) = f.name {
                            slot.name.push_str(&name);
                        }
                        if let Some(args) = f.arguments {
                            slot.arguments.push_str(&args);
                        }
                    }
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(finish_reason(&reason));
            }
        }
        Ok((!text.is_empty()).then(|| ChatChunk {
            delta: text,
            ..ChatChunk::default()
        }))
    }

    /// The last chunk, once: at `[DONE]`, or at the end of the body when the answer had
    /// finished (some servers omit `[DONE]`); a body that ends mid-answer is an error.
    pub(super) fn finish(&mut self, saw_done: bool) -> Option<Result<ChatChunk, LlmError>> {
        if self.finished {
            return None;
        }
        self.finished = true;
        if !saw_done && self.finish_reason.is_none() {
            return Some(Err(LlmError::InvalidResponse {
                message: "the event stream ended before the answer was complete (truncated)".into(),
                raw: String::new(),
            }));
        }
        let tool_calls: Vec<ToolCall> = std::mem::take(&mut self.tool_calls)
            .into_iter()
            .map(|(index, c)| ToolCall {
                id: if c.id.is_empty() {
                    format!("call_{index}")
                } else {
                    c.id
                },
                name: c.name,
                arguments: c.arguments,
            })
            .collect();
        Some(Ok(ChatChunk {
            delta: String::new(),
            usage: self.usage,
            finish_reason: self.finish_reason.clone(),
            tool_calls,
        }))
    }
}
