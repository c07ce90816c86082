//! The policy's rules as data: a TOML file with prefix rules, pipeline rules, path rules and safe
//! command specs, plus the built-in default shipped as `default.toml`.

use serde::{Deserialize, Serialize};

/// The built-in rules, as TOML. Hosts can copy this file and adapt it.
pub const DEFAULT_RULES_TOML: &str = include_str!("default.toml");

/// What a matching rule does. When several rules match one command the strictest wins:
/// `deny` over `ask` over `allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// The command may run (in `ReadOnly` only if the rule's class is `read`).
    Allow,
    /// The command waits for a human in `Approve` mode.
    Ask,
    /// The command never runs (except in `Off` mode).
    Deny,
}

/// How much a command allowed by a safe spec or an allow rule may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandClass {
    /// Reads only: allowed in `ReadOnly` and `Approve`.
    Read,
    /// Writes inside the workspace: allowed in `Approve`.
    #[default]
    Write,
    /// Builds and tests (`cargo test`, `make`…): allowed in `Approve`.
    Build,
}

/// Whether a sandbox contains what a rule asks about: in [`PolicyMode::Approve`](super::PolicyMode)
/// with a strict sandbox ([`Containment::Sandbox`](super::Containment)), asks the sandbox
/// contains are dropped and the command runs; the others still wait for a human.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Escape {
    /// The sandbox contains it (writes stay in the workspace, nothing outside is read).
    #[default]
    Never,
    /// It reaches beyond the sandbox when the sandbox allows the network (downloads,
    /// connections).
    WithNetwork,
    /// The sandbox cannot undo or contain it (publishing, pushing, git internals that run
    /// code on the user's later git commands).
    Always,
}

/// Which accesses a [`PathRule`] applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathAccess {
    /// Any mention: an argument of any command or any redirection target.
    #[default]
    Any,
    /// Writes: output redirection targets and arguments of commands that are not read-only.
    Write,
}

/// A rule on a command family, matched against the words of each simple command after
/// wrappers (`env`, `timeout`, `xargs`…) are removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixRule {
    /// Name reported in `Decision::Deny { rule }`; defaults to the prefix joined by spaces.
    #[serde(default)]
    pub name: Option<String>,
    /// Glob patterns (`*`, `?`) for the leading words; the first is matched against the command
    /// name with any directory removed (`/bin/rm` is `rm`).
    pub prefix: Vec<String>,
    /// If not empty, the rule matches only when at least one later word matches one of these
    /// globs. `$HOME` and `${HOME}` are written `~`. Short flag clusters match their letters:
    /// `-r` matches `-rf`.
    #[serde(default)]
    pub args_any: Vec<String>,
    /// What the rule does.
    pub action: RuleAction,
    /// Class of the command when `action = "allow"`.
    #[serde(default)]
    pub class: CommandClass,
    /// Whether `args_any` ignores case (git configuration keys are case-insensitive).
    #[serde(default)]
    pub ignore_case: bool,
    /// Whether a sandbox contains what an `ask` rule asks about.
    #[serde(default)]
    pub escapes: Escape,
    /// Why, for humans.
    #[serde(default)]
    pub reason: String,
}

/// A rule on two commands of one pipeline: a command matching `from` whose output flows into a
/// later command matching `to` (e.g. `curl … | sh`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineRule {
    /// Name reported in `Decision::Deny { rule }`.
    pub name: String,
    /// Globs for the command name of the earlier command.
    pub from: Vec<String>,
    /// Globs for the command name of a later command.
    pub to: Vec<String>,
    /// What the rule does (`allow` is meaningless here and ignored).
    pub action: RuleAction,
    /// Whether a sandbox contains what an `ask` rule asks about.
    #[serde(default)]
    pub escapes: Escape,
    /// Why, for humans.
    #[serde(default)]
    pub reason: String,
}

/// A rule on paths named by arguments or redirections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathRule {
    /// Name reported in `Decision::Deny { rule }`.
    pub name: String,
    /// Globs for the path (`$HOME` written `~`); `*` also matches `/`.
    pub patterns: Vec<String>,
    /// Which accesses the rule applies to.
    #[serde(default)]
    pub access: PathAccess,
    /// What the rule does (`allow` is ignored).
    pub action: RuleAction,
    /// Whether a sandbox contains what an `ask` rule asks about.
    #[serde(default)]
    pub escapes: Escape,
    /// Why, for humans.
    #[serde(default)]
    pub reason: String,
}

/// A command that is safe (allowed in `Approve`, and in `ReadOnly` when its class is `read`)
/// when its arguments pass these checks. Arguments that name paths outside the workspace
/// (absolute, `~`, `..`) or that cannot be known statically (`$VAR`, `$(…)`) make it unsafe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafeSpec {
    /// Leading words, literal (e.g. `["git", "log"]`); the first is the command name.
    pub prefix: Vec<String>,
    /// What the command may change.
    #[serde(default)]
    pub class: CommandClass,
    /// Flags that make the command unsafe (globs; short flags also match inside clusters).
    #[serde(default)]
    pub forbid: Vec<String>,
    /// Flags that must be present (e.g. `sed -n`).
    #[serde(default)]
    pub require: Vec<String>,
    /// Substrings that make the command unsafe when they occur in any argument
    /// (e.g. `system(` for awk).
    #[serde(default)]
    pub forbid_substrings: Vec<String>,
    /// Regular expressions that make the command unsafe when they match any argument (e.g.
    /// an awk `print` redirected or piped, where a bare `>` would also be a comparison).
    #[serde(default)]
    pub forbid_regex: Vec<String>,
    /// If not empty, the first operand (non-flag argument) must match one of these regular
    /// expressions (e.g. a `sed -n` script that only prints).
    #[serde(default)]
    pub first_operand_regex: Vec<String>,
    /// At least this many operands are needed (e.g. `cd` without one goes home).
    #[serde(default)]
    pub min_operands: usize,
    /// Without an operand the command reads standard input: unsafe unless its input is a pipe
    /// (`cat` alone would wait forever).
    #[serde(default)]
    pub needs_input: bool,
    /// Whether operands are paths to check (false for `echo`, `printf`…).
    #[serde(default = "yes")]
    pub paths: bool,
}

fn yes() -> bool {
    true
}

/// The whole rule set: what a policy file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRules {
    /// Prefix rules (`[[rule]]`).
    #[serde(default, rename = "rule")]
    pub rules: Vec<PrefixRule>,
    /// Pipeline rules (`[[pipeline_rule]]`).
    #[serde(default, rename = "pipeline_rule")]
    pub pipeline_rules: Vec<PipelineRule>,
    /// Path rules (`[[path_rule]]`).
    #[serde(default, rename = "path_rule")]
    pub path_rules: Vec<PathRule>,
    /// Safe command specs (`[[safe]]`).
    #[serde(default)]
    pub safe: Vec<SafeSpec>,
    /// Environment variable names (globs) whose assignment changes how commands run
    /// (`PATH`, `LD_PRELOAD`…): assigning one needs approval.
    #[serde(default)]
    pub sensitive_env: Vec<String>,
}

impl PolicyRules {
    /// The built-in rules (parsed from [`DEFAULT_RULES_TOML`]).
    pub fn builtin() -> Self {
        // The embedded file is checked by a unit test; an empty rule set is the fallback that
        // still asks for everything in `Approve`.
        toml::from_str(DEFAULT_RULES_TOML).unwrap_or_else(|_| Self::empty())
    }

    /// No rules at all: in `Approve` every command needs approval.
    pub fn empty() -> Self {
        Self {
            rules: Vec::new(),
            pipeline_rules: Vec::new(),
            path_rules: Vec::new(),
            safe: Vec::new(),
            sensitive_env: Vec::new(),
        }
    }

    /// Parses a policy file in TOML.
    pub fn from_toml(text: &str) -> Result<Self, super::PolicyError> {
        let rules: Self =
            toml::from_str(text).map_err(|e| super::PolicyError::Toml(e.to_string()))?;
        rules.validate()?;
        Ok(rules)
    }

    /// Checks what serde cannot: non-empty prefixes and valid regular expressions.
    pub fn validate(&self) -> Result<(), super::PolicyError> {
        use super::PolicyError::Invalid;
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.prefix.is_empty() {
                return Err(Invalid(format!("rule #{}: empty prefix", i + 1)));
            }
        }
        for (i, spec) in self.safe.iter().enumerate() {
            if spec.prefix.is_empty() {
                return Err(Invalid(format!("safe #{}: empty prefix", i + 1)));
            }
            for re in spec.first_operand_regex.iter().chain(&spec.forbid_regex) {
                regex::Regex::new(re).map_err(|e| {
                    Invalid(format!(
                        "safe #{} ({}): bad regex: {e}",
                        i + 1,
                        spec.prefix[0]
                    ))
                })?;
            }
        }
        for rule in &self.pipeline_rules {
            if rule.from.is_empty() || rule.to.is_empty() {
                return Err(Invalid(format!(
                    "pipeline_rule {}: empty from/to",
                    rule.name
                )));
            }
        }
        Ok(())
    }
}

impl Default for PolicyRules {
    fn default() -> Self {
        Self::builtin()
    }
}

/// Glob match with `*` (any run, including `/`) and `?` (one character).
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Whether an argument matches a flag or word pattern: a glob, and for a single short flag
/// (`-r`) also any short-flag cluster containing its letter (`-rf`).
pub(crate) fn arg_matches(pattern: &str, arg: &str) -> bool {
    if glob_match(pattern, arg) {
        return true;
    }
    let pb = pattern.as_bytes();
    if pb.len() == 2 && pb[0] == b'-' && pb[1].is_ascii_alphanumeric() {
        let ab = arg.as_bytes();
        if ab.len() > 2
            && ab[0] == b'-'
            && ab[1] != b'-'
            && ab[1..].iter().all(|c| c.is_ascii_alphabetic())
        {
            return ab[1..].contains(&pb[1]);
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("mkfs*", "mkfs.ext4"));
        assert!(glob_match("~/.ssh/*", "~/.ssh/id_ed25519"));
        assert!(glob_match("/proc/*/environ", "/proc/self/environ"));
        assert!(!glob_match("rm", "rmdir"));
        assert!(glob_match("?", "x"));
        assert!(arg_matches("-r", "-rf"));
        assert!(arg_matches("-f", "-rf"));
        assert!(!arg_matches("-r", "--recursive"));
        assert!(!arg_matches("-i", "-n5"));
    }

    #[test]
    fn builtin_file_parses_and_validates() {
        let rules = PolicyRules::from_toml(DEFAULT_RULES_TOML).unwrap();
        assert!(!rules.rules.is_empty());
        assert!(!rules.safe.is_empty());
        assert_eq!(rules, PolicyRules::builtin());
    }
}
