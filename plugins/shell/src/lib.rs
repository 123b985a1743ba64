//! The `shell` tool: a command line run by the host under the process grant, confined by
//! the kernel to the plugin's filesystem grants.

use plugboard_sdk::prelude::*;

#[args]
struct ShellArgs {
    /// The command line, run with `/bin/sh -c`.
    command: String,
    /// Working directory relative to the workspace. Default: the workspace.
    #[serde(default)]
    workdir: Option<String>,
    /// Time limit in milliseconds (capped by the plugin's limit). Default: the plugin's limit.
    #[serde(default)]
    timeout_ms: Option<u32>,
    /// A few words saying what the command does, shown to the user.
    #[serde(default)]
    description: Option<String>,
}

/// Runs a shell command in the workspace and returns its exit code and output (stdout,
/// then stderr). Only command lines the operator granted can run, and they can write only
/// inside the plugin's writable grants.
#[tool]
fn shell(args: ShellArgs, _ctx: &Context) -> Result<Output, ToolError> {
    let result = plugboard_sdk::process::run(&args.command, args.workdir.as_deref().unwrap_or(""), args.timeout_ms)?;
    let mut text = String::new();
    text.push_str(&result.stdout);
    if !result.stderr.is_empty() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&result.stderr);
    }
    if result.truncated {
        text.push_str("\n(output cut at the plugin's output limit)");
    }
    let status = match (result.exit_code, result.timed_out) {
        (_, true) => "killed at its time limit".to_string(),
        (Some(code), _) => format!("exit code {code}"),
        (None, false) => "killed by a signal".to_string(),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!("({status})"));
    Ok(Output::text(text)
        .with_title(args.description.unwrap_or_else(|| args.command.clone()))
        .with_metadata(json!({ "exit_code": result.exit_code, "timed_out": result.timed_out, "truncated": result.truncated })))
}

export_tools!(shell);
