//! Decoding a streamed answer: newline-delimited JSON, one chunk per line.

use std::pin::Pin;

use ananta_core::LlmError;
use ananta_core::llm::{ChatChunk, ChatStream, ToolCall};
use futures::{Stream, StreamExt};

use super::wire::{ChatLine, finish_reason, in_body_error, tool_calls};
use crate::http::{ByteStream, excerpt, lines};

pub(super) type LineStream = Pin<Box<dyn Stream<Item = Result<String, LlmError>> + Send>>;

/// What the NDJSON decoder keeps between lines.
pub(super) struct StreamState {
    pub(super) lines: LineStream,
    /// Tool calls seen so far; emitted together on the final chunk.
    pub(super) tool_calls: Vec<ToolCall>,
}

/// Decodes a streamed `/api/chat` answer: one chunk per line that adds text, then a final
/// chunk (from the `done` line) with usage, finish reason and the tool calls. Ends after the
/// final chunk or the first error.
pub(super) fn decode_stream(body: ByteStream) -> ChatStream {
    let state = StreamState {
        lines: lines(body),
        tool_calls: Vec::new(),
    };
    Box::pin(futures::stream::unfold(Some(state), |state| async move {
        let mut st = state?;
        loop {
            let line = match st.lines.next().await {
                Some(Ok(line)) => line,
                Some(Err(e)) => return Some((Err(e), None)),
                None => {
                    let err = LlmError::InvalidResponse {
                        message: "the stream was truncated: it ended before Ollama's final \
                                  `done` line"
                            .into(),
                        raw: String::new(),
                    };
                    return Some((Err(err), None));
                }
            };
            let mut parsed: ChatLine = match serde_json::from_str(&line) {
                Ok(parsed) => parsed,
                Err(e) => {
                    let err = LlmError::InvalidResponse {
                        message: format!("unreadable line in the /api/chat stream: {e}"),
                        raw: excerpt(&line),
                    };
                    return Some((Err(err), None));
                }
            };
            if let Some(error) = &parsed.error {
                return Some((Err(in_body_error(error)), None));
            }
            let (delta, calls) = parsed.take_message();
            let first = st.tool_calls.len();
            st.tool_calls.extend(tool_calls(calls, first));
            if parsed.done {
                let tool_calls = std::mem::take(&mut st.tool_calls);
                let chunk = ChatChunk {
                    delta,
                    usage: parsed.usage(),
                    finish_reason: finish_reason(
                        true,
                        parsed.done_reason.as_deref(),
                        !tool_calls.is_empty(),
                    ),
                    tool_calls,
                };
                return Some((Ok(chunk), None));
            }
            // Lines without text (a thinking model's reasoning, a tool call) add nothing yet.
            if !delta.is_empty() {
                let chunk = ChatChunk {
                    delta,
                    ..ChatChunk::default()
                };
                return Some((Ok(chunk), Some(st)));
            }
        }
    }))
}
