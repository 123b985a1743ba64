//! A plugin that tries everything a sandbox must stop. It bypasses the SDK's own path
//! checks and talks to WASI directly, so the tests see what the host enforces.

use plugboard_sdk::prelude::*;

#[args]
struct Nothing {}

#[args]
struct PathArg {
    /// A path, used as given (relative paths are joined to the working directory).
    path: String,
}

#[args]
struct UrlArg {
    /// A URL.
    url: String,
}

#[args]
struct NameArg {
    /// An environment variable.
    name: String,
}

#[args]
struct SizeArg {
    /// A size in bytes.
    bytes: usize,
}

#[args]
struct CommandArg {
    /// A command line.
    command: String,
}

fn raw_path(ctx: &Context, path: &str) -> std::path::PathBuf {
    ctx.working_directory.join(path)
}

/// Loops forever.
#[tool]
fn spin(_: Nothing) -> Result<Output, ToolError> {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

/// Allocates memory until something stops it.
#[tool]
fn grow_memory(_: Nothing) -> Result<Output, ToolError> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 4 << 20]);
        std::hint::black_box(&hoard);
    }
}

/// Reads a file with std::fs, without the SDK's checks.
#[tool]
fn read_raw(args: PathArg, ctx: &Context) -> Result<Output, ToolError> {
    let path = raw_path(ctx, &args.path);
    std::fs::read_to_string(&path)
        .map(Output::text)
        .map_err(|e| ToolError::failed(format!("read {}: {e} ({:?})", path.display(), e.kind())))
}

/// Writes a file with std::fs, without the SDK's checks.
#[tool]
fn write_raw(args: PathArg, ctx: &Context) -> Result<Output, ToolError> {
    let path = raw_path(ctx, &args.path);
    std::fs::write(&path, b"pwned").map(|_| Output::text("written")).map_err(|e| ToolError::from_io(e, &path))
}

/// Sends a GET request.
#[tool]
fn http_get(args: UrlArg) -> Result<Output, ToolError> {
    let response = plugboard_sdk::http::Request::get(&args.url)?.send()?;
    let status = response.status();
    let (body, _) = response.text(1 << 20)?;
    Ok(Output::text(format!("{status} {body}")))
}

/// Reports an environment variable, or `absent`.
#[tool]
fn env_var(args: NameArg) -> Result<Output, ToolError> {
    Ok(Output::text(std::env::var(&args.name).unwrap_or_else(|_| "absent".into())))
}

/// Panics.
#[tool]
fn panic(_: Nothing) -> Result<Output, ToolError> {
    panic!("hostile plugin panicked on purpose");
}

/// Returns `bytes` bytes of output.
#[tool]
fn big_output(args: SizeArg) -> Result<Output, ToolError> {
    Ok(Output::text("x".repeat(args.bytes)))
}

/// Sends `bytes` of progress output, in pieces of 64 KiB.
#[tool]
fn flood_progress(args: SizeArg, ctx: &Context) -> Result<Output, ToolError> {
    let piece = "p".repeat(64 * 1024);
    let mut sent = 0;
    while sent < args.bytes {
        ctx.progress(&piece);
        sent += piece.len();
    }
    Ok(Output::text(format!("sent {sent}")))
}

/// Runs a command through the process capability.
#[tool]
fn run(args: CommandArg) -> Result<Output, ToolError> {
    let out = plugboard_sdk::process::run(&args.command, "", None)?;
    Ok(Output::text(format!("exit={:?}\n{}{}", out.exit_code, out.stdout, out.stderr)))
}

export_tools!(spin, grow_memory, read_raw, write_raw, http_get, env_var, panic, big_output, flood_progress, run);
