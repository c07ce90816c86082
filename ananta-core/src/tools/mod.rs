//! Native tool calls: the actions a Worker offers a model that calls functions, beside the
//! shell command.
//!
//! With [`Protocol::Tools`](crate::worker::Protocol::Tools) a Worker sends every tool's JSON
//! schema with the request; the model answers with a call, the Worker runs it and sends the
//! result back as a tool message. Two tools are built in: `run_command` (a shell command,
//! through the executor, gate and sandbox like every command) and `finish` (the task is done;
//! its acceptance checks run). The [`Toolbox::files`] tools read, write, edit, list and search
//! files, confined to the task's workspace ([`confine`]). A host adds its own by implementing
//! [`Tool`].
//!
//! ```
//! use ananta_core::tools::{Tool, ToolContext, Toolbox};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! let dir = tempfile::tempdir()?;
//! let tools = Toolbox::files();
//! let ctx = ToolContext::new(dir.path());
//! let write = tools.get("write_file").expect("a file tool");
//! write.call(&ctx, r#"{"path": "notes/a.txt", "content": "hello\n"}"#).await?;
//! let read = tools.get("read_file").expect("a file tool");
//! assert_eq!(read.call(&ctx, r#"{"path": "notes/a.txt"}"#).await?, "1\thello\n");
//! // Paths outside the workspace are refused with a typed error.
//! assert!(read.call(&ctx, r#"{"path": "../etc/passwd"}"#).await.is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod files;
mod find;
mod paths;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use serde::de::DeserializeOwned;

use crate::llm::ToolSpec;

pub use files::{EditFile, MAX_READ_BYTES, MAX_WRITE_BYTES, ReadFile, WriteFile};
pub use find::{ListFiles, MAX_LIST_ENTRIES, MAX_SEARCH_MATCHES, SearchFiles};
pub use paths::confine;

/// The name of the built-in tool that runs a shell command.
pub const RUN_COMMAND: &str = "run_command";
/// The name of the built-in tool that says the task is finished.
pub const FINISH: &str = "finish";

/// Why a tool call failed; the model reads the message as the call's result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// The arguments are not valid JSON or do not fit the tool's schema.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// No tool of this name.
    #[error("no tool named {0:?}")]
    UnknownTool(String),
    /// The path leaves the task's workspace (absolute, `..`, or through a symbolic link).
    #[error("{path}: outside the task's workspace")]
    OutsideWorkspace {
        /// The path as given.
        path: String,
    },
    /// The tool changes files, and this worker's tools are read-only.
    #[error("{tool} changes files, and the tools are read-only here")]
    ReadOnly {
        /// The tool.
        tool: String,
    },
    /// The file does not exist.
    #[error("{path}: no such file")]
    NotFound {
        /// The path as given.
        path: String,
    },
    /// The file is larger than the tool reads or writes.
    #[error("{path}: {bytes} bytes, more than the {limit} this tool handles")]
    TooLarge {
        /// The path as given.
        path: String,
        /// Its size.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// `edit_file`'s `old` text is not in the file.
    #[error("{path}: the text to replace was not found")]
    NoMatch {
        /// The path as given.
        path: String,
    },
    /// `edit_file`'s `old` text is in the file more than once.
    #[error("{path}: the text to replace occurs {count} times; give more context so it is unique")]
    AmbiguousMatch {
        /// The path as given.
        path: String,
        /// How often it occurs.
        count: usize,
    },
    /// Reading or writing failed.
    #[error("{0}")]
    Io(String),
}

/// How much the file tools may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ToolAccess {
    /// Read and write (the default).
    #[default]
    ReadWrite,
    /// Writes wait for a human's approval, like a command the gate holds.
    ApproveWrites,
    /// Writes are refused ([`ToolError::ReadOnly`]).
    ReadOnly,
}

/// What a tool works on.
#[derive(Debug, Clone)]
pub struct ToolContext {
    /// The task's workspace: every path is relative to it and confined to it.
    pub workspace: PathBuf,
    /// Whether writes are allowed.
    pub access: ToolAccess,
}

impl ToolContext {
    /// A context for `workspace` with read-write access.
    pub fn new(workspace: impl Into<PathBuf>) -> Self {
        Self {
            workspace: workspace.into(),
            access: ToolAccess::ReadWrite,
        }
    }

    /// Sets the access.
    pub fn access(mut self, access: ToolAccess) -> Self {
        self.access = access;
        self
    }

    /// `raw` resolved inside the workspace (see [`confine`]).
    pub fn path(&self, raw: &str) -> Result<PathBuf, ToolError> {
        confine(&self.workspace, raw)
    }

    /// Refuses a write in read-only mode.
    pub fn check_write(&self, tool: &str) -> Result<(), ToolError> {
        if self.access == ToolAccess::ReadOnly {
            return Err(ToolError::ReadOnly {
                tool: tool.to_string(),
            });
        }
        Ok(())
    }

    /// `path` as the model should read it: relative to the workspace.
    pub fn shown(&self, path: &Path) -> String {
        paths::shown(&self.workspace, path)
    }
}

/// Parses a call's arguments into `T`, or says exactly what is wrong.
pub fn arguments<T: DeserializeOwned>(raw: &str) -> Result<T, ToolError> {
    let raw = if raw.trim().is_empty() { "{}" } else { raw };
    serde_json::from_str(raw).map_err(|e| ToolError::InvalidArguments(e.to_string()))
}

/// An action a model can call by name.
#[async_trait]
pub trait Tool: Send + Sync {
    /// Its name, description and argument schema, as the model sees them.
    fn spec(&self) -> ToolSpec;

    /// Whether it changes files (refused when read-only, held for approval with
    /// [`ToolAccess::ApproveWrites`]).
    fn writes(&self) -> bool {
        false
    }

    /// Runs the call with its raw JSON `arguments`; the text is what the model reads.
    async fn call(&self, ctx: &ToolContext, arguments: &str) -> Result<String, ToolError>;
}

/// The tools a Worker offers, besides the built-in `run_command` and `finish`. Each tool's
/// spec (name and schema) is taken once, when it is added.
#[derive(Clone, Default)]
pub struct Toolbox {
    tools: Vec<(ToolSpec, Arc<dyn Tool>)>,
}

impl std::fmt::Debug for Toolbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.tools.iter().map(|(spec, _)| &spec.name))
            .finish()
    }
}

impl Toolbox {
    /// No tools beyond the built-in ones.
    pub fn empty() -> Self {
        Self::default()
    }

    /// `read_file`, `write_file`, `edit_file`, `list_files` and `search`.
    pub fn files() -> Self {
        Self::empty()
            .with(Arc::new(ReadFile))
            .with(Arc::new(WriteFile))
            .with(Arc::new(EditFile))
            .with(Arc::new(ListFiles))
            .with(Arc::new(SearchFiles))
    }

    /// Adds `tool`, replacing one of the same name.
    pub fn with(mut self, tool: Arc<dyn Tool>) -> Self {
        let spec = tool.spec();
        self.tools.retain(|(s, _)| s.name != spec.name);
        self.tools.push((spec, tool));
        self
    }

    /// Whether it holds no tools beyond the built-in ones.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// The tool named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Tool>> {
        self.tools
            .iter()
            .find(|(spec, _)| spec.name == name)
            .map(|(_, tool)| tool.clone())
    }

    /// Every tool's spec, the built-in `run_command` and `finish` first.
    pub fn specs(&self) -> Vec<ToolSpec> {
        static BUILT_IN: LazyLock<[ToolSpec; 2]> = LazyLock::new(|| {
            [
                ToolSpec::for_type::<RunCommandArgs>(
                    RUN_COMMAND,
                    "Run one shell command in the task's directory and see its output.",
                ),
                ToolSpec::for_type::<FinishArgs>(
                    FINISH,
                    "Say the task is finished, with a short summary; its checks then run.",
                ),
            ]
        });
        let mut specs = BUILT_IN.to_vec();
        specs.extend(self.tools.iter().map(|(spec, _)| spec.clone()));
        specs
    }
}

/// The arguments of `run_command`.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct RunCommandArgs {
    /// The shell command.
    pub command: String,
}

/// The arguments of `finish`.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct FinishArgs {
    /// What was achieved.
    pub summary: String,
}
