//! Reading a model's answer: a command to run next, or "the task is done".
//!
//! The Worker asks for JSON in the shape of [`AnswerFormat`] (`{"analysis": "...", "next":
//! {"command": "..."}}` or `{"analysis": "...", "next": {"finish": "..."}}`; the older `{"reason":
//! "...", "command": "..."}` / `"done": true` shape is read too), but small local models answer
//! in many shapes. [`parse_answer`] tries, in
//! order:
//!
//! 1. JSON — the whole answer, a fenced ```` ```json ```` block, or the first `{…}` object in
//!    prose; malformed JSON still yields its `"command"` string when that can be read;
//! 2. `REASON:` / `COMMAND:` lines (also `**COMMAND:**`, and `COMMAND: DONE` or a `DONE:` line);
//! 3. the first fenced block that runs: shell (```` ```bash ````, ```` ```sh ````, or an
//!    unlabelled one, with `$ ` prompts removed) or Python (```` ```python ````, or an
//!    unlabelled one that reads as Python), run with `python3`; a block of nothing but
//!    comments is no command. The prose before it is the reason.
//!
//! An answer with none of these is a [`ProposalError`]: an empty answer is
//! [`ProposalError::Empty`], anything else (a refusal, a question, prose) is
//! [`ProposalError::NoCommand`] carrying the raw text. It never yields an empty command.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ProposalError;

/// The answer shape the default system prompt asks for, as a type: its JSON schema is what a
/// Worker with structured output sends.
///
/// `{"analysis": "…", "next": {"command": "<command>"}}` or
/// `{"analysis": "…", "next": {"finish": "<summary>"}}`. The model writes its analysis first
/// (the properties sort that way, so a schema-constrained model reasons before it commits), and
/// "run this" and "finished" are exclusive shapes: a finished answer has no command to drop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerFormat {
    /// What the last output shows and why the next action is right (short: at most 200
    /// characters in the schema, so a constrained model cannot ramble past its token limit).
    #[schemars(length(max = 200))]
    pub analysis: String,
    /// The next action.
    pub next: NextAction,
}

/// The action of an [`AnswerFormat`] answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum NextAction {
    /// The one shell command to run next, e.g. `ls -la` (a command, not prose).
    #[serde(rename = "command")]
    Run(#[schemars(length(max = 400))] String),
    /// The task is finished; a summary of what was achieved.
    Finish(#[schemars(length(max = 300))] String),
}

/// What the model answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedAnswer {
    /// Run `command` next.
    Command {
        /// Why (may be empty when the model gave no reason).
        reason: String,
        /// The shell command, trimmed, never empty.
        command: String,
    },
    /// The model says the task is done.
    Done {
        /// Its summary (may be empty).
        summary: String,
    },
}

const SHELL_LANGS: [&str; 7] = ["", "sh", "bash", "shell", "zsh", "console", "shell-session"];

/// Parses a model's answer; see the module docs for the accepted shapes.
pub fn parse_answer(raw: &str) -> Result<ParsedAnswer, ProposalError> {
    let text = strip_think(raw);
    let text = text.trim();
    if text.is_empty() {
        return Err(ProposalError::Empty);
    }
    if let Some(answer) = from_json(text) {
        return answer.ok_or_else(|| no_command(raw));
    }
    if let Some(answer) = from_lines(text) {
        return Ok(answer);
    }
    if let Some(answer) = from_fence(text) {
        return Ok(answer);
    }
    Err(no_command(raw))
}

fn no_command(raw: &str) -> ProposalError {
    let excerpt: String = raw.trim().chars().take(200).collect();
    ProposalError::NoCommand {
        excerpt,
        raw: raw.to_string(),
    }
}

/// Removes `<think>…</think>` blocks that reasoning models put before their answer.
pub(crate) fn strip_think(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(start) = rest.find("<think>") {
        out.push_str(&rest[..start]);
        match rest[start..].find("</think>") {
            Some(end) => rest = &rest[start + end + "</think>".len()..],
            None => return out, // an unterminated thought has no answer after it
        }
    }
    out.push_str(rest);
    out
}

/// A fenced block: its language tag and body.
struct Fence<'a> {
    lang: &'a str,
    body: &'a str,
    start: usize,
}

fn fences(text: &str) -> Vec<Fence<'_>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(open) = text[pos..].find("```") {
        let open = pos + open;
        let after = &text[open + 3..];
        let line_end = after.find('\n').unwrap_or(after.len());
        let lang = after[..line_end].trim();
        let body_start = (line_end + 1).min(after.len());
        let Some(close) = after[body_start..].find("```") else {
            break;
        };
        out.push(Fence {
            lang,
            body: &after[body_start..body_start + close],
            start: open,
        });
        pos = open + 3 + body_start + close + 3;
    }
    out
}

/// `Some(Some(answer))`: JSON with a command or done; `Some(None)`: JSON that clearly is the
/// answer but has no command (e.g. a refusal in JSON); `None`: no JSON found.
fn from_json(text: &str) -> Option<Option<ParsedAnswer>> {
    let mut candidates: Vec<&str> = Vec::new();
    if text.starts_with('{') {
        candidates.push(text);
    }
    for fence in fences(text) {
        let body = fence.body.trim();
        if fence.lang.eq_ignore_ascii_case("json") || body.starts_with('{') {
            candidates.push(body);
        }
    }
    if let Some(obj) = first_object(text) {
        candidates.push(obj);
    }
    for candidate in &candidates {
        if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(candidate) {
            let get_str = |k: &str| map.get(k).and_then(Value::as_str).map(str::trim);
            let reason = get_str("analysis")
                .or_else(|| get_str("reason"))
                .or_else(|| get_str("explanation"))
                .or_else(|| get_str("summary"))
                .unwrap_or_default()
                .to_string();
            if let Some(Value::Object(next)) = map.get("next") {
                let next_str = |k: &str| next.get(k).and_then(Value::as_str).map(str::trim);
                if let Some(summary) = next_str("finish") {
                    let summary = if summary.is_empty() {
                        reason
                    } else {
                        summary.to_string()
                    };
                    return Some(Some(ParsedAnswer::Done { summary }));
                }
                let command = next_str("command")
                    .or_else(|| next_str("run"))
                    .map(clean_command)
                    .unwrap_or_default();
                return Some(if command.is_empty() {
                    None
                } else {
                    Some(ParsedAnswer::Command { reason, command })
                });
            }
            let done = match map.get("done") {
                Some(Value::Bool(b)) => *b,
                Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
                _ => false,
            };
            let command = get_str("command")
                .or_else(|| get_str("cmd"))
                .map(clean_command);
            if matches!(map.get("done"), Some(Value::Bool(true))) {
                return Some(Some(ParsedAnswer::Done { summary: reason }));
            }
            return Some(match command {
                Some(command) if !command.is_empty() && !is_done_word(&command) => {
                    Some(ParsedAnswer::Command { reason, command })
                }
                Some(command) if is_done_word(&command) => {
                    Some(ParsedAnswer::Done { summary: reason })
                }
                _ if done => Some(ParsedAnswer::Done { summary: reason }),
                _ => None,
            });
        }
    }
    // Malformed JSON (cut off, a trailing comma): a readable "finished" wins over a command,
    // as it does in well-formed JSON; else a readable command string is used.
    for candidate in candidates.iter().copied().chain(std::iter::once(text)) {
        let reason = || {
            json_string_field(candidate, "analysis")
                .or_else(|| json_string_field(candidate, "reason"))
                .unwrap_or_default()
        };
        if let Some(summary) = json_string_field(candidate, "finish") {
            let summary = if summary.trim().is_empty() {
                reason()
            } else {
                summary
            };
            return Some(Some(ParsedAnswer::Done { summary }));
        }
        if says_done_true(candidate) {
            return Some(Some(ParsedAnswer::Done { summary: reason() }));
        }
        if let Some(command) =
            json_string_field(candidate, "run").or_else(|| json_string_field(candidate, "command"))
        {
            let command = clean_command(&command);
            if !command.is_empty() {
                let reason = reason();
                return Some(Some(ParsedAnswer::Command { reason, command }));
            }
        }
        if let Some(command) = json_string_field(candidate, "command") {
            let command = clean_command(&command);
            if !command.is_empty() {
                let reason = json_string_field(candidate, "reason").unwrap_or_default();
                return Some(Some(ParsedAnswer::Command { reason, command }));
            }
        }
    }
    None
}

/// Whether broken JSON holds `"done": true`.
fn says_done_true(text: &str) -> bool {
    let Some(at) = text.find("\"done\"") else {
        return false;
    };
    text[at + 6..]
        .trim_start()
        .strip_prefix(':')
        .is_some_and(|rest| rest.trim_start().starts_with("true"))
}

/// The first balanced `{…}` in `text` (string-aware), if any.
pub(crate) fn first_object(text: &str) -> Option<&str> {
    let start = text.find('{')?;
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in text[start..].char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' => depth += 1,
            '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(&text[start..start + i + 1]);
                }
            }
            _ => {}
        }
    }
    None
}

/// Reads `"field": "<json string>"` from possibly broken JSON.
fn json_string_field(text: &str, field: &str) -> Option<String> {
    let key = format!("\"{field}\"");
    let at = text.find(&key)?;
    let rest = text[at + key.len()..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let rest = rest.strip_prefix('"')?;
    let mut end = None;
    let mut escaped = false;
    for (i, c) in rest.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => {
                end = Some(i);
                break;
            }
            _ => {}
        }
    }
    let literal = format!("\"{}\"", &rest[..end?]);
    serde_json::from_str::<String>(&literal).ok()
}

fn is_done_word(s: &str) -> bool {
    let s = s
        .trim()
        .trim_matches(|c: char| c == '`' || c == '.' || c == '"')
        .to_ascii_lowercase();
    matches!(
        s.as_str(),
        "done" | "none" | "task complete" | "task_complete" | "finished" | "n/a"
    )
}

/// Trims a command and removes wrapping backticks and a leading `$ ` prompt.
fn clean_command(command: &str) -> String {
    let mut c = command.trim();
    if c.starts_with("```") {
        c = c.trim_start_matches('`');
        // drop a language tag line
        if let Some(nl) = c.find('\n')
            && SHELL_LANGS.contains(&c[..nl].trim())
        {
            c = &c[nl + 1..];
        }
        c = c.trim_end_matches('`');
    } else if c.len() >= 2 && c.starts_with('`') && c.ends_with('`') {
        c = &c[1..c.len() - 1];
    }
    let c = c.trim();
    c.strip_prefix("$ ").unwrap_or(c).trim().to_string()
}

/// A `LABEL:` line: returns the value after the label when `line` starts with it (ignoring
/// case, markdown bold and list markers).
fn label_value<'a>(line: &'a str, label: &str) -> Option<&'a str> {
    let l = line.trim_start().trim_start_matches(['-', '*', '#', ' ']);
    let head = l.get(..label.len())?;
    if !head.eq_ignore_ascii_case(label) {
        return None;
    }
    let rest = l[label.len()..].trim_start_matches('*').trim_start();
    let rest = rest.strip_prefix(':')?;
    Some(rest.trim_start_matches('*').trim())
}

fn from_lines(text: &str) -> Option<ParsedAnswer> {
    let lines: Vec<&str> = text.lines().collect();
    let mut reason = String::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(r) = label_value(line, "reason") {
            reason = r.to_string();
            continue;
        }
        if let Some(summary) = label_value(line, "done") {
            return Some(ParsedAnswer::Done {
                summary: if summary.is_empty() {
                    reason
                } else {
                    summary.to_string()
                },
            });
        }
        if let Some(value) = label_value(line, "command") {
            if is_done_word(value) {
                return Some(ParsedAnswer::Done { summary: reason });
            }
            let command = clean_command(value);
            if !command.is_empty() && !command.starts_with("```") {
                return Some(ParsedAnswer::Command { reason, command });
            }
            // `COMMAND:` followed by a fenced block on the next lines
            let rest = lines[i + 1..].join("\n");
            if let Some(fence) = fences(&rest).into_iter().find(|f| is_shell_fence(f)) {
                let command = fence_to_command(&fence);
                if !command.is_empty() {
                    return Some(ParsedAnswer::Command { reason, command });
                }
            }
        }
    }
    if lines.iter().any(|l| l.trim().eq_ignore_ascii_case("done")) {
        return Some(ParsedAnswer::Done { summary: reason });
    }
    None
}

const PYTHON_LANGS: [&str; 3] = ["python", "python3", "py"];

fn is_shell_fence(fence: &Fence<'_>) -> bool {
    let lang = fence.lang.to_ascii_lowercase();
    (SHELL_LANGS.contains(&lang.as_str()) || PYTHON_LANGS.contains(&lang.as_str()))
        && !fence.body.trim().starts_with('{')
}

/// Whether an untagged block reads as Python rather than shell.
fn looks_like_python(body: &str) -> bool {
    let code: Vec<&str> = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let pythonic = |l: &&str| {
        l.starts_with("import ")
            || (l.starts_with("from ") && l.contains(" import "))
            || l.starts_with("def ")
            || l.starts_with("class ")
            || l.starts_with("print(")
            || l.starts_with("with open(")
            || l.starts_with("if __name__")
            || (l.starts_with("for ") && l.contains(" in ") && l.ends_with(':'))
    };
    !code.is_empty() && code.iter().any(pythonic)
}

/// The command that runs a fence: shell as it is, Python through `python3` with the script
/// on stdin (a heredoc whose end marker the script cannot contain).
fn fence_to_command(fence: &Fence<'_>) -> String {
    let lang = fence.lang.to_ascii_lowercase();
    let python =
        PYTHON_LANGS.contains(&lang.as_str()) || (lang.is_empty() && looks_like_python(fence.body));
    if !python {
        return fence_command(fence.body);
    }
    let script = fence.body.trim_matches('\n').trim_end();
    if script.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#')
    }) {
        return String::new();
    }
    let mut marker = String::from("ANANTA_PY");
    while script.lines().any(|l| l.trim() == marker) {
        marker.push('_');
    }
    format!("python3 - <<'{marker}'\n{script}\n{marker}")
}

/// The command of a shell fence: lines without `$ ` prompts, comments and blank lines kept as
/// a script; output lines of a `console` transcript (not starting with `$`) dropped.
fn fence_command(body: &str) -> String {
    let has_prompts = body.lines().any(|l| l.trim_start().starts_with("$ "));
    let lines: Vec<&str> = body
        .lines()
        .filter_map(|l| {
            let t = l.trim_end();
            if has_prompts {
                t.trim_start().strip_prefix("$ ")
            } else {
                Some(t)
            }
        })
        .filter(|l| !l.trim().is_empty())
        .collect();
    // A block of nothing but comments would run as a do-nothing command.
    if lines.iter().all(|l| l.trim_start().starts_with('#')) {
        return String::new();
    }
    lines.join("\n").trim().to_string()
}

fn from_fence(text: &str) -> Option<ParsedAnswer> {
    let (fence, command) = fences(text)
        .into_iter()
        .filter(is_shell_fence)
        .map(|f| {
            let command = fence_to_command(&f);
            (f, command)
        })
        .find(|(_, command)| !command.is_empty())?;
    let prose = text[..fence.start].trim();
    let reason: String = prose
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string();
    Some(ParsedAnswer::Command { reason, command })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(raw: &str) -> (String, String) {
        match parse_answer(raw) {
            Ok(ParsedAnswer::Command { reason, command }) => (reason, command),
            other => panic!("expected a command from {raw:?}, got {other:?}"),
        }
    }

    fn done(raw: &str) -> String {
        match parse_answer(raw) {
            Ok(ParsedAnswer::Done { summary }) => summary,
            other => panic!("expected done from {raw:?}, got {other:?}"),
        }
    }

    fn no_command(raw: &str) {
        assert!(
            matches!(parse_answer(raw), Err(ProposalError::NoCommand { raw: ref r, .. }) if r == raw),
            "expected NoCommand for {raw:?}, got {:?}",
            parse_answer(raw)
        );
    }

    #[test]
    fn plain_json() {
        let (r, c) = cmd(r#"{"reason": "See what is in the repo", "command": "ls -la"}"#);
        assert_eq!(
            (r.as_str(), c.as_str()),
            ("See what is in the repo", "ls -la")
        );
    }

    #[test]
    fn json_in_json_fence_with_prose() {
        let raw = "Sure! Here is the next step:\n```json\n{\n  \"reason\": \"run the tests\",\n  \"command\": \"cargo test --workspace\"\n}\n```\nLet me know.";
        assert_eq!(cmd(raw).1, "cargo test --workspace");
    }

    #[test]
    fn json_object_inside_prose() {
        let raw = "I will check the git state. {\"reason\": \"check state\", \"command\": \"git status --short\"} That's it.";
        assert_eq!(
            cmd(raw),
            ("check state".into(), "git status --short".into())
        );
    }

    #[test]
    fn json_with_braces_and_escapes_in_command() {
        let raw = r#"{"reason": "count lines", "command": "find . -name '*.rs' | xargs wc -l | awk '{s+=$1} END {print s}'"}"#;
        assert_eq!(
            cmd(raw).1,
            "find . -name '*.rs' | xargs wc -l | awk '{s+=$1} END {print s}'"
        );
        let raw = r#"{"reason":"quote","command":"echo \"hi there\"\necho two"}"#;
        assert_eq!(cmd(raw).1, "echo \"hi there\"\necho two");
    }

    #[test]
    fn malformed_json_missing_brace_is_salvaged() {
        let raw = r#"{"reason": "list files", "command": "ls -la src""#;
        assert_eq!(cmd(raw), ("list files".into(), "ls -la src".into()));
    }

    #[test]
    fn malformed_json_trailing_comma_is_salvaged() {
        let raw = "```json\n{\"reason\": \"build\", \"command\": \"cargo build\",}\n```";
        assert_eq!(cmd(raw).1, "cargo build");
    }

    #[test]
    fn json_done() {
        assert_eq!(
            done(r#"{"reason": "All tests pass now.", "done": true}"#),
            "All tests pass now."
        );
        assert_eq!(
            done(r#"{"reason": "finished", "command": "DONE"}"#),
            "finished"
        );
        assert_eq!(
            done(r#"{"summary": "ok", "done": "true", "command": null}"#),
            "ok"
        );
        // The structured-output shape always carries a command; `done: true` wins over it.
        assert_eq!(
            done(r#"{"reason": "all green", "command": "ls", "done": true}"#),
            "all green"
        );
        assert_eq!(
            parse_answer(r#"{"reason": "look", "command": "ls", "done": false}"#).unwrap(),
            ParsedAnswer::Command {
                reason: "look".into(),
                command: "ls".into()
            }
        );
    }

    #[test]
    fn json_without_command_is_no_command() {
        no_command(r#"{"reason": "I cannot do that because it would delete data"}"#);
        no_command(r#"{"reason": "nothing", "command": "   "}"#);
    }

    #[test]
    fn reason_command_lines() {
        let raw = "REASON: Need to see the Cargo manifest\nCOMMAND: cat Cargo.toml";
        assert_eq!(
            cmd(raw),
            (
                "Need to see the Cargo manifest".into(),
                "cat Cargo.toml".into()
            )
        );
    }

    #[test]
    fn markdown_bold_labels_and_backticks() {
        let raw = "**Reason:** check disk usage\n**Command:** `du -sh .`";
        assert_eq!(cmd(raw), ("check disk usage".into(), "du -sh .".into()));
    }

    #[test]
    fn command_label_followed_by_fence() {
        let raw = "REASON: create the directory and file\nCOMMAND:\n```bash\nmkdir -p out\necho hi > out/a.txt\n```";
        assert_eq!(cmd(raw).1, "mkdir -p out\necho hi > out/a.txt");
    }

    #[test]
    fn lines_done() {
        assert_eq!(
            done("REASON: everything is in place\nCOMMAND: DONE"),
            "everything is in place"
        );
        assert_eq!(
            done("DONE: the report was written to out.md"),
            "the report was written to out.md"
        );
        assert_eq!(
            done("The file exists and has the right content.\n\nDONE"),
            ""
        );
    }

    #[test]
    fn command_inside_prose_fence() {
        let raw = "Let's look at the failing test first.\n\n```bash\ncargo test -p ananta-core 2>&1 | tail -n 20\n```\n\nThis shows the end of the output.";
        assert_eq!(
            cmd(raw),
            (
                "Let's look at the failing test first.".into(),
                "cargo test -p ananta-core 2>&1 | tail -n 20".into()
            )
        );
    }

    #[test]
    fn console_transcript_prompts_are_stripped() {
        let raw = "Run this:\n```console\n$ ls -1\nfile_a\nfile_b\n```";
        assert_eq!(cmd(raw).1, "ls -1");
        let raw = "```\n$ pwd\n```";
        assert_eq!(cmd(raw).1, "pwd");
    }

    #[test]
    fn non_shell_fence_is_not_a_command() {
        no_command("Here is the code:\n```rust\nfn main() {}\n```");
        no_command("Config:\n```yaml\nkey: value\n```");
    }

    #[test]
    fn refusal_is_no_command() {
        no_command("I'm sorry, but I can't help with deleting system files.");
        no_command("As an AI language model, I cannot execute commands on your machine.");
    }

    #[test]
    fn question_is_no_command() {
        no_command("Which directory should I look in? Please tell me more about the project.");
    }

    #[test]
    fn empty_answers() {
        assert_eq!(parse_answer(""), Err(ProposalError::Empty));
        assert_eq!(parse_answer("  \n\t "), Err(ProposalError::Empty));
        assert_eq!(
            parse_answer("<think>hmm, let me think</think>\n"),
            Err(ProposalError::Empty)
        );
    }

    #[test]
    fn think_block_is_skipped() {
        let raw = "<think>The user wants files listed. {\"command\": \"rm -rf /\"} no!</think>\n{\"reason\": \"list\", \"command\": \"ls\"}";
        assert_eq!(cmd(raw).1, "ls");
        // an unterminated think block has no answer
        assert_eq!(
            parse_answer("<think>still thinking {\"command\": \"ls\"}"),
            Err(ProposalError::Empty)
        );
    }

    #[test]
    fn cmd_alias_and_dollar_prompt() {
        assert_eq!(
            cmd(r#"{"explanation": "x", "cmd": "$ uname -a"}"#),
            ("x".into(), "uname -a".into())
        );
    }

    #[test]
    fn unicode_and_long_answers_do_not_panic() {
        let raw = format!("{}```sh\necho ünïcødé ✓\n```", "é".repeat(10_000));
        assert_eq!(cmd(&raw).1, "echo ünïcødé ✓");
        let _ = parse_answer("{{{{{{\"command\"");
        let _ = parse_answer("```");
        let _ = parse_answer("COMMAND:");
        let _ = parse_answer("\"command\": \"unterminated");
        no_command("COMMAND:");
    }

    #[test]
    fn random_answers_never_panic_or_yield_empty_commands() {
        // Deterministic xorshift over an alphabet of the characters the parsers care about.
        const PIECES: [&str; 24] = [
            "{",
            "}",
            "\"",
            "\\",
            ":",
            ",",
            "`",
            "```",
            "```bash\n",
            "```json\n",
            "\n",
            " ",
            "command",
            "reason",
            "done",
            "true",
            "REASON:",
            "COMMAND:",
            "DONE",
            "$ ",
            "é",
            "✓",
            "<think>",
            "</think>",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut commands = 0;
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let answer: String = (0..len).map(|_| PIECES[(next() % 24) as usize]).collect();
            if let Ok(ParsedAnswer::Command { command, .. }) = parse_answer(&answer) {
                assert!(!command.trim().is_empty(), "empty command from {answer:?}");
                commands += 1;
            }
        }
        assert!(
            commands > 100,
            "the generator must reach the command paths ({commands})"
        );
    }
}

#[cfg(test)]
mod loop_hygiene_tests {
    use super::*;

    fn command(raw: &str) -> String {
        match parse_answer(raw) {
            Ok(ParsedAnswer::Command { command, .. }) => command,
            other => panic!("expected a command from {raw:?}, got {other:?}"),
        }
    }

    #[test]
    fn answer_format_reads_run_and_finish() {
        let raw = r#"{"analysis": "the folder is missing", "next": {"run": "mkdir -p notes"}}"#;
        assert_eq!(
            parse_answer(raw).ok(),
            Some(ParsedAnswer::Command {
                reason: "the folder is missing".into(),
                command: "mkdir -p notes".into()
            })
        );
        let raw = r#"{"analysis": "checked", "next": {"finish": "notes written"}}"#;
        assert_eq!(
            parse_answer(raw).ok(),
            Some(ParsedAnswer::Done {
                summary: "notes written".into()
            })
        );
        assert!(parse_answer(r#"{"analysis": "hm", "next": {"run": "  "}}"#).is_err());
    }

    #[test]
    fn the_schema_puts_analysis_first_and_makes_run_and_finish_exclusive() {
        let schema = serde_json::to_value(schemars::schema_for!(AnswerFormat)).unwrap_or_default();
        let props: Vec<&String> = schema["properties"]
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        assert_eq!(props, ["analysis", "next"], "{schema}");
        let text = schema.to_string();
        assert!(text.contains("\"oneOf\""), "{text}");
        let run: AnswerFormat =
            serde_json::from_str(r#"{"analysis": "a", "next": {"command": "ls"}}"#)
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(run.next, NextAction::Run("ls".into()));
        assert!(
            serde_json::from_str::<AnswerFormat>(
                r#"{"analysis": "a", "next": {"command": "ls", "finish": "x"}}"#
            )
            .is_err(),
            "both at once is no answer"
        );
    }

    #[test]
    fn cut_off_json_that_says_done_is_done_not_its_command() {
        let raw = r#"{"reason": "all good", "command": "rm -rf build", "done": true"#;
        assert!(matches!(parse_answer(raw), Ok(ParsedAnswer::Done { .. })));
        let raw = r#"{"analysis": "ok", "next": {"finish": "wrote the file"#;
        assert!(
            matches!(parse_answer(raw), Err(ProposalError::NoCommand { .. })),
            "an unterminated summary is unreadable"
        );
        let raw = r#"{"analysis": "ok", "next": {"finish": "wrote it"}"#;
        assert_eq!(
            parse_answer(raw).ok(),
            Some(ParsedAnswer::Done {
                summary: "wrote it".into()
            })
        );
        let raw = r#"{"analysis": "make it", "next": {"run": "touch a.txt"}"#;
        assert_eq!(command(raw), "touch a.txt");
    }

    #[test]
    fn untagged_python_runs_with_python() {
        let raw = "Here is a script:\n```\nimport os\nprint(os.getcwd())\n```";
        let c = command(raw);
        assert!(c.starts_with("python3 - <<'ANANTA_PY'\nimport os\n"), "{c}");
        assert!(c.ends_with("\nANANTA_PY"), "{c}");
        let tagged = command("```python\nprint('hi')\n```");
        assert!(tagged.starts_with("python3 - <<'ANANTA_PY'"), "{tagged}");
        // A script holding the marker line gets another marker.
        let tricky = command("```python\nx = '''\nANANTA_PY\n'''\nprint(x)\n```");
        assert!(tricky.starts_with("python3 - <<'ANANTA_PY_'"), "{tricky}");
        // Shell stays shell.
        assert_eq!(command("```\nls -la\n```"), "ls -la");
        assert_eq!(
            command("```\nfor f in *; do echo $f; done\n```"),
            "for f in *; do echo $f; done"
        );
    }

    #[test]
    fn a_fence_of_only_comments_is_no_command() {
        assert!(parse_answer("I would run:\n```bash\n# nothing to do yet\n```").is_err());
        assert!(parse_answer("```python\n# TODO\n```").is_err());
        // A comment beside a command keeps the command.
        assert_eq!(
            command("```bash\n# make it\nmkdir x\n```"),
            "# make it\nmkdir x"
        );
    }
}
