//! The `glob` tool: files whose paths match a glob pattern, newest first.

use std::time::SystemTime;

use plugboard_sdk::prelude::*;

const MAX_RESULTS: usize = 100;
const SKIPPED: &[&str] = &[".git", "node_modules", "target", ".plugboard"];

#[args]
struct GlobArgs {
    /// Glob pattern relative to `path`, e.g. `**/*.rs` or `src/**/mod.rs`.
    pattern: String,
    /// Directory to search. Default: the working directory.
    #[serde(default)]
    path: Option<String>,
}

/// Finds files whose path (relative to `path`) matches a glob pattern such as `**/*.rs`,
/// most recently modified first. At most 100 results; `.git`, `node_modules` and `target`
/// are skipped.
#[tool]
fn glob(args: GlobArgs, ctx: &Context) -> Result<Output, ToolError> {
    let root = ctx.resolve_path(args.path.as_deref().unwrap_or("."), Access::Read)?;
    let matcher = globset::GlobBuilder::new(&args.pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| ToolError::InvalidArguments(format!("field `pattern`: {e}")))?
        .compile_matcher();
    std::fs::metadata(&root).map_err(|e| ToolError::from_io(e, &root))?;
    let mut found: Vec<(SystemTime, String)> = Vec::new();
    let walker = walkdir::WalkDir::new(&root)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| !(e.depth() > 0 && e.file_type().is_dir() && SKIPPED.contains(&e.file_name().to_string_lossy().as_ref())));
    for entry in walker.flatten() {
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(relative) = entry.path().strip_prefix(&root) else {
            continue;
        };
        if matcher.is_match(relative) {
            let modified = entry.metadata().ok().and_then(|m| m.modified().ok()).unwrap_or(SystemTime::UNIX_EPOCH);
            found.push((modified, entry.path().display().to_string()));
        }
    }
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let total = found.len();
    let mut out: String = found.iter().take(MAX_RESULTS).map(|(_, p)| format!("{p}\n")).collect();
    if total == 0 {
        out = format!("No files match `{}` under {}\n", args.pattern, root.display());
    } else if total > MAX_RESULTS {
        out.push_str(&format!("\n(showing {MAX_RESULTS} of {total} matches; use a more specific pattern)\n"));
    }
    Ok(Output::text(out).with_title(format!("{} ({total} files)", args.pattern)).with_metadata(json!({ "count": total })))
}

export_tools!(glob);
