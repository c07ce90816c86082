//! Keeps a workspace's git metadata from becoming a way out of the sandbox, and gives
//! sandboxed commands a git identity.
//!
//! A hook (`.git/hooks/pre-commit`) or a configured command (`core.fsmonitor`,
//! `core.hooksPath`, `include.path`…) planted by a sandboxed command is harmless inside the
//! sandbox but runs unconfined the next time the user runs `git status` or `git commit`. So:
//! - inside the sandbox `.git/hooks` and `.git/config` are read-only bind mounts (a missing
//!   `hooks` directory is created empty first), and `.git` itself is a mount point, so it can
//!   be neither renamed nor removed; the rest of `.git` stays writable, so `git add` and
//!   `git commit` work;
//! - the files git would also read commands from, but that cannot be mounted read-only before
//!   they exist (`commondir`, `config.worktree`, the configs and hooks of `.git/modules`, and
//!   a repository `git init` created during the run), are compared with their state before
//!   the run afterwards and restored, removed or reduced to a plain configuration.

use std::path::{Path, PathBuf};

use super::mounts::Visible;

/// The author and committer of commits made inside the sandbox (written to the private
/// home's `.gitconfig`; a repository's own `user.*` settings still win).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitIdentity {
    /// `user.name`.
    pub name: String,
    /// `user.email`.
    pub email: String,
}

impl GitIdentity {
    /// An identity.
    pub fn new(name: impl Into<String>, email: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            email: email.into(),
        }
    }

    /// The host's global `user.name` and `user.email` (asked once per process), else
    /// `Ananta agent <agent@ananta.invalid>`.
    pub fn host_or_default() -> Self {
        static HOST: std::sync::OnceLock<GitIdentity> = std::sync::OnceLock::new();
        HOST.get_or_init(|| {
            let get = |key: &str| {
                std::process::Command::new("git")
                    .args(["config", "--global", "--get", key])
                    .stdin(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
                    .and_then(|o| String::from_utf8(o.stdout).ok())
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
            };
            match (get("user.name"), get("user.email")) {
                (Some(name), Some(email)) => Self::new(name, email),
                _ => Self::new("Ananta agent", "agent@ananta.invalid"),
            }
        })
        .clone()
    }

    /// The `.gitconfig` text for the private home.
    pub(crate) fn gitconfig(&self) -> String {
        let clean = |s: &str| -> String {
            s.chars()
                .filter(|c| !c.is_control() && !matches!(c, '"' | '\\'))
                .collect()
        };
        format!(
            "[user]\n\tname = \"{}\"\n\temail = \"{}\"\n",
            clean(&self.name),
            clean(&self.email)
        )
    }
}

/// Files of a git directory from which git takes commands, compared before and after a run.
const WATCHED: &[&str] = &["config", "config.worktree", "commondir"];

/// The state of one git directory before a run.
#[derive(Debug)]
struct GitDirState {
    dir: PathBuf,
    files: Vec<(&'static str, Option<Vec<u8>>)>,
    hooks: Option<Vec<std::ffi::OsString>>,
}

impl GitDirState {
    fn capture(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            files: WATCHED
                .iter()
                .map(|name| (*name, std::fs::read(dir.join(name)).ok()))
                .collect(),
            hooks: list(&dir.join("hooks")),
        }
    }
}

fn list(dir: &Path) -> Option<Vec<std::ffi::OsString>> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    Some(names)
}

/// The git protection of one run.
#[derive(Debug, Default)]
pub(crate) struct GitGuard {
    workspace: PathBuf,
    /// `.git` existed (as a directory or a file) before the run.
    had_git: bool,
    dirs: Vec<GitDirState>,
    modules: Vec<GitDirState>,
}

impl GitGuard {
    /// Captures the workspace's git state and returns what the private root must show
    /// specially. `admin_dirs` are the git directories of a worktree (already writable roots).
    pub(crate) fn prepare(
        workspace: &Path,
        admin_dirs: &[PathBuf],
    ) -> (Self, Vec<(PathBuf, Visible)>) {
        let dot_git = workspace.join(".git");
        let mut visible = Vec::new();
        let mut guard = Self {
            workspace: workspace.to_path_buf(),
            had_git: std::fs::symlink_metadata(&dot_git).is_ok(),
            ..Self::default()
        };
        let mut gitdirs: Vec<PathBuf> = admin_dirs.to_vec();
        if dot_git.is_dir() && !dot_git.is_symlink() {
            // An empty hooks directory, so it can be mounted read-only.
            let _ = std::fs::create_dir(dot_git.join("hooks"));
            gitdirs.push(dot_git.clone());
            for state in modules(&dot_git) {
                guard.modules.push(state);
            }
        }
        if guard.had_git {
            visible.push((dot_git, Visible::Pin));
        }
        for dir in gitdirs {
            for name in ["hooks", "config", "config.worktree", "commondir"] {
                let path = dir.join(name);
                if path.exists() {
                    visible.push((path, Visible::Read));
                }
            }
            guard.dirs.push(GitDirState::capture(&dir));
        }
        (guard, visible)
    }

    /// After the run: undoes changes to the watched files, removes planted hooks and reduces
    /// a configuration created during the run to plain settings. Returns what it undid.
    pub(crate) fn restore(&self) -> Vec<String> {
        let mut undone = Vec::new();
        for state in self.dirs.iter().chain(&self.modules) {
            restore_dir(state, &mut undone);
        }
        let dot_git = self.workspace.join(".git");
        if !self.had_git {
            if dot_git.is_dir() && !dot_git.is_symlink() {
                // A repository made during the run (`git init`): only sample hooks and a
                // plain configuration are kept.
                let state = GitDirState {
                    dir: dot_git.clone(),
                    files: vec![("config.worktree", None), ("commondir", None)],
                    hooks: Some(Vec::new()),
                };
                restore_dir(&state, &mut undone);
                sanitize_config(&dot_git.join("config"), &mut undone);
            } else if std::fs::symlink_metadata(&dot_git).is_ok() {
                let _ = std::fs::remove_file(&dot_git);
                undone.push(format!(
                    "removed {} (made during the run)",
                    dot_git.display()
                ));
            }
        }
        if dot_git.is_dir() {
            let before: Vec<&PathBuf> = self.modules.iter().map(|m| &m.dir).collect();
            for module in modules(&dot_git) {
                if !before.contains(&&module.dir) {
                    let fresh = GitDirState {
                        files: vec![("config.worktree", None), ("commondir", None)],
                        hooks: Some(Vec::new()),
                        ..module
                    };
                    restore_dir(&fresh, &mut undone);
                    sanitize_config(&fresh.dir.join("config"), &mut undone);
                }
            }
        }
        for line in &undone {
            tracing::warn!(workspace = %self.workspace.display(), "sandbox: {line}");
        }
        undone
    }
}

/// The git directories beneath `.git/modules` (a few levels deep).
fn modules(dot_git: &Path) -> Vec<GitDirState> {
    let mut out = Vec::new();
    let mut stack = vec![(dot_git.join("modules"), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if path.join("HEAD").exists() || path.join("config").exists() {
                out.push(GitDirState::capture(&path));
            }
            if depth < 4 {
                stack.push((path.join("modules"), depth + 1));
                stack.push((path, depth + 1));
            }
        }
    }
    out
}

fn restore_dir(state: &GitDirState, undone: &mut Vec<String>) {
    for (name, before) in &state.files {
        let path = state.dir.join(name);
        let now = std::fs::read(&path).ok();
        if now == *before {
            continue;
        }
        match before {
            Some(content) => {
                let _ = std::fs::write(&path, content);
                undone.push(format!("restored {}", path.display()));
            }
            None => {
                let _ = std::fs::remove_file(&path);
                undone.push(format!("removed {} (made during the run)", path.display()));
            }
        }
    }
    let hooks = state.dir.join("hooks");
    let Some(now) = list(&hooks) else {
        return;
    };
    let before = state.hooks.clone().unwrap_or_default();
    for name in now {
        let sample = name.to_str().is_some_and(|n| n.ends_with(".sample"));
        let fresh_repo = state.hooks.as_ref().is_some_and(Vec::is_empty);
        if !(before.contains(&name) || sample && fresh_repo) {
            let path = hooks.join(&name);
            let removed = if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            if removed.is_ok() {
                undone.push(format!(
                    "removed hook {} (planted during the run)",
                    path.display()
                ));
            }
        }
    }
}

/// Sections and keys a configuration made during a run may hold (lower case).
fn plain_setting(section: &str, key: &str) -> bool {
    match section {
        "core" => matches!(
            key,
            "repositoryformatversion"
                | "filemode"
                | "bare"
                | "logallrefupdates"
                | "ignorecase"
                | "precomposeunicode"
                | "symlinks"
                | "worktree"
        ),
        "extensions" => matches!(key, "objectformat" | "refstorage"),
        "user" => matches!(key, "name" | "email"),
        "init" => key == "defaultbranch",
        "branch" => matches!(key, "remote" | "merge"),
        "remote" => matches!(key, "url" | "fetch"),
        "submodule" => matches!(key, "url" | "active"),
        _ => false,
    }
}

/// Whether every line of a git configuration is a plain setting (no continuation lines, no
/// includes, no command-valued keys).
fn plain_config(text: &str) -> bool {
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.ends_with('\\') {
            return false;
        }
        if let Some(header) = line.strip_prefix('[') {
            let Some(header) = header.strip_suffix(']') else {
                return false;
            };
            let name = header.split([' ', '"', '.']).next().unwrap_or("");
            section = name.to_ascii_lowercase();
            if !header[name.len()..].trim().is_empty()
                && !matches!(section.as_str(), "branch" | "remote" | "submodule")
            {
                return false;
            }
            continue;
        }
        let key = line
            .split('=')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !plain_setting(&section, &key) {
            return false;
        }
    }
    true
}

fn sanitize_config(path: &Path, undone: &mut Vec<String>) {
    let Ok(text) = std::fs::read_to_string(path) else {
        if path.exists() {
            let _ = std::fs::remove_file(path);
            undone.push(format!("removed unreadable {}", path.display()));
        }
        return;
    };
    if plain_config(&text) {
        return;
    }
    let plain = "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n\tlogallrefupdates = true\n";
    let _ = std::fs::write(path, plain);
    undone.push(format!(
        "replaced {} (it held settings that run commands) with a plain configuration",
        path.display()
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_configs_pass_and_command_settings_do_not() {
        assert!(plain_config(
            "[core]\n\trepositoryformatversion = 0\n\tbare = false\n[user]\n\tname = x\n[remote \"origin\"]\n\turl = ../r\n"
        ));
        for evil in [
            "[core]\n\tfsmonitor = touch /tmp/x\n",
            "[core]\n\thooksPath = h\n",
            "[include]\n\tpath = ../evil\n",
            "[core]\n\tbare = false \\\n\tfsmonitor = x\n",
            "[alias]\n\tst = !sh\n",
            "[core \"x\"]\n\tbare = false\n",
            "[filter \"a\"]\n\tclean = sh\n",
        ] {
            assert!(!plain_config(evil), "{evil}");
        }
    }

    #[test]
    fn the_identity_is_quoted_safely() {
        let id = GitIdentity::new("A \"b\"\n[core]", "a@b");
        assert_eq!(
            id.gitconfig(),
            "[user]\n\tname = \"A b[core]\"\n\temail = \"a@b\"\n"
        );
    }
}
