//! Structured output over any provider: [`StructuredOutput::complete_json`].

use ananta_core::llm::ChatRequest;
use ananta_core::{LlmError, LlmProvider};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

/// Typed structured output for every [`LlmProvider`] (an extension trait: bring it into scope
/// and call it on any provider, `Arc<dyn LlmProvider>` included).
///
/// ```
/// use ananta_core::llm::{ChatMessage, ChatRequest};
/// use ananta_llm::{ScriptedProvider, StructuredOutput};
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Verdict {
///     ok: bool,
///     why: String,
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build()?.block_on(async {
/// let llm = ScriptedProvider::new([r#"{"ok": true, "why": "tests pass"}"#]);
/// let request = ChatRequest::new(vec![ChatMessage::user("Do the tests pass?")]);
/// let verdict: Verdict = llm.complete_json(request).await?;
/// assert!(verdict.ok);
/// // The schema went out with the request.
/// assert!(llm.requests()[0].response_format.is_some());
/// # Ok::<(), ananta_core::LlmError>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[async_trait]
pub trait StructuredOutput: LlmProvider {
    /// Sends `request` with `T`'s JSON schema as the response format and parses the answer
    /// as `T`. An answer that is not `T` is [`LlmError::SchemaMismatch`] carrying the raw
    /// text; a code fence or a `<think>` block around the JSON is tolerated.
    async fn complete_json<T>(&self, request: ChatRequest) -> Result<T, LlmError>
    where
        T: JsonSchema + DeserializeOwned + Send,
    {
        let response = self.complete(request.json_schema_for::<T>()).await?;
        parse_structured(&response.content)
    }
}

impl<P: LlmProvider + ?Sized> StructuredOutput for P {}

/// Parses a structured answer as `T`; see [`StructuredOutput::complete_json`].
pub fn parse_structured<T: DeserializeOwned>(raw: &str) -> Result<T, LlmError> {
    let text = json_body(raw);
    serde_json::from_str(text).map_err(|e| LlmError::SchemaMismatch {
        message: e.to_string(),
        raw: raw.to_string(),
    })
}

/// The JSON inside an answer: after a closing `</think>`, inside a code fence when there is one.
fn json_body(raw: &str) -> &str {
    let mut text = raw;
    if let Some(end) = text.rfind("</think>") {
        text = &text[end + "</think>".len()..];
    }
    let text = text.trim();
    if let Some(rest) = text.strip_prefix("```") {
        let rest = rest.trim_start_matches(|c: char| c.is_ascii_alphanumeric());
        if let Some(body) = rest.trim_end().strip_suffix("```") {
            return body.trim();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, JsonSchema, PartialEq)]
    struct P {
        command: String,
    }

    #[test]
    fn tolerates_fences_and_think_blocks() {
        let want = P {
            command: "ls".into(),
        };
        assert_eq!(parse_structured::<P>(r#"{"command":"ls"}"#).unwrap(), want);
        assert_eq!(
            parse_structured::<P>("```json\n{\"command\":\"ls\"}\n```").unwrap(),
            want
        );
        assert_eq!(
            parse_structured::<P>("<think>hm</think>\n {\"command\":\"ls\"} ").unwrap(),
            want
        );
    }

    #[test]
    fn mismatch_carries_the_raw_text() {
        for raw in [
            "",
            "sure! here it is",
            r#"{"cmd":"ls"}"#,
            r#"{"command": 3}"#,
            "{\"command\":\"ls\"",
        ] {
            match parse_structured::<P>(raw) {
                Err(LlmError::SchemaMismatch { raw: got, message }) => {
                    assert_eq!(got, raw);
                    assert!(!message.is_empty());
                }
                other => panic!("{raw:?}: {other:?}"),
            }
        }
    }
}
