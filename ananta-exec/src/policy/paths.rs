//! Paths as the policy sees them: where the script's `cd`s lead, option values that name
//! paths, globs read as the sensitive names they could match, and what lies outside the
//! workspace.

use super::rules::glob_match;
use super::walk::{SimpleCmd, WordInfo};
use super::walk_basename;

/// Commands that change the working directory.
pub(super) const CHDIR: &[&str] = &["cd", "pushd", "popd", "chdir"];

/// Names a glob in a path is checked against, so `.gi?/h*` counts as `.git/hooks`.
const SENSITIVE_NAMES: &[&str] = &[
    ".git",
    "hooks",
    "config",
    "commondir",
    "modules",
    "config.worktree",
    ".ssh",
    ".aws",
    ".bashrc",
    ".profile",
    ".gnupg",
];

/// Where the script's working directory is, relative to where it started (the workspace),
/// as far as the policy can follow its `cd`s.
#[derive(Debug, Default)]
pub(super) struct Dir {
    prefix: Vec<String>,
    /// A `cd` went somewhere the policy cannot follow (`cd -`, `cd $X`, `cd ..`, `popd`…).
    pub(super) unknown: bool,
}

impl Dir {
    /// Follows `cmd` if it changes directory.
    pub(super) fn follow(&mut self, cmd: &SimpleCmd) {
        let Some(first) = cmd.words.first() else {
            return;
        };
        let name = walk_basename(&first.text);
        if !first.literal || !CHDIR.contains(&name) {
            return;
        }
        match cd_target(name, &cmd.words[1..]) {
            Some(components) => self.prefix.extend(components),
            None => self.unknown = true,
        }
    }

    /// `path` as seen from the workspace root, when the directory moved and `path` is
    /// relative.
    pub(super) fn resolve(&self, path: &str) -> Option<String> {
        if self.prefix.is_empty() || path.starts_with('/') || path.starts_with('~') {
            return None;
        }
        let mut joined = self.prefix.join("/");
        joined.push('/');
        joined.push_str(path.trim_start_matches("./"));
        Some(joined)
    }
}

/// The components a `cd`/`pushd` moves into, when the policy can follow it: one literal,
/// relative operand without `..` (flags `-L`, `-P`, `-e` aside).
pub(super) fn cd_target(name: &str, args: &[WordInfo]) -> Option<Vec<String>> {
    if name == "popd" {
        return None;
    }
    let operands: Vec<&WordInfo> = args
        .iter()
        .filter(|a| !matches!(a.text.as_str(), "-L" | "-P" | "-e" | "-@" | "--"))
        .collect();
    let [target] = operands.as_slice() else {
        return None;
    };
    let text = target.text.as_str();
    if !target.literal
        || target.glob
        || text.starts_with(['/', '~', '-', '+'])
        || text.split('/').any(|c| c == "..")
    {
        return None;
    }
    Some(
        text.split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(str::to_owned)
            .collect(),
    )
}

/// The value attached to a short option that looks like a path (`-o/x`, `-t.git/hooks`, and
/// in a cluster from its first `/` or `~`: `-cf/tmp/x`).
pub(super) fn attached_value(text: &str) -> Option<&str> {
    if !text.starts_with('-') || text.starts_with("--") || text.len() <= 2 {
        return None;
    }
    let value = text.get(2..)?;
    if value.starts_with(['/', '~', '.']) {
        return Some(value);
    }
    // A cluster (`-cf/tmp/x`): the path starts where the first `/` or `~` does.
    value.find(['/', '~']).map(|at| &value[at..])
}

/// Every way a path rule may see a word: the word itself, a value after `=` (`--opt=value`,
/// `of=value`) or attached to a short option (`-o/path`), each also joined to the directory
/// the script moved to, and with globs read as the sensitive names they could match.
pub(super) fn path_candidates(text: &str, dir: &Dir) -> Vec<String> {
    let mut v = vec![text.to_owned()];
    if let Some((_, value)) = text.split_once('=') {
        v.push(value.to_owned());
    }
    if let Some(value) = attached_value(text) {
        v.push(value.to_owned());
    }
    let joined: Vec<String> = v.iter().filter_map(|c| dir.resolve(c)).collect();
    v.extend(joined);
    let aliased: Vec<String> = v.iter().filter_map(|c| glob_alias(c)).collect();
    v.extend(aliased);
    v
}

/// A glob with each bracket expression (`[g]`, `[!a-z]`) read as `?`, which matches at least
/// what it does.
fn brackets_as_any(glob: &str) -> String {
    let mut out = String::new();
    let mut chars = glob.chars();
    while let Some(c) = chars.next() {
        if c == '[' {
            out.push('?');
            for d in chars.by_ref() {
                if d == ']' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `path` with each glob component replaced by a sensitive name it could match (a leading
/// dot must be literal, as in the shell), if any was.
fn glob_alias(path: &str) -> Option<String> {
    if !path.contains(['*', '?', '[']) {
        return None;
    }
    let mut changed = false;
    let parts: Vec<String> = path
        .split('/')
        .map(|part| {
            if part.contains(['*', '?', '[']) {
                let hit = SENSITIVE_NAMES.iter().find(|name| {
                    (part.starts_with('.') || !name.starts_with('.'))
                        && glob_match(&brackets_as_any(part), name)
                });
                if let Some(name) = hit {
                    changed = true;
                    return (*name).to_owned();
                }
            }
            part.to_owned()
        })
        .collect();
    changed.then(|| parts.join("/"))
}

pub(super) fn is_harmless_device(path: &str) -> bool {
    matches!(
        path,
        "/dev/null" | "/dev/stdin" | "/dev/stdout" | "/dev/stderr" | "/dev/tty"
    ) || path.starts_with("/dev/fd/")
}

/// Why a path is outside the workspace, if it is.
pub(super) fn outside_workspace(path: &str) -> Option<&'static str> {
    if path.starts_with('/') {
        Some("outside the workspace (absolute)")
    } else if path.starts_with('~') {
        Some("in a home directory")
    } else if path.split('/').any(|c| c == "..") {
        Some("outside the workspace (`..`)")
    } else {
        None
    }
}
