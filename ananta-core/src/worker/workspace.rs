//! Where a Worker's tasks run: one shared directory, a directory per task, or a git worktree
//! per task on its own branch.

use std::path::{Path, PathBuf};

use crate::error::AgentError;
use crate::ids::TaskId;

/// How a Worker places its tasks (set with [`WorkerBuilder::workspaces`]).
///
/// A task's workspace is the working directory of its commands and checks and, when the
/// executor has a sandbox, the only place they may write (see
/// [`ExecRequest::workspace`](crate::exec::ExecRequest::workspace)): two tasks of one Worker,
/// in parallel or one after the other, do not see each other's files.
///
/// [`WorkerBuilder::workspaces`]: crate::WorkerBuilder::workspaces
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Workspaces {
    /// Every task in the executor's working directory (the default).
    #[default]
    Shared,
    /// Each task in its own directory `root/<task>`, created on first use. `root` must lie
    /// inside the executor's working directory (or be it).
    PerTask {
        /// The parent of the task directories.
        root: PathBuf,
        /// What happens to a workspace when its task is done.
        cleanup: Cleanup,
    },
    /// Each task in a git worktree of `repo` at `repo/.ananta/worktrees/<task>`, on its own
    /// branch `ananta/<task>` from the repository's `HEAD`: the result is a branch a human can
    /// review and merge. `repo` must be the executor's working directory or lie inside it;
    /// `.ananta/` is added to the repository's `info/exclude`.
    Worktree {
        /// The repository.
        repo: PathBuf,
        /// What happens to a worktree when its task is done (the branch always stays).
        cleanup: Cleanup,
    },
}

/// What happens to a task's workspace when the task is `done` (verified).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cleanup {
    /// Keep it (the default).
    #[default]
    Keep,
    /// Remove it once the task is done; a worktree's branch stays. Tasks that end in
    /// `review` or `failed` keep theirs for a human.
    RemoveWhenDone,
}

impl Workspaces {
    /// A directory per task under `root`, kept.
    pub fn per_task(root: impl Into<PathBuf>) -> Self {
        Self::PerTask {
            root: root.into(),
            cleanup: Cleanup::Keep,
        }
    }

    /// A git worktree per task of `repo`, kept.
    pub fn worktrees(repo: impl Into<PathBuf>) -> Self {
        Self::Worktree {
            repo: repo.into(),
            cleanup: Cleanup::Keep,
        }
    }

    /// Sets what happens to a workspace when its task is done.
    pub fn cleanup(mut self, policy: Cleanup) -> Self {
        match &mut self {
            Self::Shared => {}
            Self::PerTask { cleanup, .. } | Self::Worktree { cleanup, .. } => *cleanup = policy,
        }
        self
    }

    /// The workspace `task` runs in (`None`: the executor's working directory), without
    /// creating it.
    pub fn path_of(&self, task: TaskId) -> Option<PathBuf> {
        match self {
            Self::Shared => None,
            Self::PerTask { root, .. } => Some(root.join(dir_name(task))),
            Self::Worktree { repo, .. } => Some(worktrees_dir(repo).join(dir_name(task))),
        }
    }

    /// The branch of `task`'s worktree (only in [`Workspaces::Worktree`]).
    pub fn branch_of(&self, task: TaskId) -> Option<String> {
        match self {
            Self::Worktree { .. } => Some(format!("ananta/{}", dir_name(task))),
            _ => None,
        }
    }

    /// Creates `task`'s workspace when it does not exist yet and returns it.
    pub(super) async fn prepare(&self, task: TaskId) -> Result<Option<PathBuf>, AgentError> {
        let Some(path) = self.path_of(task) else {
            return Ok(None);
        };
        if path.is_dir() {
            return Ok(Some(path));
        }
        match self {
            Self::Shared => Ok(None),
            Self::PerTask { .. } => {
                tokio::fs::create_dir_all(&path).await.map_err(|e| {
                    AgentError::Workspace(format!("cannot create {}: {e}", path.display()))
                })?;
                Ok(Some(path))
            }
            Self::Worktree { repo, .. } => {
                let branch = self.branch_of(task).unwrap_or_default();
                exclude_ananta_dir(repo).await?;
                let target = path.to_string_lossy().into_owned();
                let exists = git(repo, &["rev-parse", "--verify", "--quiet", &branch])
                    .await
                    .is_ok();
                if exists {
                    git(repo, &["worktree", "add", &target, &branch]).await?;
                } else {
                    git(repo, &["worktree", "add", "-b", &branch, &target, "HEAD"]).await?;
                }
                Ok(Some(path))
            }
        }
    }

    /// Removes `task`'s workspace (a worktree's branch stays). Nothing to do is no error.
    pub(super) async fn remove(&self, task: TaskId) -> Result<(), AgentError> {
        let Some(path) = self.path_of(task) else {
            return Ok(());
        };
        if !path.exists() {
            return Ok(());
        }
        match self {
            Self::Shared => Ok(()),
            Self::PerTask { .. } => tokio::fs::remove_dir_all(&path).await.map_err(|e| {
                AgentError::Workspace(format!("cannot remove {}: {e}", path.display()))
            }),
            Self::Worktree { repo, .. } => {
                let target = path.to_string_lossy().into_owned();
                git(repo, &["worktree", "remove", "--force", &target])
                    .await
                    .map(drop)
            }
        }
    }

    /// The cleanup policy.
    pub(super) fn cleanup_policy(&self) -> Cleanup {
        match self {
            Self::Shared => Cleanup::Keep,
            Self::PerTask { cleanup, .. } | Self::Worktree { cleanup, .. } => *cleanup,
        }
    }
}

/// A task's directory name: its id in lower case (ids are `T-` and a ULID: path-safe).
fn dir_name(task: TaskId) -> String {
    task.to_string().to_ascii_lowercase()
}

fn worktrees_dir(repo: &Path) -> PathBuf {
    repo.join(".ananta").join("worktrees")
}

/// Runs `git -C repo args…`, returning stdout or a workspace error with git's message.
async fn git(repo: &Path, args: &[&str]) -> Result<String, AgentError> {
    let output = tokio::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| AgentError::Workspace(format!("cannot run git: {e}")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(AgentError::Workspace(format!(
            "git {} failed in {}: {}",
            args.join(" "),
            repo.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// Adds `.ananta/` to the repository's `info/exclude` so worktrees are not untracked files.
async fn exclude_ananta_dir(repo: &Path) -> Result<(), AgentError> {
    let dir = git(repo, &["rev-parse", "--git-path", "info"]).await?;
    let dir = repo.join(dir.trim());
    let file = dir.join("exclude");
    let current = tokio::fs::read_to_string(&file).await.unwrap_or_default();
    if current.lines().any(|l| l.trim() == "/.ananta/") {
        return Ok(());
    }
    let io =
        |e: std::io::Error| AgentError::Workspace(format!("cannot update {}: {e}", file.display()));
    tokio::fs::create_dir_all(&dir).await.map_err(io)?;
    let mut text = current;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("/.ananta/\n");
    tokio::fs::write(&file, text).await.map_err(io)
}
