//! A command policy that parses the whole script with a real shell grammar (`brush-parser`)
//! and decides, per script, whether it may run: [`Decision::Allow`],
//! [`Decision::NeedsApproval`] or [`Decision::Deny`].
//!
//! Every simple command is judged: those in pipelines, `;`/`&&`/`||` lists, subshells, groups,
//! `if`/`for`/`while`/`case` bodies, function bodies, `$(…)`, backticks, `<(…)`, here-documents,
//! `bash -c` / `sh -c` / `eval` strings (parsed in turn), and the commands behind wrappers
//! (`env`, `timeout`, `nohup`, `command`, `busybox`, `nice`, `stdbuf`, `setsid`, `exec`,
//! `xargs`, `find -exec`). Quotes and escapes in words are resolved (`'r''m'` and `\rm` are
//! `rm`); a command name that is not literal (`$x`, `/???/r?`, `{rm,-rf}`) cannot be judged.
//! Unparseable scripts are denied (rule `unparseable`), and so are absurdly deep or long ones,
//! without recursing into them.
//!
//! The rules are data ([`PolicyRules`], TOML; the built-in set is `default.toml` beside this
//! file, also available as [`DEFAULT_RULES_TOML`]).

mod gate;
mod paths;
mod rules;
mod walk;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use gate::{Containment, PolicyGate};
use paths::{
    CHDIR, Dir, attached_value, cd_target, is_harmless_device, outside_workspace, path_candidates,
};
pub use rules::{
    CommandClass, DEFAULT_RULES_TOML, Escape, PathAccess, PathRule, PipelineRule, PolicyRules,
    PrefixRule, RuleAction, SafeSpec,
};
use rules::{arg_matches, glob_match};
use walk::{Finding, RedirKind, SimpleCmd, WordInfo};

/// The rule name of a denial because the script could not be parsed.
pub const RULE_UNPARSEABLE: &str = "unparseable";
/// The rule name of a denial in [`PolicyMode::ReadOnly`] of anything that is not read-only.
pub const RULE_READ_ONLY: &str = "read-only";

/// What the policy says about one script: ananta-core's [`Decision`], so that a
/// [`CommandPolicy`] is a [`CommandGate`](ananta_core::exec::CommandGate) (see [`CommandPolicy::gate`]).
pub use ananta_core::exec::Decision;

/// How strict the policy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PolicyMode {
    /// Only read-only commands run; writes and unknown commands are denied.
    ReadOnly,
    /// Safe commands (read-only, workspace-local writes, builds and tests) run; denied ones are
    /// denied; the rest wait for a human.
    #[default]
    Approve,
    /// Everything not denied by a deny rule runs (inside the sandbox).
    Auto,
    /// No policy: everything runs (the sandbox alone contains it).
    Off,
}

impl PolicyMode {
    /// The snake_case name (`read_only`, `approve`, `auto`, `off`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadOnly => "read_only",
            Self::Approve => "approve",
            Self::Auto => "auto",
            Self::Off => "off",
        }
    }
}

impl fmt::Display for PolicyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PolicyMode {
    type Err = PolicyError;

    /// Accepts `read_only` (also `read-only`, `readonly`), `approve`, `auto`, `off`, in any
    /// case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "read_only" | "readonly" => Ok(Self::ReadOnly),
            "approve" => Ok(Self::Approve),
            "auto" => Ok(Self::Auto),
            "off" => Ok(Self::Off),
            _ => Err(PolicyError::UnknownMode(s.to_owned())),
        }
    }
}

/// Errors from loading a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The policy file is not valid TOML or does not fit the schema (unknown action, unknown
    /// field, wrong type…).
    #[error("invalid policy file: {0}")]
    Toml(String),
    /// The file parsed but a rule is unusable (empty prefix, bad regular expression…).
    #[error("invalid policy rule: {0}")]
    Invalid(String),
    /// A mode name that is not one of `read_only`, `approve`, `auto`, `off`.
    #[error("unknown policy mode `{0}` (expected read_only, approve, auto or off)")]
    UnknownMode(String),
}

/// A compiled command policy.
#[derive(Debug, Clone)]
pub struct CommandPolicy {
    rules: PolicyRules,
    /// Compiled `first_operand_regex` of each safe spec, in order.
    operand_regexes: Vec<Vec<regex::Regex>>,
    /// Compiled `forbid_regex` of each safe spec, in order.
    forbid_regexes: Vec<Vec<regex::Regex>>,
}

/// The verdict on one simple command or finding.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Allow { class: CommandClass },
    Ask(String, Escape),
    Deny { rule: String, reason: String },
}

impl CommandPolicy {
    /// The built-in policy (see [`DEFAULT_RULES_TOML`]).
    pub fn builtin() -> Self {
        Self::new(PolicyRules::builtin()).unwrap_or_else(|_| Self {
            rules: PolicyRules::empty(),
            operand_regexes: Vec::new(),
            forbid_regexes: Vec::new(),
        })
    }

    /// A policy from rules, checking them first.
    pub fn new(rules: PolicyRules) -> Result<Self, PolicyError> {
        rules.validate()?;
        let compile = |list: &[String]| -> Result<Vec<regex::Regex>, PolicyError> {
            list.iter()
                .map(|re| regex::Regex::new(re).map_err(|e| PolicyError::Invalid(e.to_string())))
                .collect()
        };
        let mut operand_regexes = Vec::with_capacity(rules.safe.len());
        let mut forbid_regexes = Vec::with_capacity(rules.safe.len());
        for spec in &rules.safe {
            operand_regexes.push(compile(&spec.first_operand_regex)?);
            forbid_regexes.push(compile(&spec.forbid_regex)?);
        }
        Ok(Self {
            rules,
            operand_regexes,
            forbid_regexes,
        })
    }

    /// A policy from a TOML policy file.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        Self::new(PolicyRules::from_toml(text)?)
    }

    /// The rules in force.
    pub fn rules(&self) -> &PolicyRules {
        &self.rules
    }

    /// This policy in `mode` as a [`CommandGate`](ananta_core::exec::CommandGate), for `Worker::builder(..).gate(..)`:
    ///
    /// ```
    /// use ananta_core::exec::{CommandGate, Decision};
    /// use ananta_exec::{CommandPolicy, PolicyMode};
    ///
    /// let gate = CommandPolicy::builtin().gate(PolicyMode::Approve);
    /// assert_eq!(gate.decide("git status"), Decision::Allow);
    /// assert!(!gate.decide("rm -rf ~").is_allow());
    /// ```
    pub fn gate(self, mode: PolicyMode) -> PolicyGate {
        PolicyGate {
            policy: self,
            mode,
            containment: Containment::None,
        }
    }

    /// Decides whether `script` may run in `mode`, with nothing but the policy between it and
    /// the host ([`Containment::None`]). Never panics; unparseable input is denied with rule
    /// [`RULE_UNPARSEABLE`].
    pub fn decide(&self, script: &str, mode: PolicyMode) -> Decision {
        self.decide_contained(script, mode, Containment::None)
    }

    /// Decides whether `script` may run in `mode` when it runs with `containment`.
    ///
    /// In [`PolicyMode::Approve`] with [`Containment::Sandbox`], what the sandbox contains runs
    /// without asking — interpreters, compilers, unknown commands, deletions, paths the policy
    /// cannot follow — and only what it cannot undo or contain still waits for a human (see
    /// [`Escape`]): the network when the sandbox allows it, pushing and publishing, writes to
    /// git internals. Deny rules deny in every mode but `Off`.
    ///
    /// ```
    /// use ananta_exec::{CommandPolicy, Containment, Decision, PolicyMode};
    ///
    /// let policy = CommandPolicy::builtin();
    /// let sandbox = Containment::Sandbox { network: false };
    /// let script = "python3 -c 'print(1)' > out.txt";
    /// assert!(!policy.decide(script, PolicyMode::Approve).is_allow());
    /// assert_eq!(policy.decide_contained(script, PolicyMode::Approve, sandbox), Decision::Allow);
    /// assert!(!policy.decide_contained("git push", PolicyMode::Approve, sandbox).is_allow());
    /// assert!(policy.decide_contained("rm -rf ~", PolicyMode::Approve, sandbox).is_deny());
    /// ```
    pub fn decide_contained(
        &self,
        script: &str,
        mode: PolicyMode,
        containment: Containment,
    ) -> Decision {
        if mode == PolicyMode::Off {
            return Decision::Allow;
        }
        let analysis = match walk::analyze(script) {
            Ok(a) => a,
            Err(reason) => {
                return Decision::Deny {
                    rule: RULE_UNPARSEABLE.into(),
                    reason,
                };
            }
        };

        let mut verdicts: Vec<Verdict> = Vec::new();
        for finding in &analysis.findings {
            verdicts.push(match finding {
                Finding::Ask(r) => Verdict::Ask(r.clone(), Escape::Never),
                Finding::Deny { rule, reason } => Verdict::Deny {
                    rule: rule.clone(),
                    reason: reason.clone(),
                },
            });
        }
        for stages in &analysis.pipelines {
            if let Some(v) = self.pipeline_verdict(stages) {
                verdicts.push(v);
            }
        }
        let mut dir = Dir::default();
        for cmd in &analysis.commands {
            verdicts.push(self.judge(cmd, &dir));
            dir.follow(cmd);
        }

        if let Some(Verdict::Deny { rule, reason }) =
            verdicts.iter().find(|v| matches!(v, Verdict::Deny { .. }))
        {
            return Decision::Deny {
                rule: rule.clone(),
                reason: reason.clone(),
            };
        }
        let contained = |escape: Escape| match containment {
            Containment::None => false,
            Containment::Sandbox { network } => {
                escape == Escape::Never || (escape == Escape::WithNetwork && !network)
            }
        };
        let mut reasons: Vec<String> = Vec::new();
        for v in &verdicts {
            if let Verdict::Ask(r, escape) = v
                && !reasons.contains(r)
                && !(mode == PolicyMode::Approve && contained(*escape))
            {
                reasons.push(r.clone());
            }
        }
        match mode {
            PolicyMode::Off | PolicyMode::Auto => Decision::Allow,
            PolicyMode::Approve => {
                if reasons.is_empty() {
                    Decision::Allow
                } else {
                    Decision::NeedsApproval { reasons }
                }
            }
            PolicyMode::ReadOnly => {
                if let Some(r) = reasons.first() {
                    return Decision::Deny {
                        rule: RULE_READ_ONLY.into(),
                        reason: r.clone(),
                    };
                }
                let writes = analysis.commands.iter().zip(
                    verdicts
                        .iter()
                        .skip(verdicts.len() - analysis.commands.len()),
                );
                for (cmd, v) in writes {
                    if let Verdict::Allow { class } = v
                        && *class != CommandClass::Read
                    {
                        return Decision::Deny {
                            rule: RULE_READ_ONLY.into(),
                            reason: format!("`{}` is not read-only", cmd.display),
                        };
                    }
                }
                Decision::Allow
            }
        }
    }

    fn pipeline_verdict(&self, stages: &[Option<String>]) -> Option<Verdict> {
        let mut worst: Option<Verdict> = None;
        for rule in &self.rules.pipeline_rules {
            if rule.action == RuleAction::Allow {
                continue;
            }
            let matched = stages.iter().enumerate().any(|(i, from)| {
                from.as_deref()
                    .is_some_and(|f| rule.from.iter().any(|g| glob_match(g, f)))
                    && stages[i + 1..].iter().any(|to| {
                        to.as_deref()
                            .is_some_and(|t| rule.to.iter().any(|g| glob_match(g, t)))
                    })
            });
            if matched {
                let v = if rule.action == RuleAction::Deny {
                    Verdict::Deny {
                        rule: rule.name.clone(),
                        reason: rule.reason.clone(),
                    }
                } else {
                    Verdict::Ask(
                        format!("pipeline {}: {}", rule.name, rule.reason),
                        rule.escapes,
                    )
                };
                worst = Some(stricter(worst, v));
            }
        }
        worst
    }

    /// The verdict on one simple command: the strictest of its redirections, assignments,
    /// prefix rules, path rules and safe spec.
    fn judge(&self, cmd: &SimpleCmd, dir: &Dir) -> Verdict {
        let mut asks: Vec<(String, Escape)> = Vec::new();
        let mut class = CommandClass::Read;
        let display = &cmd.display;

        for name in &cmd.assignments {
            if self.rules.sensitive_env.iter().any(|g| glob_match(g, name)) {
                asks.push((
                    format!("sets {name}, which changes how commands run"),
                    Escape::Never,
                ));
            }
        }

        for redir in &cmd.redirects {
            let write = redir.kind == RedirKind::Write;
            if let Some(v) = self.path_rules(&redir.target, write, dir) {
                match v {
                    Verdict::Deny { .. } => return v,
                    Verdict::Ask(r, e) => asks.push((r, e)),
                    Verdict::Allow { .. } => {}
                }
            }
            let target = &redir.target;
            if !target.literal {
                asks.push((
                    format!(
                        "redirection to a path computed at run time: {}",
                        target.text
                    ),
                    Escape::Never,
                ));
                continue;
            }
            if is_harmless_device(&target.text) {
                continue;
            }
            if let Some(why) = outside_workspace(&target.text) {
                let verb = if write { "writes" } else { "reads" };
                asks.push((format!("{verb} {why}: {}", target.text), Escape::Never));
            } else if write && dir.unknown {
                asks.push((
                    format!(
                        "writes {} after a `cd` the policy cannot follow",
                        target.text
                    ),
                    Escape::Never,
                ));
            } else if write {
                class = CommandClass::Write;
            }
        }

        let Some(first) = cmd.words.first() else {
            return finish(display, asks, class);
        };
        if !first.literal || first.glob {
            asks.push((
                format!("command name computed at run time: {}", first.text),
                Escape::WithNetwork,
            ));
            return finish(display, asks, class);
        }
        if cmd.calls_function {
            return finish(display, asks, class);
        }
        let name = walk_basename(&first.text);
        let args = &cmd.words[1..];
        if CHDIR.contains(&name) && cd_target(name, args).is_none() {
            asks.push((
                "changes to a directory the policy cannot follow".into(),
                Escape::Never,
            ));
        }

        // Prefix rules: strictest wins.
        let mut allowed_by_rule: Option<CommandClass> = None;
        let mut deny: Option<Verdict> = None;
        for rule in &self.rules.rules {
            if !prefix_matches(&rule.prefix, name, args) {
                continue;
            }
            let rest = &args[rule.prefix.len().saturating_sub(1).min(args.len())..];
            if !rule.args_any.is_empty()
                && !rest.iter().any(|a| {
                    let lower;
                    let text = if rule.ignore_case {
                        lower = a.text.to_ascii_lowercase();
                        &lower
                    } else {
                        &a.text
                    };
                    rule.args_any.iter().any(|p| arg_matches(p, text))
                })
            {
                continue;
            }
            match rule.action {
                RuleAction::Deny => {
                    if deny.is_none() {
                        deny = Some(Verdict::Deny {
                            rule: rule.name.clone().unwrap_or_else(|| rule.prefix.join(" ")),
                            reason: format!("`{display}`: {}", rule.reason),
                        });
                    }
                }
                RuleAction::Ask => asks.push((rule.reason.clone(), rule.escapes)),
                RuleAction::Allow => {
                    allowed_by_rule = Some(match allowed_by_rule {
                        Some(c) => max_class(c, rule.class),
                        None => rule.class,
                    })
                }
            }
        }
        if let Some(d) = deny {
            return d;
        }

        // Path rules on arguments.
        // A read-only command with a flag its spec forbids (`sed -i`) may write.
        let spec = self.safe_spec(cmd);
        let cmd_writes = match spec {
            Some((_, spec)) => {
                spec.class != CommandClass::Read
                    || args
                        .iter()
                        .any(|a| spec.forbid.iter().any(|f| arg_matches(f, &a.text)))
            }
            None => true,
        };
        for arg in args {
            if cmd_writes
                && dir.unknown
                && arg.literal
                && outside_workspace(&arg.text).is_none()
                && !arg.text.starts_with('-')
            {
                asks.push((
                    format!("names {} after a `cd` the policy cannot follow", arg.text),
                    Escape::Never,
                ));
            }
            if let Some(v) = self.path_rules(arg, cmd_writes, dir) {
                match v {
                    Verdict::Deny { .. } => return v,
                    Verdict::Ask(r, e) => asks.push((r, e)),
                    Verdict::Allow { .. } => {}
                }
            }
        }

        if let Some(c) = allowed_by_rule {
            return finish(display, asks, max_class(class, c));
        }
        if !asks.is_empty() {
            // Already held by a rule; the safe-spec checks would only add noise.
            return finish(display, asks, class);
        }
        match spec {
            Some((i, spec)) => {
                let problems = self.check_spec(i, spec, cmd);
                // A known command with unusual arguments: contained, unless the network is
                // open (an awk `system()`, a sed `e` command can run anything).
                asks.extend(problems.into_iter().map(|p| (p, Escape::WithNetwork)));
                finish(display, asks, max_class(class, spec.class))
            }
            None => {
                // Unknown code is contained, but with the network open it could use it.
                asks.push(("not known to be safe".into(), Escape::WithNetwork));
                finish(display, asks, class)
            }
        }
    }

    /// The safe spec with the longest matching prefix.
    fn safe_spec(&self, cmd: &SimpleCmd) -> Option<(usize, &SafeSpec)> {
        let first = cmd.words.first()?;
        if !first.literal || first.glob {
            return None;
        }
        let name = walk_basename(&first.text);
        let args = &cmd.words[1..];
        self.rules
            .safe
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.prefix.first().is_some_and(|p| p == name)
                    && s.prefix.len() - 1 <= args.len()
                    && s.prefix[1..]
                        .iter()
                        .zip(args)
                        .all(|(p, a)| a.literal && &a.text == p)
            })
            .max_by_key(|(_, s)| s.prefix.len())
    }

    fn check_spec(&self, index: usize, spec: &SafeSpec, cmd: &SimpleCmd) -> Vec<String> {
        let mut problems = Vec::new();
        let name = &spec.prefix[0];
        let args = &cmd.words[spec.prefix.len()..];
        let mut operands: Vec<&WordInfo> = Vec::new();
        let mut after_dashdash = false;
        let regexes = self
            .operand_regexes
            .get(index)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for arg in args {
            if !arg.literal {
                problems.push(format!("argument computed at run time: {}", arg.text));
                operands.push(arg);
                continue;
            }
            if spec.forbid.iter().any(|f| arg_matches(f, &arg.text)) {
                problems.push(format!("`{}` is not allowed for {name}", arg.text));
            }
            if let Some(re) = self
                .forbid_regexes
                .get(index)
                .and_then(|list| list.iter().find(|re| re.is_match(&arg.text)))
            {
                problems.push(format!(
                    "`{}` is not allowed in arguments of {name}",
                    re.as_str()
                ));
            }
            if let Some(s) = spec
                .forbid_substrings
                .iter()
                .find(|s| arg.text.contains(s.as_str()))
            {
                problems.push(format!("`{s}` is not allowed in arguments of {name}"));
            }
            let is_flag = !after_dashdash && arg.text.starts_with('-') && arg.text.len() > 1;
            if arg.text == "--" && !after_dashdash {
                after_dashdash = true;
                continue;
            }
            // The script operand (`sed -n '/x/p'`) is checked by its regex, not as a path.
            let is_script = !regexes.is_empty() && !is_flag && operands.is_empty();
            if spec.paths && !is_script {
                let value = if is_flag || is_assignment_like(&arg.text) {
                    arg.text
                        .split_once('=')
                        .map(|(_, v)| v)
                        .or_else(|| attached_value(&arg.text))
                } else {
                    Some(arg.text.as_str())
                };
                if let Some(v) = value
                    && !is_harmless_device(v)
                    && let Some(why) = outside_workspace(v)
                {
                    problems.push(format!("names a path {why}: {v}"));
                }
            }
            if !is_flag {
                operands.push(arg);
            }
        }
        for required in &spec.require {
            if !args.iter().any(|a| arg_matches(required, &a.text)) {
                problems.push(format!("{name} needs `{required}` to be safe"));
            }
        }
        if !regexes.is_empty() {
            match operands.first() {
                Some(op) if regexes.iter().any(|r| r.is_match(&op.text)) => {}
                Some(op) => {
                    problems.push(format!("{name} script `{}` is not a plain print", op.text))
                }
                None => problems.push(format!("{name} without a script")),
            }
        }
        if operands.len() < spec.min_operands {
            problems.push(format!(
                "{name} needs at least {} operand(s)",
                spec.min_operands
            ));
        }
        if spec.needs_input && operands.is_empty() && !cmd.piped_in {
            problems.push(format!("{name} without a file waits on standard input"));
        }
        problems
    }

    /// The strictest path rule matching a word (an argument or a redirection target);
    /// `write` says whether the access writes.
    fn path_rules(&self, word: &WordInfo, write: bool, dir: &Dir) -> Option<Verdict> {
        let text = word.text.as_str();
        let candidates = path_candidates(text, dir);
        let mut worst: Option<Verdict> = None;
        for rule in &self.rules.path_rules {
            if rule.action == RuleAction::Allow {
                continue;
            }
            if rule.access == PathAccess::Write && !write {
                continue;
            }
            if candidates
                .iter()
                .any(|c| rule.patterns.iter().any(|p| glob_match(p, c)))
            {
                let v = if rule.action == RuleAction::Deny {
                    Verdict::Deny {
                        rule: rule.name.clone(),
                        reason: format!("{}: {text}", rule.reason),
                    }
                } else {
                    Verdict::Ask(format!("{}: {text}", rule.reason), rule.escapes)
                };
                worst = Some(stricter(worst, v));
            }
        }
        worst
    }
}

impl Default for CommandPolicy {
    fn default() -> Self {
        Self::builtin()
    }
}

fn walk_basename(text: &str) -> &str {
    text.rsplit('/').next().unwrap_or(text)
}

fn is_assignment_like(text: &str) -> bool {
    text.split_once('=').is_some_and(|(k, _)| {
        !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

fn prefix_matches(prefix: &[String], name: &str, args: &[WordInfo]) -> bool {
    let Some((head, rest)) = prefix.split_first() else {
        return false;
    };
    glob_match(head, name)
        && rest.len() <= args.len()
        && rest
            .iter()
            .zip(args)
            .all(|(p, a)| a.literal && glob_match(p, &a.text))
}

fn max_class(a: CommandClass, b: CommandClass) -> CommandClass {
    match (a, b) {
        (CommandClass::Read, x) | (x, CommandClass::Read) => x,
        (CommandClass::Build, _) | (_, CommandClass::Build) => CommandClass::Build,
        _ => CommandClass::Write,
    }
}

fn stricter(current: Option<Verdict>, new: Verdict) -> Verdict {
    match current {
        None => new,
        Some(c @ Verdict::Deny { .. }) => c,
        Some(c @ Verdict::Ask(..)) => match new {
            Verdict::Deny { .. } => new,
            _ => c,
        },
        Some(Verdict::Allow { .. }) => new,
    }
}

fn finish(display: &str, asks: Vec<(String, Escape)>, class: CommandClass) -> Verdict {
    if asks.is_empty() {
        Verdict::Allow { class }
    } else {
        let escape = asks.iter().map(|(_, e)| *e).max().unwrap_or_default();
        let mut unique: Vec<String> = Vec::new();
        for (a, _) in asks {
            if !unique.contains(&a) {
                unique.push(a);
            }
        }
        Verdict::Ask(format!("`{display}`: {}", unique.join("; ")), escape)
    }
}

#[cfg(test)]
mod tests;
