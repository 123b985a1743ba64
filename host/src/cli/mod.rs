//! The `plugboard` command.

pub mod plugin_test;
mod publish;
mod remote;
mod run;
pub mod scaffold;
mod trust;
pub mod wit;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use serde_json::json;

use crate::runtime::{CallContext, HostOptions, LoadedPlugin, PluginHost};

/// Plugboard: a host for AI-agent plugins, each a sandboxed WebAssembly component.
#[derive(Debug, Parser)]
#[command(name = "plugboard", version, about)]
pub struct Cli {
    /// The workspace directory (default: the current directory).
    #[arg(long, global = true, env = "WORKSPACE_DIR")]
    pub workspace: Option<PathBuf>,
    /// The configuration file (default: plugboard.toml in the workspace, when present).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// An extra directory of plugins (.wasm files); may be repeated.
    #[arg(long = "plugins", global = true, value_name = "DIR")]
    pub plugin_dirs: Vec<PathBuf>,
    /// Where compiled plugins are cached (default: the user's cache directory).
    #[arg(long, global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Where sessions are stored (plugboard.db); default: the user's data directory.
    #[arg(long, global = true, env = "PLUGBOARD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log level: debug, info, warn or error (default: info for `serve`, warn otherwise).
    #[arg(long, global = true, env = "LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Log format: json, or pretty (default: pretty on a terminal, json otherwise).
    #[arg(long, global = true, env = "LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tools: list them, or run one.
    #[command(subcommand)]
    Tool(ToolCommand),
    /// Plugins: list them, or inspect one.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Run one prompt in the workspace: streams the answer and each tool call.
    Run {
        /// The prompt.
        prompt: String,
        /// The model, as provider/model.
        #[arg(long)]
        model: Option<String>,
        /// The agent: build (every tool, per the rules) or plan (read-only), or one of yours.
        #[arg(long, default_value = "build")]
        agent: String,
        /// Continue this session.
        #[arg(long)]
        session: Option<String>,
        /// Allow every permission question (for scripts).
        #[arg(long)]
        yes: bool,
        /// Stream the answer into a pipe or a file as it arrives (a terminal always gets it
        /// streamed). Without it, piped output gets each message once it is complete, and
        /// nothing of a failed attempt that was retried.
        #[arg(long)]
        stream: bool,
    },
    /// Sessions: list them, or show one.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Serve the HTTP API: sessions driven over HTTP, followed over Server-Sent Events.
    Serve(ServeArgs),
    /// Serve the tools to an MCP client over standard input and output (for Claude Code,
    /// Cursor or any MCP client that starts its servers as commands). Plugins and the
    /// configuration reload when their files change, and the client is told.
    Mcp {
        /// The agent whose permission rules judge the calls (default: `[mcp] agent`, else
        /// build).
        #[arg(long)]
        agent: Option<String>,
    },
    /// Review the workspace's own plugboard.toml and .plugboard/plugins/, and trust them:
    /// until then (and after any later change) they are not applied.
    Trust {
        /// Only show what is trusted and what changed; exit 1 when something is not trusted.
        #[arg(long, conflicts_with = "revoke")]
        check: bool,
        /// Stop trusting the workspace.
        #[arg(long)]
        revoke: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every model of the loaded providers, as provider/model.
    Models {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The language of a new plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A Rust crate on plugboard-sdk.
    Rust,
    /// A Python project built with componentize-py.
    Python,
    /// A JavaScript project built with componentize-js.
    Js,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for log collectors).
    Json,
    /// Human-readable lines.
    Pretty,
}

/// `plugboard serve`: flags win over the environment, which wins over `[server]` and
/// `[sessions]` in `plugboard.toml`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The address to listen on (default 127.0.0.1).
    #[arg(long, env = "PLUGBOARD_HOST")]
    pub host: Option<std::net::IpAddr>,
    /// The port (default 3003; 0 picks a free one).
    #[arg(long, env = "PORT")]
    pub port: Option<u16>,
    /// Listen on a non-loopback address without a shared secret.
    #[arg(long)]
    pub insecure: bool,
    /// Seconds one activity may run before it is stopped.
    #[arg(long, env = "SESSION_TIMEOUT")]
    pub session_timeout: Option<u64>,
    /// Sessions running at once; others wait with status `queued`.
    #[arg(long, env = "MAX_CONCURRENT_SESSIONS")]
    pub max_concurrent_sessions: Option<usize>,
    /// Do not reload plugins and the configuration when their files change (reload on
    /// request only: `plugboard plugin reload`, `POST /plugins/reload`, `POST /config/reload`).
    #[arg(long)]
    pub no_watch: bool,
}

/// `plugboard tool ...`
#[derive(Debug, Subcommand)]
pub enum ToolCommand {
    /// Every tool with its plugin, description and parameters.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run one call of a tool under the capability policy and print its output.
    Call {
        /// The tool's name.
        name: String,
        /// The arguments, as a JSON object.
        #[arg(default_value = "{}")]
        arguments: String,
        /// Print the whole result (text, title, metadata) as JSON.
        #[arg(long)]
        json: bool,
        /// Run the `tool.before` and `tool.after` hooks in force around the call, and record
        /// it in the event log (so `event` hooks such as `audit-log` see it).
        #[arg(long)]
        with_hooks: bool,
    },
}

/// `plugboard session ...`
#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Sessions, newest first: id, last change, status, agent, model, cost, workspace, title.
    List {
        /// Only the sessions of this workspace directory.
        #[arg(long, value_name = "DIR")]
        workspace: Option<PathBuf>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Skip this many (the next page).
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A session's history, readable.
    Show {
        /// The session id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Summarize the older part of a session's conversation, so that its model sees the
    /// summary in its place from now on (the history stays whole). Runs after what is
    /// queued in the session.
    Compact {
        /// The session id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a session with its messages and events (what it is doing stops first).
    Delete {
        /// The session id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a session as one JSON document (its messages, parts, inbox, rules and events)
    /// to stdout, for `session import` here or in another data dir.
    Export {
        /// The session id.
        id: String,
    },
    /// Store a session exported with `session export` (`-` reads stdin). It is idle, and
    /// takes prompts as any session.
    Import {
        /// The export file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Undo a session's turns after one of its messages: the files they changed are put
    /// back as they were, and they are marked reverted (`session show` lists message ids).
    Revert {
        /// The session id.
        id: String,
        /// The message to go back to.
        #[arg(long, value_name = "MESSAGE")]
        to: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start a new session from one of a session's messages: copies of the messages up to
    /// and including it, same agent, model and workspace.
    Fork {
        /// The session id.
        id: String,
        /// The last message to copy (all of them by default).
        #[arg(long, value_name = "MESSAGE")]
        message: Option<String>,
        /// The new session's id (a new one by default).
        #[arg(long = "as", value_name = "ID")]
        new_id: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

impl SessionCommand {
    /// Whether it needs the plugins (it runs through the agent runtime); only reading the
    /// store does not.
    fn needs_host(&self) -> bool {
        !matches!(self, SessionCommand::List { .. } | SessionCommand::Show { .. } | SessionCommand::Export { .. })
    }
}

/// `plugboard plugin ...`
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Every loaded plugin, and those that failed to load.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create a new tool plugin (or, with `--hook` or `--provider`, a hook or provider
    /// plugin), ready to build and to test with `plugboard plugin test`.
    New {
        /// The plugin's name (lowercase letters, digits and `-`).
        name: String,
        /// A hook plugin (`tool.before` and `tool.after` examples) instead of a tool.
        #[arg(long, conflicts_with = "provider")]
        hook: bool,
        /// A provider plugin (an adapter for an OpenAI-compatible Chat Completions API, with
        /// recorded answers to test it against) instead of a tool.
        #[arg(long)]
        provider: bool,
        /// The language: `rust` (a crate on plugboard-sdk), `python` (a project built with
        /// componentize-py) or `js` (a project built with componentize-js).
        #[arg(long, value_enum, default_value_t = Lang::Rust)]
        lang: Lang,
        /// The directory to create it in (default: the current directory).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Depend on this local copy of `plugboard-sdk` (the `sdk` folder of a Plugboard
        /// checkout) instead of its release on crates.io.
        #[arg(long, value_name = "DIR")]
        sdk_path: Option<PathBuf>,
    },
    /// Check a plugin against what its author expects: the tool calls and hook decisions of
    /// a `plugboard-test.toml` (see `plugboard plugin new`), run in a fresh workspace. Exits
    /// 1 when a case fails, saying what differed.
    Test {
        /// The spec (default: `plugboard-test.toml` in the current directory).
        spec: Option<PathBuf>,
        /// Do not run the spec's `build` command first.
        #[arg(long)]
        no_build: bool,
    },
    /// Cargo's runner for a plugin crate's tests (`[target.wasm32-wasip2] runner` in its
    /// `.cargo/config.toml`): runs the test binary sandboxed, then, for the library's unit
    /// tests, the crate's `plugboard-test.toml`.
    TestRunner {
        /// The test binary cargo built.
        binary: PathBuf,
        /// The test harness's arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Reload plugins on a running server (`plugboard serve`): every changed plugin file, or
    /// the plugin ID. Prints what changed; exits 1 when a new version failed to load (the old
    /// one keeps serving).
    Reload {
        /// The plugin to reload (default: all that changed).
        id: Option<String>,
        /// The server's address.
        #[arg(long, env = "PLUGBOARD_URL", default_value = "http://127.0.0.1:3003", value_name = "URL")]
        server: String,
        /// Print the server's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Write the WIT package (every line of releases this host serves) into DIR, for
    /// toolchains other than the SDK: `jco componentize`, `componentize-py`, `wit-bindgen`.
    Wit {
        /// Where to write it (default: `./wit`).
        #[arg(long, value_name = "DIR", default_value = "wit")]
        dir: PathBuf,
    },
    /// Push a plugin component to an OCI registry as a wasm artifact (an `application/wasm`
    /// layer, as `wkg` writes it). Prints the digest to install or sign.
    Push {
        /// The component (`.wasm`).
        file: PathBuf,
        /// Where: `oci://registry/repository:tag`.
        reference: String,
        /// Also sign it with this private key (see `plugin sign`).
        #[arg(long, value_name = "KEY")]
        sign: Option<PathBuf>,
    },
    /// Sign a pushed plugin with a private key (cosign-compatible: `cosign verify --key`
    /// accepts it); the signature goes to the registry beside the plugin.
    Sign {
        /// The plugin: `oci://registry/repository:tag` or `…@sha256:…`.
        reference: String,
        /// The private key (PEM; `plugboard plugin keygen` writes one).
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
    },
    /// Install a plugin from an OCI registry (by tag or digest) into a plugins directory, and
    /// pin it by digest, with its signatures, in that directory's `plugboard.lock`. With
    /// `--locked`, install exactly what the lock file pins.
    Install {
        /// The plugin: `oci://registry/repository:tag` or `…@sha256:…`.
        #[arg(required_unless_present = "locked")]
        reference: Option<String>,
        /// The plugins directory (default: the user's; `.plugboard/plugins` for a workspace,
        /// whose plugins load only once `plugboard trust` trusts them).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// The file name to install it as (default: the repository's last part).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Install every plugin the directory's lock file pins, by digest.
        #[arg(long, conflicts_with_all = ["reference", "name"])]
        locked: bool,
        /// Require a signature by this public key (besides `[provenance] trusted_keys`).
        #[arg(long = "key", value_name = "PUBLIC_KEY")]
        keys: Vec<PathBuf>,
    },
    /// Create a key pair to sign plugins with: NAME.key (private, PKCS#8 PEM, mode 0600) and
    /// NAME.pub (to list in `[provenance] trusted_keys` or give to `cosign verify --key`).
    Keygen {
        /// Where to write them.
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
        /// The files' name.
        #[arg(long, default_value = "plugboard")]
        name: String,
    },
    /// A plugin's manifest, tools, and requested vs granted capabilities.
    Inspect {
        /// A `.wasm` file, or the id of a loaded plugin.
        plugin: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the command line and returns the process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.command.only_prints() {
        end_quietly_on_a_closed_pipe();
    }
    let default_level = if matches!(cli.command, Command::Serve(_)) { "info" } else { "warn" };
    if let Err(e) = init_logging(cli.log_level.as_deref().unwrap_or(default_level), cli.log_format) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

impl Command {
    /// Whether the command only reads and prints (a listing): its output may go to a pipe
    /// that closes early, as `session list | head` does.
    fn only_prints(&self) -> bool {
        matches!(
            self,
            Command::Session(_)
                | Command::Models { .. }
                | Command::Tool(ToolCommand::List { .. })
                | Command::Plugin(PluginCommand::List { .. } | PluginCommand::Inspect { .. })
        )
    }
}

/// Restores the default action of `SIGPIPE` (Rust ignores it, so printing to a closed pipe
/// panics): the command ends quietly when the reader has gone, as `ls | head` does. Only
/// for listings: commands that run tools write to pipes of their own children.
fn end_quietly_on_a_closed_pipe() {
    // SAFETY: called first thing on the main thread, before any other thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

fn init_logging(level: &str, format: Option<LogFormat>) -> Result<(), String> {
    let level = level.to_ascii_lowercase();
    if !["trace", "debug", "info", "warn", "error"].contains(&level.as_str()) {
        return Err(format!("invalid LOG_LEVEL `{level}`: use debug, info, warn or error"));
    }
    let filter = tracing_subscriber::EnvFilter::try_new(format!("{level},cranelift=warn,wasmtime=warn,hyper=warn,h2=warn"))
        .map_err(|e| format!("invalid log level: {e}"))?;
    let format = format.unwrap_or_else(|| {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() { LogFormat::Pretty } else { LogFormat::Json }
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    Ok(())
}

/// The longest a one-off command waits for the MCP servers to start.
const MCP_SETTLE: std::time::Duration = std::time::Duration::from_secs(120);

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Plugin(PluginCommand::New { name, dir, hook, provider, sdk_path: None, lang: lang @ (Lang::Python | Lang::Js) }) =
        &cli.command
    {
        use crate::cli::scaffold;
        let parent = dir.clone().unwrap_or_else(|| PathBuf::from("."));
        let created = match (lang, hook, provider) {
            (Lang::Python, true, _) => scaffold::new_python_hook_plugin(name, &parent)?,
            (Lang::Python, _, true) => scaffold::new_python_provider_plugin(name, &parent)?,
            (Lang::Python, ..) => scaffold::new_python_tool_plugin(name, &parent)?,
            (_, true, _) => scaffold::new_js_hook_plugin(name, &parent)?,
            (_, _, true) => scaffold::new_js_provider_plugin(name, &parent)?,
            _ => scaffold::new_js_tool_plugin(name, &parent)?,
        };
        let (needs, first) = if *lang == Lang::Python {
            ("componentize-py installed: pip install componentize-py", "")
        } else {
            ("Node.js and npm", "npm install && ")
        };
        println!("Created {}. Next (with {needs}):", created.display());
        println!(
            "  cd {} && {first}plugboard plugin test     (builds {}.wasm, then runs plugboard-test.toml)",
            created.display(),
            name.replace('-', "_")
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Plugin(PluginCommand::New { lang: lang @ (Lang::Python | Lang::Js), .. }) = &cli.command {
        let lang = if *lang == Lang::Python { "python" } else { "js" };
        anyhow::bail!("--sdk-path does not go with --lang {lang}: it names plugboard-sdk, for Rust crates");
    }
    if let Command::Plugin(PluginCommand::New { name, dir, hook, provider, sdk_path, lang: Lang::Rust }) = &cli.command {
        use crate::cli::scaffold::{self, SdkSource};
        let parent = dir.clone().unwrap_or_else(|| PathBuf::from("."));
        let file = name.replace('-', "_");
        let sdk = sdk_path.clone().map_or_else(SdkSource::published, SdkSource::Path);
        let created = match (hook, provider) {
            (true, _) => scaffold::new_hook_plugin(name, &parent, &sdk)?,
            (_, true) => scaffold::new_provider_plugin(name, &parent, &sdk)?,
            _ => scaffold::new_tool_plugin(name, &parent, &sdk)?,
        };
        println!("Created {}. Next:", created.display());
        println!("  cd {} && cargo build --release", created.display());
        println!("  cargo test        (needs `plugboard` on the PATH: unit tests, then plugboard-test.toml)");
        if *hook || *provider {
            println!("  plugboard plugin inspect target/wasm32-wasip2/release/{file}.wasm");
            println!("  copy the .wasm into .plugboard/plugins/ of a workspace: `plugboard serve` picks it up");
        } else {
            println!("  plugboard tool call --plugins target/wasm32-wasip2/release {file} '{{\"name\":\"world\"}}'");
        }
        if let SdkSource::Version(version) = &sdk {
            println!(
                "It depends on plugboard-sdk {version} from crates.io; to build against a Plugboard checkout, use --sdk-path CHECKOUT/sdk."
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Plugin(PluginCommand::Wit { dir }) = &cli.command {
        for (line, folder) in crate::cli::wit::LINES.iter().zip(crate::cli::wit::write(dir)?) {
            let files: Vec<&str> = line.files.iter().map(|(name, _)| *name).collect();
            println!("{}  {} (serves {})", folder.display(), crate::runtime::bindings::WIT_PACKAGE, line.serves.join(", "));
            println!("  {}", files.join(", "));
        }
        println!(
            "Point your toolchain at the folder, e.g. `componentize-py -d {}/since_v0.1.0 -w tool-plugin bindings out`.",
            dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Plugin(PluginCommand::Test { spec, no_build }) = &cli.command {
        let spec = spec.clone().unwrap_or_else(|| PathBuf::from(crate::cli::plugin_test::SPEC_FILE));
        return test_plugin(&spec, !*no_build).await;
    }
    if let Command::Plugin(PluginCommand::TestRunner { binary, args }) = &cli.command {
        return run_test_binary(binary, args).await;
    }
    if let Command::Plugin(
        command @ (PluginCommand::Push { .. } | PluginCommand::Sign { .. } | PluginCommand::Install { .. } | PluginCommand::Keygen { .. }),
    ) = &cli.command
    {
        return crate::cli::publish::run(&cli, command).await;
    }
    if let Command::Plugin(PluginCommand::Reload { id, server, json }) = &cli.command {
        return crate::cli::remote::reload(server, id.as_deref(), *json).await;
    }
    if let Command::Serve(args) = &cli.command {
        return serve(&cli, args).await;
    }
    if let Command::Trust { check, revoke, json } = &cli.command {
        use crate::cli::trust::TrustAction;
        let action = if *revoke {
            TrustAction::Revoke
        } else if *check {
            TrustAction::Check
        } else {
            TrustAction::Trust
        };
        return crate::cli::trust::run(&workspace_trust(&cli)?, action, *json);
    }
    if let Command::Session(command) = &cli.command
        && !command.needs_host()
    {
        let store = crate::store::SessionStore::open_in(cli.data_dir.as_deref())?;
        let shown = match command {
            SessionCommand::List { workspace, limit, offset, json } => {
                let page =
                    crate::cli::run::ListOptions { workspace: workspace.clone(), limit: (*limit).max(1), offset: *offset, json: *json };
                crate::cli::run::list(&store, &page).await
            }
            SessionCommand::Show { id, json } => crate::cli::run::show(&store, id, *json).await,
            SessionCommand::Export { id } => crate::cli::run::export(&store, id).await,
            other => unreachable!("{other:?} needs the plugins: handled after the host starts"),
        };
        close(&store).await;
        return shown;
    }
    let options = HostOptions {
        workspace: cli.workspace.clone(),
        config_file: cli.config.clone(),
        plugin_dirs: cli.plugin_dirs.clone(),
        cache_dir: cli.cache_dir.clone(),
        skip_user_plugins: false,
        data_dir: cli.data_dir.clone(),
    };
    let app = crate::app::App::start(options).await?;
    let host = app.host();
    for failure in host.registry().failures() {
        eprintln!("warning: plugin {} not loaded: {}", failure.source, failure.reason);
    }
    for file in app.untrusted() {
        eprintln!("warning: {} is not trusted, so it is not applied; review and trust it with `{}`", file.path.display(), file.review);
    }
    for warning in host.config_warnings() {
        eprintln!("warning: {warning}");
    }
    if !matches!(cli.command, Command::Mcp { .. }) {
        // A command that runs once sees the MCP servers' tools: it waits for each server
        // to come up or fail (each within its `startup_timeout_ms`).
        host.mcp().settled(MCP_SETTLE).await;
        for server in host.mcp().status().iter().filter(|s| s.error.is_some()) {
            eprintln!("warning: MCP server `{}` is not available: {}", server.name, server.error.as_deref().unwrap_or_default());
        }
    }
    match cli.command {
        Command::Tool(ToolCommand::List { json }) => {
            print_tools(host, json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Tool(ToolCommand::Call { name, arguments, json, with_hooks: false }) => call_tool(host, &name, &arguments, json).await,
        Command::Tool(ToolCommand::Call { name, arguments, json, with_hooks: true }) => {
            let store = crate::store::SessionStore::open_in(cli.data_dir.as_deref())?;
            let called = call_tool_with_hooks(&app, store.clone(), &name, &arguments, json).await;
            close(&store).await;
            called
        }
        Command::Plugin(PluginCommand::List { json }) => {
            print_plugins(host, json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin(PluginCommand::Inspect { plugin, json }) => inspect(host, &plugin, json).await,
        Command::Plugin(
            PluginCommand::New { .. }
            | PluginCommand::Reload { .. }
            | PluginCommand::Wit { .. }
            | PluginCommand::Test { .. }
            | PluginCommand::TestRunner { .. }
            | PluginCommand::Push { .. }
            | PluginCommand::Sign { .. }
            | PluginCommand::Install { .. }
            | PluginCommand::Keygen { .. },
        ) => {
            unreachable!("handled before the host starts")
        }
        Command::Session(command) => {
            let store = crate::store::SessionStore::open_in(cli.data_dir.as_deref())?;
            let done = crate::cli::run::session_change(&app, store.clone(), command).await;
            close(&store).await;
            done
        }
        Command::Serve(_) | Command::Trust { .. } => unreachable!("handled before the host starts"),
        Command::Mcp { agent } => {
            let agent = agent.unwrap_or_else(|| app.config().mcp.agent().to_string());
            let server = crate::mcp::ToolServer::new(app.host().clone(), app.agents(), &agent)?;
            let _watching = app.watch().map_err(|e| eprintln!("warning: plugins and configuration will not reload: {e}")).ok();
            crate::mcp::server::serve_stdio(server).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { prompt, model, agent, session, yes, stream } => {
            let store = crate::store::SessionStore::open_in(cli.data_dir.as_deref())?;
            let ran =
                crate::cli::run::run(&app, store.clone(), crate::cli::run::RunOptions { prompt, model, agent, session, yes, stream }).await;
            close(&store).await;
            ran
        }
        Command::Models { json } => {
            print_models(host, json);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `plugboard plugin test`: builds the plugin (unless told not to), runs the spec's cases,
/// prints each with what differed.
async fn test_plugin(path: &std::path::Path, build: bool) -> anyhow::Result<ExitCode> {
    use crate::cli::plugin_test;
    let spec = plugin_test::read(path)?;
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    if build {
        plugin_test::build(&spec, folder)?;
    }
    let results = plugin_test::run(&spec, folder).await?;
    Ok(if plugin_test::report(path, &results) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `plugboard plugin test-runner`: the test binary in its sandbox; after the library's unit
/// tests pass, the crate's `plugboard-test.toml` when it has one.
async fn run_test_binary(binary: &std::path::Path, args: &[String]) -> anyhow::Result<ExitCode> {
    let dir = std::env::current_dir()?;
    let status = crate::runtime::test_binary::run(binary, args, &dir).await?;
    if status != 0 {
        return Ok(ExitCode::from(status.clamp(1, 255) as u8));
    }
    // cargo names the library's unit tests `<crate>-<hash>.wasm`, and runs them from the
    // crate's folder with `CARGO_PKG_NAME` set.
    let library = std::env::var("CARGO_PKG_NAME").map(|name| format!("{}-", name.replace('-', "_"))).unwrap_or_default();
    let is_library = !library.is_empty() && binary.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&library));
    let spec = dir.join(crate::cli::plugin_test::SPEC_FILE);
    if !is_library || !spec.is_file() || args.iter().any(|a| a == "--list") {
        return Ok(ExitCode::SUCCESS);
    }
    println!("\nrunning {}", crate::cli::plugin_test::SPEC_FILE);
    test_plugin(&spec, true).await
}

/// Closes the session store before the process exits, so it leaves no write-ahead log.
async fn close(store: &crate::store::SessionStore) {
    if let Err(e) = store.close().await {
        eprintln!("warning: {}: {e}", crate::store::CLOSE_FAILED);
    }
}

/// `plugboard serve`: resolves the settings (flags, environment, `plugboard.toml`), then
/// serves until SIGTERM or SIGINT.
async fn serve(cli: &Cli, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    use crate::server::{ServeOptions, ServerSettings};
    let trust = workspace_trust(cli)?;
    let workspace = trust.workspace().to_path_buf();
    // `[server]` and `[sessions]` come only from a trusted file: a workspace cannot open the
    // server to another address or origin by itself.
    let config = crate::config::Config::load(cli.config.as_deref(), &trust)?.config;
    let host = args.host.unwrap_or(config.server.host);
    let port = args.port.unwrap_or(config.server.port);
    let mut sessions = config.sessions.clone();
    if let Some(n) = args.max_concurrent_sessions {
        sessions.max_concurrent = n;
    }
    if let Some(t) = args.session_timeout {
        sessions.timeout_seconds = Some(t);
    }
    let secret = std::env::var("PLUGBOARD_SHARED_SECRET").ok();
    let mut settings = ServerSettings::resolve(&config.server, std::net::SocketAddr::new(host, port), secret, args.insecure, sessions)?;
    settings.watch &= !args.no_watch;
    let options = HostOptions {
        workspace: Some(workspace),
        config_file: cli.config.clone(),
        plugin_dirs: cli.plugin_dirs.clone(),
        cache_dir: cli.cache_dir.clone(),
        skip_user_plugins: false,
        data_dir: cli.data_dir.clone(),
    };
    crate::server::serve(ServeOptions { host: options, settings }).await?;
    Ok(ExitCode::SUCCESS)
}

/// The trust of the workspace the command line names (default: the current directory).
fn workspace_trust(cli: &Cli) -> anyhow::Result<crate::trust::WorkspaceTrust> {
    let workspace = crate::runtime::workspace_dir(cli.workspace.as_deref())?;
    Ok(crate::trust::WorkspaceTrust::new(&workspace, cli.data_dir.as_deref()))
}

fn print_tools(host: &PluginHost, json: bool) {
    if json {
        let tools: Vec<_> = host
            .registry()
            .tools()
            .map(|(t, owner)| json!({ "name": t.name, "plugin": owner.label(), "description": t.description, "parameters": t.parameters }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&tools).expect("JSON values serialize"));
        return;
    }
    for (tool, owner) in host.registry().tools() {
        match owner.plugin() {
            Some(plugin) => println!("{}  (plugin {} {})", tool.name, plugin.manifest.id, plugin.manifest.version),
            None => println!("{}  ({})", tool.name, owner.label()),
        }
        for line in tool.description.lines() {
            println!("    {line}");
        }
        let params = parameter_summary(&tool.parameters);
        if !params.is_empty() {
            println!("    parameters: {params}");
        }
        println!();
    }
}

/// `name (type, required), ...` from a JSON Schema object.
fn parameter_summary(schema: &serde_json::Value) -> String {
    let required: Vec<&str> = schema["required"].as_array().map(|a| a.iter().filter_map(|v| v.as_str()).collect()).unwrap_or_default();
    let Some(props) = schema["properties"].as_object() else {
        return String::new();
    };
    props
        .iter()
        .map(|(name, p)| {
            let ty = match &p["type"] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Array(a) => a.iter().filter_map(|v| v.as_str()).filter(|t| *t != "null").collect::<Vec<_>>().join("|"),
                _ => "any".into(),
            };
            if required.contains(&name.as_str()) { format!("{name} ({ty}, required)") } else { format!("{name} ({ty})") }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn call_tool(host: &PluginHost, name: &str, arguments: &str, json: bool) -> anyhow::Result<ExitCode> {
    let context = CallContext { session_id: String::new(), call_id: format!("cli-{}", std::process::id()) };
    let result = host.call_tool(name, arguments, &context, Some(print_progress())).await.map_err(|e| e.to_string());
    print_call(result, json)
}

/// How long a one-off call waits for the `event` hooks to see it before exiting.
const EVENT_HOOKS_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// `tool call --with-hooks`: the call between the hooks, recorded in the event log; the
/// command ends once the `event` hooks have seen it.
async fn call_tool_with_hooks(
    app: &crate::app::App,
    store: crate::store::SessionStore,
    name: &str,
    arguments: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let arguments: serde_json::Value =
        serde_json::from_str(arguments).map_err(|e| anyhow::anyhow!("the arguments are not JSON: {e} (give an object, e.g. '{{}}')"))?;
    if !arguments.is_object() {
        anyhow::bail!("the arguments must be a JSON object, e.g. '{{\"path\": \"README.md\"}}'");
    }
    let runtime = app.agent_runtime(store, crate::agent::permission::AskMode::DenyAll)?;
    let call = runtime.call_tool_with_hooks(name, arguments, Some(print_progress())).await;
    if call.seq > 0 && !runtime.event_hooks_reached(call.seq, EVENT_HOOKS_PATIENCE).await {
        eprintln!("warning: the event hooks did not see this call within {} s", EVENT_HOOKS_PATIENCE.as_secs());
    }
    print_call(call.result.map_err(|e| e.for_operator()), json)
}

/// A call's live output, on stderr.
fn print_progress() -> crate::runtime::state::ProgressSink {
    Arc::new(|text: &str| eprintln!("… {text}"))
}

/// A call's output on stdout (its text, or the whole result as JSON), or its error on
/// stderr.
fn print_call(result: Result<crate::runtime::ToolOutput, String>, json: bool) -> anyhow::Result<ExitCode> {
    match result {
        Ok(output) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&output)?);
            } else {
                print!("{}", output.text);
                if !output.text.ends_with('\n') {
                    println!();
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn print_models(host: &PluginHost, json: bool) {
    if json {
        let models: Vec<_> = host.registry().models().map(|(reference, m, _)| json!({ "model": reference, "info": m })).collect();
        println!("{}", serde_json::to_string_pretty(&models).expect("JSON values serialize"));
        return;
    }
    for (reference, m, plugin) in host.registry().models() {
        let mut features = Vec::new();
        if m.supports_tools {
            features.push("tools");
        }
        if m.supports_reasoning {
            features.push("reasoning");
        }
        if m.supports_images {
            features.push("images");
        }
        let key = match &plugin.policy().credential {
            Some(_) => "",
            None if plugin.manifest.credentials.is_some() => "  (no API key configured)",
            None => "",
        };
        println!(
            "{reference:<32} {:>9} ctx {:>7} out  ${:.2}/${:.2} per Mtok  {}{key}",
            m.context_tokens,
            m.output_tokens,
            m.price.input,
            m.price.output,
            features.join(",")
        );
    }
}

/// Where an installed plugin came from and who signed it, on one line.
fn provenance_text(provenance: &plugboard_provenance::Provenance) -> String {
    format!("from {} ({}), signed by {}", provenance.source, provenance.digest, provenance.signed_by())
}

fn print_plugins(host: &PluginHost, json: bool) {
    if json {
        let plugins: Vec<_> = host.registry().plugins().map(|p| p.summary()).collect();
        let registry = host.registry();
        let document = json!({
            "plugins": plugins,
            "failures": registry.failures(),
            "shadowed": registry.shadowed(),
            "warnings": host.config_warnings(),
            "mcp_servers": host.mcp().status(),
        });
        println!("{}", serde_json::to_string_pretty(&document).expect("JSON values serialize"));
        return;
    }
    let hooks = host.hooks();
    for p in host.registry().plugins() {
        let provides = if let Some(info) = p.provider() {
            let models: Vec<&str> = info.models.iter().map(|m| m.id.as_str()).collect();
            format!("models: {}", models.join(", "))
        } else if let Some(info) = p.hook() {
            let points: Vec<&str> = info.points.iter().map(|p| p.name()).collect();
            let state = if hooks.enabled(&p.manifest.id) {
                "on".to_string()
            } else {
                format!("off: turn it on with [hooks.{}] enabled = true", p.manifest.id)
            };
            format!("hooks: {} ({state})", points.join(", "))
        } else {
            let tools: Vec<&str> = p.tools().iter().map(|t| t.name.as_str()).collect();
            format!("tools: {}", tools.join(", "))
        };
        let installed = p.provenance.as_ref().map(|p| format!("  {}", provenance_text(p))).unwrap_or_default();
        println!("{} {}  [{}]  {provides}{installed}", p.manifest.id, p.manifest.version, p.source);
    }
    for f in host.registry().failures() {
        println!("FAILED {}: {}", f.source, f.reason);
    }
    for s in host.registry().shadowed() {
        println!("SHADOWED {} [{}]: not loaded, [{}] serves this id", s.id, s.source, s.by);
    }
    for server in host.mcp().status() {
        let state = serde_json::to_value(server.state).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        let why = server.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default();
        println!("mcp:{}  [{} {}]  {state}{why}  tools: {}", server.name, server.transport, server.target, server.tools.join(", "));
        for skipped in &server.skipped {
            println!("    not offered: {skipped}");
        }
    }
}

async fn inspect(host: &PluginHost, plugin: &str, json: bool) -> anyhow::Result<ExitCode> {
    let loaded;
    let registry = host.registry();
    let plugin: &LoadedPlugin = if Path::new(plugin).exists() {
        match host.loader().load_file(Path::new(plugin)).await {
            Ok(p) => {
                loaded = p;
                &loaded
            }
            Err(e) => {
                eprintln!("error: {plugin} cannot be loaded: {e}");
                return Ok(ExitCode::FAILURE);
            }
        }
    } else if let Some(p) = registry.plugin(plugin) {
        p
    } else {
        eprintln!("error: `{plugin}` is neither a file nor the id of a loaded plugin");
        return Ok(ExitCode::FAILURE);
    };
    let mut value = plugin.summary();
    value["confinement"] = json!(host.confinement().to_string());
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    let m = &plugin.manifest;
    println!("plugin      {} {}", m.id, m.version);
    if !m.description.is_empty() {
        println!("            {}", m.description);
    }
    println!("source      {}", plugin.source);
    println!("sha256      {}", plugin.content_hash);
    if let Some(provenance) = &plugin.provenance {
        println!("installed   {} ({})", provenance.source, provenance.digest);
        println!("signer      {}", provenance.signed_by());
    }
    println!("world       {} ({})", m.world, m.wit.as_deref().unwrap_or("WIT version not stated"));
    println!("load        {} in {:.1} ms", value["load"]["cache"].as_str().unwrap_or(""), plugin.stats.micros as f64 / 1000.0);
    if let Some(info) = plugin.provider() {
        println!(
            "\nprovider    {} ({} models: {})",
            info.name,
            info.models.len(),
            info.models.iter().map(|m| m.id.as_str()).collect::<Vec<_>>().join(", ")
        );
        let key = match (&plugin.policy().credential, &m.credentials) {
            (Some(c), _) => format!("set (from {}), sent as `{}` to granted hosts only", c.origin, c.header),
            (None, Some(spec)) => format!("not configured (set api_key_env in [plugins.{}]; it is sent as `{}`)", m.id, spec.header),
            (None, None) => "not used".into(),
        };
        println!("api key     {key}");
    }
    if !plugin.tools().is_empty() {
        println!("\ntools");
    }
    for t in plugin.tools() {
        println!("  {}: {}", t.name, t.description.lines().next().unwrap_or(""));
        let params = parameter_summary(&t.parameters);
        if !params.is_empty() {
            println!("      parameters: {params}");
        }
    }
    if let Some(info) = plugin.hook() {
        let points: Vec<&str> = info.points.iter().map(|p| p.name()).collect();
        println!("\nhooks       {}", points.join(", "));
        if !info.event_types.is_empty() {
            println!("  events    {}", info.event_types.join(", "));
        }
    }
    let req = &m.capabilities;
    let pol = plugin.policy();
    let grant_note = match plugin.grant_source {
        crate::runtime::config::GrantSource::Config => "from the configuration",
        crate::runtime::config::GrantSource::BuiltinDefault => "built-in default of a first-party plugin",
        crate::runtime::config::GrantSource::None => "nothing granted",
    };
    println!("\ncapabilities (effective = requested AND granted; grants: {grant_note})");
    let list = |v: &[String]| {
        if v.is_empty() { "none".to_string() } else { v.join(", ") }
    };
    println!("  filesystem  requested: {}", req.filesystem.map(|a| a.to_string()).unwrap_or_else(|| "none".into()));
    println!(
        "              granted:   {}",
        list(&pol.granted.filesystem.iter().map(|g| format!("{} ({})", g.path(), g.access())).collect::<Vec<_>>())
    );
    println!(
        "              effective: {}",
        list(&pol.filesystem.iter().map(|g| format!("{} ({})", g.path.display(), g.access)).collect::<Vec<_>>())
    );
    println!("  network     requested: {}", list(&req.network));
    println!("              granted:   {}", list(&pol.granted.network));
    println!("  process     requested: {}", list(&req.process));
    println!("              granted:   {}", list(&pol.granted.process.iter().map(ToString::to_string).collect::<Vec<_>>()));
    if !req.process.is_empty() {
        println!("              confinement: {}", host.confinement());
    }
    println!("  env         requested: {}", list(&req.env));
    println!("              granted:   {}", list(&pol.granted.env));
    println!("              visible:   {}", list(&pol.env.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>()));
    let l = pol.limits;
    println!("  limits      memory {} MiB, time {} ms per call, output {} bytes", l.memory_mib, l.timeout_ms, l.max_output_bytes);
    Ok(ExitCode::SUCCESS)
}
