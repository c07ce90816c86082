//! The messages a Worker sends its LLM: system prompt, the task, then the latest turns (steps
//! with their output, answers fed back), capped by steps and by estimated tokens.

use serde_json::json;

use super::{Protocol, Worker};
use crate::error::AgentError;
use crate::llm::ChatMessage;
use crate::task::{StepRecord, Task};
use crate::template::{Template, task_variables};

/// One turn of the history: the model's answer and what it was told afterwards.
struct Turn {
    messages: Vec<ChatMessage>,
    is_step: bool,
}

impl Turn {
    fn text(answer: String, observation: String, is_step: bool) -> Self {
        Self {
            messages: vec![
                ChatMessage::assistant(answer),
                ChatMessage::user(observation),
            ],
            is_step,
        }
    }

    /// Estimated tokens: about four characters each, plus a little per message.
    fn tokens(&self) -> usize {
        self.messages
            .iter()
            .map(|m| {
                let calls: usize = m
                    .tool_calls
                    .iter()
                    .map(|c| c.arguments.len() + c.name.len())
                    .sum();
                (m.content.len() + calls) / 4 + 4
            })
            .sum()
    }
}

fn step_turn(step: &StepRecord, output_budget: usize, tools: bool) -> Turn {
    if tools && let Some(call) = step.proposal.as_ref().and_then(|p| p.tool_call.as_ref()) {
        return Turn {
            messages: super::tool_calls::tool_step_messages(step, call, output_budget).into(),
            is_step: true,
        };
    }
    let answer = match &step.proposal {
        Some(p) if p.command == step.command && !p.raw.is_empty() => p.raw.clone(),
        Some(p) => json!({"reason": p.reason, "command": step.command}).to_string(),
        None => {
            json!({"reason": "command given by the operator", "command": step.command}).to_string()
        }
    };
    let observation = format!(
        "Step {} ran `{}`:\n{}\nPropose the next command, or say you are finished.",
        step.index,
        step.command,
        step.outcome.summary_for_model(output_budget)
    );
    Turn::text(answer, observation, true)
}

/// The task as the model reads it: no internal ids (a model copies them into commands).
pub(super) fn task_text(task: &Task, template: Option<&Template>) -> Result<String, AgentError> {
    let mut text = match template {
        Some(t) => t.render(&task_variables(task))?,
        None if task.description.trim().is_empty() => format!("Task: {}", task.title),
        None => format!("Task: {}\n\n{}", task.title, task.description),
    };
    let checks = crate::verify::checks_of(task, template);
    if !checks.is_empty() {
        text.push_str("\n\nWhen you say you are finished, your work is checked with:\n");
        for check in &checks {
            text.push_str(&format!("- `{check}`\n"));
        }
    }
    Ok(text)
}

impl Worker {
    /// The messages the worker sends its LLM for the next step of `task`: the system prompt,
    /// the task (its template rendered, or title and description, and its acceptance checks),
    /// then the latest turns in order: executed steps as the model's answer and a user message
    /// with the output, and answers that were fed back (see [`crate::feedback`]) with what the
    /// model was told. At most [`WorkerConfig::history_steps`] steps and about
    /// [`WorkerConfig::history_tokens`] tokens of history are sent, newest kept; the latest
    /// turn always is.
    ///
    /// [`WorkerConfig::history_steps`]: crate::worker::WorkerConfig::history_steps
    /// [`WorkerConfig::history_tokens`]: crate::worker::WorkerConfig::history_tokens
    pub fn build_messages(
        &self,
        task: &Task,
        template: Option<&Template>,
    ) -> Result<Vec<ChatMessage>, AgentError> {
        let config = self.config();
        let protocol = self.protocol_in_use(&config);
        let mut system = match (&self.inner.settings.system_prompt, protocol) {
            (Some(custom), _) => custom.clone(),
            (None, Protocol::Text) => super::DEFAULT_SYSTEM_PROMPT.to_string(),
            (None, Protocol::Tools) => super::DEFAULT_TOOLS_SYSTEM_PROMPT.to_string(),
        };
        if !self.inner.settings.specialisation.is_empty() {
            system.push_str("\n\nYour specialisation: ");
            system.push_str(&self.inner.settings.specialisation);
        }
        let mut messages = vec![
            ChatMessage::system(system),
            ChatMessage::user(task_text(task, template)?),
        ];

        // Every turn in order: feedback given after step n follows step n.
        let tools = protocol == Protocol::Tools;
        let mut turns = Vec::with_capacity(task.steps.len() + task.feedback.len());
        let mut feedback = task.feedback.iter().peekable();
        for (seen, step) in task.steps.iter().enumerate() {
            let seen = u32::try_from(seen).unwrap_or(u32::MAX);
            while let Some(f) = feedback.next_if(|f| f.after_step <= seen) {
                turns.push(feedback_turn(f));
            }
            turns.push(step_turn(step, config.output_budget, tools));
        }
        turns.extend(feedback.map(feedback_turn));

        // Newest first while within both caps; the latest turn always goes.
        let mut kept = 0usize;
        let mut steps = 0usize;
        let mut tokens = 0usize;
        for turn in turns.iter().rev() {
            let next_steps = steps + usize::from(turn.is_step);
            let next_tokens = tokens + turn.tokens();
            if kept > 0
                && (next_steps > config.history_steps || next_tokens > config.history_tokens)
            {
                break;
            }
            kept += 1;
            steps = next_steps;
            tokens = next_tokens;
        }
        let skip = turns.len() - kept;
        if skip > 0 {
            messages.push(ChatMessage::user(format!(
                "({skip} earlier turn(s) omitted; the latest {kept} follow.)"
            )));
        }
        for turn in turns.into_iter().skip(skip) {
            messages.extend(turn.messages);
        }
        Ok(messages)
    }
}

fn feedback_turn(f: &crate::feedback::Feedback) -> Turn {
    let answer = if f.answer.trim().is_empty() {
        "(no answer)".to_string()
    } else {
        f.answer.clone()
    };
    Turn::text(answer, f.message.clone(), false)
}
