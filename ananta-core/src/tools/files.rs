//! `read_file`, `write_file` and `edit_file`.

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Tool, ToolContext, ToolError, arguments};
use crate::llm::ToolSpec;

/// Most bytes `read_file` reads of a file.
pub const MAX_READ_BYTES: u64 = 256 * 1024;
/// Most bytes `write_file` and `edit_file` write.
pub const MAX_WRITE_BYTES: usize = 1024 * 1024;

fn io(shown: &str, e: &std::io::Error) -> ToolError {
    if e.kind() == std::io::ErrorKind::NotFound {
        ToolError::NotFound {
            path: shown.to_string(),
        }
    } else {
        ToolError::Io(format!("{shown}: {e}"))
    }
}

/// Reads a file (or a range of its lines), with line numbers.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadFile;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReadArgs {
    /// The file, relative to the task's directory.
    path: String,
    /// First line to show (1-based, default 1).
    #[serde(default)]
    start_line: Option<usize>,
    /// Last line to show (default: the end).
    #[serde(default)]
    end_line: Option<usize>,
}

#[async_trait]
impl Tool for ReadFile {
    fn spec(&self) -> ToolSpec {
        ToolSpec::for_type::<ReadArgs>(
            "read_file",
            "Read a text file, or lines start_line..=end_line of it, with line numbers.",
        )
    }

    async fn call(&self, ctx: &ToolContext, raw: &str) -> Result<String, ToolError> {
        let args: ReadArgs = arguments(raw)?;
        let path = ctx.path(&args.path)?;
        let meta = tokio::fs::metadata(&path)
            .await
            .map_err(|e| io(&args.path, &e))?;
        if meta.is_dir() {
            return Err(ToolError::InvalidArguments(format!(
                "{} is a directory; use list_files",
                args.path
            )));
        }
        if meta.len() > MAX_READ_BYTES && args.start_line.is_none() && args.end_line.is_none() {
            return Err(ToolError::TooLarge {
                path: args.path,
                bytes: meta.len(),
                limit: MAX_READ_BYTES,
            });
        }
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| io(&args.path, &e))?;
        let text = String::from_utf8_lossy(&bytes);
        let start = args.start_line.unwrap_or(1).max(1);
        let end = args.end_line.unwrap_or(usize::MAX);
        if end < start {
            return Err(ToolError::InvalidArguments(format!(
                "end_line {end} is before start_line {start}"
            )));
        }
        let mut out = String::new();
        for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l)) {
            if n < start {
                continue;
            }
            if n > end || out.len() as u64 > MAX_READ_BYTES {
                break;
            }
            out.push_str(&format!("{n}\t{line}\n"));
        }
        if out.is_empty() && !text.is_empty() {
            return Err(ToolError::InvalidArguments(format!(
                "{} has {} lines; start_line {start} is past the end",
                args.path,
                text.lines().count()
            )));
        }
        Ok(out)
    }
}

/// Writes a whole file, creating its folders.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteFile;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WriteArgs {
    /// The file, relative to the task's directory.
    path: String,
    /// Its whole new content.
    content: String,
}

#[async_trait]
impl Tool for WriteFile {
    fn spec(&self) -> ToolSpec {
        ToolSpec::for_type::<WriteArgs>(
            "write_file",
            "Create or overwrite a text file with the given content (folders are created).",
        )
    }

    fn writes(&self) -> bool {
        true
    }

    async fn call(&self, ctx: &ToolContext, raw: &str) -> Result<String, ToolError> {
        let args: WriteArgs = arguments(raw)?;
        ctx.check_write("write_file")?;
        if args.content.len() > MAX_WRITE_BYTES {
            return Err(ToolError::TooLarge {
                path: args.path,
                bytes: args.content.len() as u64,
                limit: MAX_WRITE_BYTES as u64,
            });
        }
        let path = ctx.path(&args.path)?;
        if path.is_dir() {
            return Err(ToolError::InvalidArguments(format!(
                "{} is a directory",
                args.path
            )));
        }
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| io(&args.path, &e))?;
            // The folders just made must not have let a link lead outside.
            ctx.path(&args.path)?;
        }
        tokio::fs::write(&path, args.content.as_bytes())
            .await
            .map_err(|e| io(&args.path, &e))?;
        Ok(format!(
            "wrote {} bytes to {}",
            args.content.len(),
            ctx.shown(&path)
        ))
    }
}

/// Replaces one exact, unique piece of text in a file.
#[derive(Debug, Clone, Copy, Default)]
pub struct EditFile;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct EditArgs {
    /// The file, relative to the task's directory.
    path: String,
    /// The exact text to replace; it must occur exactly once.
    old: String,
    /// The text to put in its place.
    new: String,
}

#[async_trait]
impl Tool for EditFile {
    fn spec(&self) -> ToolSpec {
        ToolSpec::for_type::<EditArgs>(
            "edit_file",
            "Replace the exact text `old` (which must occur exactly once) with `new` in a file.",
        )
    }

    fn writes(&self) -> bool {
        true
    }

    async fn call(&self, ctx: &ToolContext, raw: &str) -> Result<String, ToolError> {
        let args: EditArgs = arguments(raw)?;
        ctx.check_write("edit_file")?;
        if args.old.is_empty() {
            return Err(ToolError::InvalidArguments(
                "`old` must not be empty (use write_file for a new file)".into(),
            ));
        }
        let path = ctx.path(&args.path)?;
        let meta = tokio::fs::metadata(&path)
            .await
            .map_err(|e| io(&args.path, &e))?;
        if meta.len() > MAX_WRITE_BYTES as u64 {
            return Err(ToolError::TooLarge {
                path: args.path,
                bytes: meta.len(),
                limit: MAX_WRITE_BYTES as u64,
            });
        }
        let text = tokio::fs::read_to_string(&path)
            .await
            .map_err(|e| io(&args.path, &e))?;
        let count = text.matches(&args.old).count();
        match count {
            0 => {
                return Err(ToolError::NoMatch { path: args.path });
            }
            1 => {}
            count => {
                return Err(ToolError::AmbiguousMatch {
                    path: args.path,
                    count,
                });
            }
        }
        let edited = text.replacen(&args.old, &args.new, 1);
        if edited.len() > MAX_WRITE_BYTES {
            return Err(ToolError::TooLarge {
                path: args.path,
                bytes: edited.len() as u64,
                limit: MAX_WRITE_BYTES as u64,
            });
        }
        tokio::fs::write(&path, edited.as_bytes())
            .await
            .map_err(|e| io(&args.path, &e))?;
        Ok(format!("edited {}", ctx.shown(&path)))
    }
}
