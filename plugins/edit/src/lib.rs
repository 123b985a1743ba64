//! The `edit` tool: exact string replacement in a file.

use plugboard_sdk::prelude::*;

#[args]
struct EditArgs {
    /// Path of the file, absolute or relative to the working directory.
    path: String,
    /// The exact text to replace, including whitespace and indentation.
    old_string: String,
    /// The text to put in its place (must differ from `old_string`).
    new_string: String,
    /// Replace every occurrence instead of requiring exactly one. Default: false.
    #[serde(default)]
    replace_all: bool,
}

/// Replaces exact text in a file. `old_string` must occur exactly once unless
/// `replace_all` is true; include surrounding lines to make it unique. An empty
/// `old_string` creates the file with `new_string` when it does not exist yet.
#[tool]
fn edit(args: EditArgs, ctx: &Context) -> Result<Output, ToolError> {
    let path = ctx.resolve_path(&args.path, Access::Write)?;
    if args.old_string == args.new_string {
        return Err(ToolError::InvalidArguments("`old_string` and `new_string` are identical; there is nothing to change".into()));
    }
    if args.old_string.is_empty() {
        if path.exists() {
            return Err(ToolError::InvalidArguments(format!(
                "`old_string` is empty but `{}` exists; give the text to replace, or use `write` to replace the whole file",
                path.display()
            )));
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| ToolError::from_io(e, parent))?;
        }
        std::fs::write(&path, &args.new_string).map_err(|e| ToolError::from_io(e, &path))?;
        return Ok(Output::text(format!("Created {}", path.display())).with_title(path.display().to_string()));
    }
    let bytes = std::fs::read(&path).map_err(|e| ToolError::from_io(e, &path))?;
    let content = String::from_utf8(bytes).map_err(|_| ToolError::failed(format!("`{}` is not UTF-8 text", path.display())))?;
    let count = content.matches(&args.old_string).count();
    let updated = match count {
        0 => {
            return Err(ToolError::failed(format!(
                "`old_string` was not found in `{}`; read the file again and copy the text exactly, whitespace included",
                path.display()
            )));
        }
        1 => content.replacen(&args.old_string, &args.new_string, 1),
        n if args.replace_all => {
            let _ = n;
            content.replace(&args.old_string, &args.new_string)
        }
        n => {
            return Err(ToolError::failed(format!(
                "`old_string` occurs {n} times in `{}`; add surrounding lines to make it unique, or set `replace_all` to replace them all",
                path.display()
            )));
        }
    };
    std::fs::write(&path, &updated).map_err(|e| ToolError::from_io(e, &path))?;
    let first_line = content[..content.find(&args.old_string).unwrap_or(0)].lines().count().max(1);
    let noun = if count == 1 { "occurrence" } else { "occurrences" };
    Ok(Output::text(format!("Replaced {count} {noun} in {} (first at line {first_line})", path.display()))
        .with_title(path.display().to_string())
        .with_metadata(json!({ "path": path, "replacements": count, "line": first_line })))
}

export_tools!(edit);
