//! Confining a path a model names to the task's workspace.

use std::path::{Component, Path, PathBuf};

use super::ToolError;

/// Resolves `raw` (relative to `workspace`) to a path inside `workspace`, or refuses it:
/// absolute paths, `..` that climbs out, and symbolic links leading out (of the path itself or
/// any parent) are [`ToolError::OutsideWorkspace`]. A path that does not exist yet (a file to
/// write) is checked through its nearest existing parent.
pub fn confine(workspace: &Path, raw: &str) -> Result<PathBuf, ToolError> {
    let outside = || ToolError::OutsideWorkspace {
        path: raw.to_string(),
    };
    if raw.contains('\0') {
        return Err(ToolError::InvalidArguments(format!(
            "path {raw:?} holds a NUL byte"
        )));
    }
    let relative = Path::new(raw.trim());
    if relative.is_absolute() || relative.has_root() {
        return Err(outside());
    }
    let root = workspace
        .canonicalize()
        .map_err(|e| ToolError::Io(format!("workspace {}: {e}", workspace.display())))?;
    // Lexically first: `a/../../b` climbs out whatever exists.
    let mut depth = 0usize;
    for part in relative.components() {
        match part {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => depth = depth.checked_sub(1).ok_or_else(outside)?,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err(outside()),
        }
    }
    let joined = root.join(relative);
    // Then through the file system: the longest existing prefix, with links resolved.
    let mut existing = joined.as_path();
    let mut rest = Vec::new();
    loop {
        if existing.symlink_metadata().is_ok() {
            break;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return Err(outside()),
        }
    }
    let resolved = existing
        .canonicalize()
        .map_err(|e| ToolError::Io(format!("{raw}: {e}")))?;
    if !resolved.starts_with(&root) {
        return Err(outside());
    }
    let mut full = resolved;
    for name in rest.into_iter().rev() {
        full.push(name);
    }
    Ok(full)
}

/// `path` relative to `workspace`, for what the model reads.
pub(super) fn shown(workspace: &Path, path: &Path) -> String {
    let root = workspace
        .canonicalize()
        .unwrap_or_else(|_| workspace.to_path_buf());
    path.strip_prefix(&root)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_refused_and_inner_paths_resolved() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(ws.join("src")).unwrap_or_else(|e| panic!("{e}"));
        let root = ws.canonicalize().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(confine(&ws, "src/a.rs").ok(), Some(root.join("src/a.rs")));
        assert_eq!(
            confine(&ws, "./src/../b.txt").ok(),
            Some(root.join("b.txt"))
        );
        assert_eq!(
            confine(&ws, "new/dir/c.txt").ok(),
            Some(root.join("new/dir/c.txt"))
        );
        for bad in ["../x", "src/../../x", "/etc/passwd", "/"] {
            assert!(
                matches!(confine(&ws, bad), Err(ToolError::OutsideWorkspace { .. })),
                "{bad}"
            );
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path(), ws.join("out"))
                .unwrap_or_else(|e| panic!("{e}"));
            std::os::unix::fs::symlink("/etc/passwd", ws.join("pw"))
                .unwrap_or_else(|e| panic!("{e}"));
            for bad in ["out/secret", "out", "pw"] {
                assert!(
                    matches!(confine(&ws, bad), Err(ToolError::OutsideWorkspace { .. })),
                    "{bad}"
                );
            }
        }
    }
}
