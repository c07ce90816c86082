//! `list_files` and `search`: walking the workspace the way git sees it (`.gitignore`
//! respected, hidden files skipped), with the `ignore` and `regex` crates.

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Tool, ToolContext, ToolError, arguments};
use crate::llm::ToolSpec;

/// Most entries `list_files` returns.
pub const MAX_LIST_ENTRIES: usize = 500;
/// Most matching lines `search` returns.
pub const MAX_SEARCH_MATCHES: usize = 200;
/// Files larger than this are skipped by `search`.
const MAX_SEARCH_FILE_BYTES: u64 = 1024 * 1024;

fn walker(root: &std::path::Path) -> ignore::Walk {
    ignore::WalkBuilder::new(root)
        .hidden(true)
        .git_ignore(true)
        .git_global(false)
        .git_exclude(true)
        .require_git(false)
        .follow_links(false)
        .sort_by_file_path(|a, b| a.cmp(b))
        .build()
}

/// Lists the files under a folder of the workspace.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListFiles;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    /// The folder, relative to the task's directory (default: the task's directory).
    #[serde(default)]
    path: Option<String>,
}

#[async_trait]
impl Tool for ListFiles {
    fn spec(&self) -> ToolSpec {
        ToolSpec::for_type::<ListArgs>(
            "list_files",
            "List the files under a folder (default: the task's directory), skipping ignored ones.",
        )
    }

    async fn call(&self, ctx: &ToolContext, raw: &str) -> Result<String, ToolError> {
        let args: ListArgs = arguments(raw)?;
        let shown_arg = args.path.unwrap_or_else(|| ".".into());
        let root = ctx.path(&shown_arg)?;
        if !root.is_dir() {
            return Err(ToolError::NotFound { path: shown_arg });
        }
        let ctx = ctx.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = String::new();
            let mut count = 0usize;
            for entry in walker(&root).flatten() {
                if entry.depth() == 0 {
                    continue;
                }
                if count == MAX_LIST_ENTRIES {
                    out.push_str(&format!(
                        "… more than {MAX_LIST_ENTRIES} entries; list a subfolder\n"
                    ));
                    break;
                }
                let mut line = ctx.shown(entry.path());
                if entry.file_type().is_some_and(|t| t.is_dir()) {
                    line.push('/');
                }
                out.push_str(&line);
                out.push('\n');
                count += 1;
            }
            if out.is_empty() {
                out.push_str("(no files)\n");
            }
            Ok(out)
        })
        .await
        .map_err(|e| ToolError::Io(e.to_string()))?
    }
}

/// Searches the workspace's files for a regular expression.
#[derive(Debug, Clone, Copy, Default)]
pub struct SearchFiles;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SearchArgs {
    /// A regular expression (Rust `regex` syntax).
    pattern: String,
    /// The folder to search, relative to the task's directory (default: all of it).
    #[serde(default)]
    path: Option<String>,
}

#[async_trait]
impl Tool for SearchFiles {
    fn spec(&self) -> ToolSpec {
        ToolSpec::for_type::<SearchArgs>(
            "search",
            "Search the files for a regular expression; answers path:line: text for each match.",
        )
    }

    async fn call(&self, ctx: &ToolContext, raw: &str) -> Result<String, ToolError> {
        let args: SearchArgs = arguments(raw)?;
        let pattern = regex::RegexBuilder::new(&args.pattern)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| ToolError::InvalidArguments(format!("pattern: {e}")))?;
        let shown_arg = args.path.unwrap_or_else(|| ".".into());
        let root = ctx.path(&shown_arg)?;
        if !root.exists() {
            return Err(ToolError::NotFound { path: shown_arg });
        }
        let ctx = ctx.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = String::new();
            let mut found = 0usize;
            'files: for entry in walker(&root).flatten() {
                if !entry.file_type().is_some_and(|t| t.is_file())
                    || entry.metadata().map(|m| m.len()).unwrap_or(0) > MAX_SEARCH_FILE_BYTES
                {
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(entry.path()) else {
                    continue; // binary or unreadable
                };
                for (n, line) in text.lines().enumerate() {
                    if pattern.is_match(line) {
                        if found == MAX_SEARCH_MATCHES {
                            out.push_str(&format!(
                                "… more than {MAX_SEARCH_MATCHES} matches; narrow the pattern\n"
                            ));
                            break 'files;
                        }
                        let line: String = line.chars().take(300).collect();
                        out.push_str(&format!("{}:{}: {line}\n", ctx.shown(entry.path()), n + 1));
                        found += 1;
                    }
                }
            }
            if out.is_empty() {
                out.push_str("(no matches)\n");
            }
            Ok(out)
        })
        .await
        .map_err(|e| ToolError::Io(e.to_string()))?
    }
}
