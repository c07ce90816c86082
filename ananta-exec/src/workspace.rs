//! A request's own workspace inside the executor's: checked so it narrows where a command may
//! write and never widens it, and, for a git worktree, the repository directories git needs.

use std::path::{Path, PathBuf};

use ananta_core::ExecError;
use ananta_core::exec::ExecRequest;

/// The request's workspace, canonical, when it names one: it must be a directory inside
/// `outer` (canonical: the executor's working directory, or the sandbox's workspace), so a
/// request can narrow where a command writes but never widen it.
pub(crate) fn request_workspace(
    workdir: &Path,
    outer: &Path,
    request: &ExecRequest,
) -> Result<Option<PathBuf>, ExecError> {
    let Some(dir) = &request.workspace else {
        return Ok(None);
    };
    let invalid = |msg: String| ExecError::InvalidRequest(msg);
    let dir = if dir.is_absolute() {
        dir.clone()
    } else {
        workdir.join(dir)
    };
    let dir = dir
        .canonicalize()
        .map_err(|e| invalid(format!("workspace {} is not usable: {e}", dir.display())))?;
    if !dir.is_dir() {
        return Err(invalid(format!(
            "workspace {} is not a directory",
            dir.display()
        )));
    }
    if !dir.starts_with(outer) {
        return Err(invalid(format!(
            "workspace {} is outside the executor's {}",
            dir.display(),
            outer.display()
        )));
    }
    Ok(Some(dir))
}

/// The git directories a command in a git worktree needs beyond the worktree itself.
#[derive(Default)]
pub(crate) struct WorktreeGit {
    /// The repository's git directory (config, hooks, `HEAD`), read only.
    pub(crate) read: Vec<PathBuf>,
    /// The worktree's own admin directory and the shared objects, refs and logs (`git add`,
    /// `git commit`).
    pub(crate) write: Vec<PathBuf>,
}

/// The git directories of the worktree at `workspace`, if it is one. Only directories inside
/// `outer` (the executor's workspace) count, so a `.git` file the command wrote itself cannot
/// widen what it may read or write.
pub(crate) fn worktree_git_dirs(workspace: &Path, outer: &Path) -> WorktreeGit {
    let mut dirs = WorktreeGit::default();
    let Ok(text) = std::fs::read_to_string(workspace.join(".git")) else {
        return dirs;
    };
    let Some(admin) = text.trim().strip_prefix("gitdir:").map(str::trim) else {
        return dirs;
    };
    let Ok(admin) = workspace.join(admin).canonicalize() else {
        return dirs;
    };
    let common = std::fs::read_to_string(admin.join("commondir"))
        .ok()
        .map(|c| admin.join(c.trim()))
        .and_then(|c| c.canonicalize().ok());
    let inside = |d: &PathBuf| d.starts_with(outer) && d.is_dir();
    if let Some(common) = common.filter(inside) {
        dirs.write
            .extend(["objects", "refs", "logs"].map(|d| common.join(d)));
        dirs.read.push(common);
    }
    dirs.write.push(admin);
    dirs.write.retain(inside);
    dirs
}
