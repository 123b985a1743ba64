//! The `grep` tool: regular-expression search through file contents.

use plugboard_sdk::prelude::*;

const DEFAULT_MAX_MATCHES: usize = 100;
const MAX_LINE_CHARS: usize = 500;
const MAX_FILE_BYTES: u64 = 10 << 20;
const SKIPPED: &[&str] = &[".git", "node_modules", "target", ".plugboard"];

#[args]
struct GrepArgs {
    /// Regular expression (Rust `regex` syntax) to search for.
    pattern: String,
    /// File or directory to search. Default: the working directory.
    #[serde(default)]
    path: Option<String>,
    /// Only search files whose name matches this glob, e.g. `*.rs` or `*.{ts,tsx}`.
    #[serde(default)]
    include: Option<String>,
    /// Match without regard to case. Default: false.
    #[serde(default)]
    case_insensitive: bool,
    /// Stop after this many matching lines. Default: 100.
    #[serde(default)]
    max_matches: Option<usize>,
}

/// Searches file contents with a regular expression and returns matching lines as
/// `path:line: text`, grouped by file. Binary files and `.git`, `node_modules` and `target`
/// are skipped; output stops after `max_matches` lines (default 100).
#[tool]
fn grep(args: GrepArgs, ctx: &Context) -> Result<Output, ToolError> {
    let root = ctx.resolve_path(args.path.as_deref().unwrap_or("."), Access::Read)?;
    let regex = regex::RegexBuilder::new(&args.pattern)
        .case_insensitive(args.case_insensitive)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| ToolError::InvalidArguments(format!("field `pattern`: {e}")))?;
    let include = match &args.include {
        Some(g) => Some(globset::Glob::new(g).map_err(|e| ToolError::InvalidArguments(format!("field `include`: {e}")))?.compile_matcher()),
        None => None,
    };
    std::fs::metadata(&root).map_err(|e| ToolError::from_io(e, &root))?;
    let max = args.max_matches.unwrap_or(DEFAULT_MAX_MATCHES).max(1);
    let mut out = String::new();
    let (mut matches, mut files) = (0usize, 0usize);
    let mut capped = false;
    let walker = walkdir::WalkDir::new(&root)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| !(e.depth() > 0 && e.file_type().is_dir() && SKIPPED.contains(&e.file_name().to_string_lossy().as_ref())));
    'files: for entry in walker.flatten() {
        if !entry.file_type().is_file() {
            continue;
        }
        if let Some(include) = &include
            && !include.is_match(entry.file_name())
        {
            continue;
        }
        if entry.metadata().map(|m| m.len() > MAX_FILE_BYTES).unwrap_or(true) {
            continue;
        }
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        if plugboard_sdk::fs::looks_binary(&bytes) {
            continue;
        }
        let text = String::from_utf8_lossy(&bytes);
        let mut file_header = false;
        for (number, line) in text.lines().enumerate() {
            if !regex.is_match(line) {
                continue;
            }
            if matches >= max {
                capped = true;
                break 'files;
            }
            if !file_header {
                if files > 0 {
                    out.push('\n');
                }
                files += 1;
                file_header = true;
            }
            matches += 1;
            let shown = match line.char_indices().nth(MAX_LINE_CHARS) {
                Some((cut, _)) => format!("{}…", &line[..cut]),
                None => line.to_string(),
            };
            out.push_str(&format!("{}:{}: {}\n", entry.path().display(), number + 1, shown));
        }
    }
    if matches == 0 {
        out = format!("No matches for `{}` under {}\n", args.pattern, root.display());
    } else if capped {
        out.push_str(&format!("\n(stopped at {max} matches; narrow the pattern or the path, or raise `max_matches`)\n"));
    }
    Ok(Output::text(out)
        .with_title(format!("{} ({matches} matches in {files} files)", args.pattern))
        .with_metadata(json!({ "matches": matches, "files": files, "truncated": capped })))
}

export_tools!(grep);
