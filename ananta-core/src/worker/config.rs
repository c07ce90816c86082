//! [`WorkerConfig`]: the settings of a Worker that may change while it runs.

use crate::error::InvalidInput;

/// How a Worker's model acts.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// The model answers in text: JSON ([`AnswerFormat`](crate::parse::AnswerFormat)), or one of
    /// the shapes [`parse_answer`](crate::parse::parse_answer) reads. Works with every model
    /// (the default).
    #[default]
    Text,
    /// Native tool calls: the request offers `run_command`, `finish` and the worker's
    /// [`Toolbox`](crate::tools::Toolbox) with their JSON schemas, and the model calls one.
    /// For servers with function calling (OpenAI-compatible ones, llama.cpp's `llama-server
    /// --jinja`, Ollama). An answer in text is still read as in [`Protocol::Text`], and a
    /// model that answers three times in a row in text without ever calling a tool is asked in
    /// the text protocol from then on (logged as a warning).
    Tools,
}

/// The settings of a [`Worker`](super::Worker) that may change while it runs (the original Ananta's `/config`): read
/// them with [`Worker::config`](super::Worker::config), change them with
/// [`Worker::set_config`](super::Worker::set_config).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct WorkerConfig {
    /// The model to ask (a template's `model` overrides it per task).
    #[serde(default)]
    pub model: Option<String>,
    /// Sampling temperature, `0.0..=2.0`.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Answer token limit.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Whether answers are constrained to [`AnswerFormat`](crate::parse::AnswerFormat)'s schema.
    #[serde(default)]
    pub structured_output: bool,
    /// How the model acts: JSON answers parsed from text, or native tool calls.
    #[serde(default)]
    pub protocol: Protocol,
    /// Characters of each output stream fed back to the model (at least 100).
    pub output_budget: usize,
    /// How many of the latest steps the prompt shows (at least 1).
    pub history_steps: usize,
    /// About how many tokens the history in the prompt may take (at least 200; estimated at
    /// four characters a token): older steps are left out first, the latest always stays.
    #[serde(default = "default_history_tokens")]
    pub history_tokens: usize,
}

fn default_history_tokens() -> usize {
    3_000
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            model: None,
            temperature: None,
            max_tokens: None,
            structured_output: false,
            protocol: Protocol::Text,
            output_budget: 4_000,
            history_steps: 20,
            history_tokens: default_history_tokens(),
        }
    }
}

impl WorkerConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(InvalidInput::new(
                "temperature",
                format!("temperature {t} is outside 0.0..=2.0"),
            ));
        }
        if self.output_budget < 100 {
            return Err(InvalidInput::new(
                "output_budget",
                "output_budget must be at least 100 characters",
            ));
        }
        if self.history_steps == 0 {
            return Err(InvalidInput::new(
                "history_steps",
                "history_steps must be at least 1",
            ));
        }
        if self.history_tokens < 200 {
            return Err(InvalidInput::new(
                "history_tokens",
                "history_tokens must be at least 200",
            ));
        }
        if self.model.as_ref().is_some_and(|m| m.trim().is_empty()) {
            return Err(InvalidInput::new(
                "model",
                "model must not be empty (leave it out for the provider's default)",
            ));
        }
        Ok(())
    }
}
