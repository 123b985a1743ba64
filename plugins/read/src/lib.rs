//! The `read` tool: a text file with numbered lines, a window at a time.

use plugboard_sdk::prelude::*;

const DEFAULT_LIMIT: usize = 2000;
const MAX_LINE_CHARS: usize = 2000;

#[args]
struct ReadArgs {
    /// Path of the file, absolute or relative to the working directory.
    path: String,
    /// Line number to start reading from (1-based). Default: 1.
    offset: Option<usize>,
    /// Maximum number of lines to return. Default: 2000.
    limit: Option<usize>,
}

/// Reads a text file and returns its lines numbered from 1, like `cat -n`. Use `offset` and
/// `limit` to read a long file a window at a time. Lines longer than 2000 characters are
/// cut. Binary files are refused.
#[tool]
fn read(args: ReadArgs, ctx: &Context) -> Result<Output, ToolError> {
    let path = ctx.resolve_path(&args.path, Access::Read)?;
    let metadata = std::fs::metadata(&path).map_err(|e| ToolError::from_io(e, &path))?;
    if metadata.is_dir() {
        return Err(ToolError::failed(format!("`{}` is a directory; use the `list` tool to see its entries", path.display())));
    }
    let bytes = std::fs::read(&path).map_err(|e| ToolError::from_io(e, &path))?;
    if plugboard_sdk::fs::looks_binary(&bytes) {
        return Err(ToolError::failed(format!(
            "`{}` is a binary file ({} bytes); read shows text files only",
            path.display(),
            bytes.len()
        )));
    }
    let text = String::from_utf8_lossy(&bytes);
    let offset = args.offset.unwrap_or(1);
    if offset == 0 {
        return Err(ToolError::InvalidArguments("field `offset`: line numbers start at 1".into()));
    }
    let limit = args.limit.unwrap_or(DEFAULT_LIMIT);
    let total = text.lines().count();
    if total == 0 {
        return Ok(Output::text("(the file is empty)").with_title(format!("{} (empty)", path.display())));
    }
    if offset > total {
        return Err(ToolError::failed(format!("`offset` {offset} is past the end of the file ({total} lines)")));
    }
    let mut out = String::with_capacity(text.len().min(1 << 20) + total * 8);
    let mut last = offset - 1;
    for (index, line) in text.lines().enumerate().skip(offset - 1).take(limit) {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let shown = match line.char_indices().nth(MAX_LINE_CHARS) {
            Some((cut, _)) => format!("{}… (line cut at {MAX_LINE_CHARS} characters)", &line[..cut]),
            None => line.to_string(),
        };
        out.push_str(&format!("{:>6}\t{shown}\n", index + 1));
        last = index + 1;
    }
    if last < total {
        out.push_str(&format!("\n(showing lines {offset}-{last} of {total}; use offset={} to read more)\n", last + 1));
    }
    Ok(Output::text(out)
        .with_title(format!("{} (lines {offset}-{last} of {total})", path.display()))
        .with_metadata(json!({ "path": path, "lines": total, "from": offset, "to": last })))
}

export_tools!(read);
