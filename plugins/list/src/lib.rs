//! The `list` tool: a directory as an indented tree.

use std::path::Path;

use plugboard_sdk::prelude::*;

const MAX_ENTRIES: usize = 1000;
/// Directories skipped unless listed explicitly.
const SKIPPED: &[&str] = &[".git", "node_modules", "target", "__pycache__", ".venv", "dist", "build", ".plugboard"];

#[args]
struct ListArgs {
    /// Directory to list, absolute or relative to the working directory. Default: the
    /// working directory.
    #[serde(default)]
    path: Option<String>,
    /// Glob patterns of names to leave out, e.g. `["*.log"]`.
    #[serde(default)]
    ignore: Vec<String>,
}

/// Lists the files and directories under a directory as an indented tree (directories end
/// with `/`), skipping `.git`, `node_modules`, `target` and similar. At most 1000 entries.
#[tool]
fn list(args: ListArgs, ctx: &Context) -> Result<Output, ToolError> {
    let path = ctx.resolve_path(args.path.as_deref().unwrap_or("."), Access::Read)?;
    let mut ignore = globset::GlobSetBuilder::new();
    for pattern in &args.ignore {
        ignore.add(globset::Glob::new(pattern).map_err(|e| ToolError::InvalidArguments(format!("field `ignore`: `{pattern}`: {e}")))?);
    }
    let ignore = ignore.build().map_err(|e| ToolError::InvalidArguments(format!("field `ignore`: {e}")))?;
    let metadata = std::fs::metadata(&path).map_err(|e| ToolError::from_io(e, &path))?;
    if !metadata.is_dir() {
        return Err(ToolError::failed(format!("`{}` is not a directory; use `read` for files", path.display())));
    }
    let mut out = format!("{}/\n", path.display());
    let mut count = 0;
    let truncated = walk(&path, 1, &ignore, &mut out, &mut count)?;
    if truncated {
        out.push_str(&format!("\n(listing stopped at {MAX_ENTRIES} entries; list a subdirectory to see more)\n"));
    }
    Ok(Output::text(out)
        .with_title(format!("{} ({count} entries)", path.display()))
        .with_metadata(json!({ "count": count, "truncated": truncated })))
}

/// Appends the entries of `dir`, directories first then files, each sorted by name.
/// Returns true when the entry cap was reached.
fn walk(dir: &Path, depth: usize, ignore: &globset::GlobSet, out: &mut String, count: &mut usize) -> Result<bool, ToolError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ToolError::from_io(e, dir))?;
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if ignore.is_match(&name) {
            continue;
        }
        match entry.file_type() {
            Ok(t) if t.is_dir() => {
                if !SKIPPED.contains(&name.as_str()) {
                    dirs.push(name);
                }
            }
            _ => files.push(name),
        }
    }
    dirs.sort();
    files.sort();
    let indent = "  ".repeat(depth);
    for name in dirs {
        if *count >= MAX_ENTRIES {
            return Ok(true);
        }
        *count += 1;
        out.push_str(&format!("{indent}{name}/\n"));
        if walk(&dir.join(&name), depth + 1, ignore, out, count)? {
            return Ok(true);
        }
    }
    for name in files {
        if *count >= MAX_ENTRIES {
            return Ok(true);
        }
        *count += 1;
        out.push_str(&format!("{indent}{name}\n"));
    }
    Ok(false)
}

export_tools!(list);
