//! `audit-log`: an `event` hook that appends one JSON line per finished tool call (a
//! `tool.state` event whose state is `completed` or `error`) to a file. The plugin writes
//! only where it is granted, so the operator grants the directory and names the file:
//!
//! ```toml
//! [hooks.audit-log]
//! enabled = true
//!
//! [plugins.audit-log]
//! filesystem = [{ path = "audit", access = "read-write" }]
//! settings = { path = "audit/tool-calls.jsonl" }
//! ```
//!
//! A relative `path` is taken from the workspace. Each line holds the time, the session,
//! the call, the tool, its arguments, how it ended (with the error, or the title and the
//! size of the output) and how long it took. A line that cannot be written is reported by
//! the host as `hook.failed`.

use std::io::Write;
use std::path::PathBuf;

use plugboard_sdk::hook::{Event, HookContext};
use plugboard_sdk::serde_json::{Value, json};

fn audit(ctx: &HookContext, event: &Event) -> Result<(), String> {
    // A `tool.state` event carries the tool part: `{ part_id, data: { call_id, tool, state, ... } }`.
    let data = &event.data["data"];
    let state = data["state"].as_str().unwrap_or_default();
    if state != "completed" && state != "error" {
        return Ok(());
    }
    let path: String = plugboard_sdk::host::setting("path")
        .map_err(|e| e.to_string())?
        .ok_or("no file to write to: set [plugins.audit-log.settings] path, and grant its directory read-write")?;
    let path = ctx.working_directory.join(PathBuf::from(path));
    let time = &data["time"];
    let duration_ms = match (time["start"].as_i64(), time["end"].as_i64()) {
        (Some(start), Some(end)) => Some(end - start),
        _ => None,
    };
    let line = json!({
        "timestamp": event.timestamp,
        "seq": event.seq,
        "session_id": ctx.session_id,
        "call_id": data["call_id"],
        "tool": data["tool"],
        "input": data["input"],
        "state": state,
        "error": data.get("error").cloned().unwrap_or(Value::Null),
        "title": data.get("title").cloned().unwrap_or(Value::Null),
        "output_bytes": data["output"].as_str().map(str::len),
        "duration_ms": duration_ms,
    });
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("cannot open `{}` for appending: {e} (is its directory granted read-write?)", path.display()))?;
    // One write per line, so that readers and concurrent writers never see half a line.
    file.write_all(format!("{line}\n").as_bytes()).map_err(|e| format!("cannot append to `{}`: {e}", path.display()))
}

plugboard_sdk::export_hooks! {
    on_event: audit,
    event_types: ["tool.state"],
}
