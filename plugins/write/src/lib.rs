//! The `write` tool: writes a whole file.

use plugboard_sdk::prelude::*;

#[args]
struct WriteArgs {
    /// Path of the file, absolute or relative to the working directory.
    path: String,
    /// The complete new content of the file.
    content: String,
}

/// Writes `content` to the file at `path`, replacing it if it exists and creating it (and
/// its parent directories) if it does not. Prefer `edit` to change part of a file.
#[tool]
fn write(args: WriteArgs, ctx: &Context) -> Result<Output, ToolError> {
    let path = ctx.resolve_path(&args.path, Access::Write)?;
    if path.is_dir() {
        return Err(ToolError::failed(format!("`{}` is a directory", path.display())));
    }
    let existed = path.exists();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| ToolError::from_io(e, parent))?;
    }
    std::fs::write(&path, args.content.as_bytes()).map_err(|e| ToolError::from_io(e, &path))?;
    let lines = args.content.lines().count();
    let verb = if existed { "Overwrote" } else { "Created" };
    Ok(Output::text(format!("{verb} {} ({} bytes, {lines} lines)", path.display(), args.content.len()))
        .with_title(path.display().to_string())
        .with_metadata(json!({ "path": path, "bytes": args.content.len(), "created": !existed })))
}

export_tools!(write);
