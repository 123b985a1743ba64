//! The process capability: which command lines a plugin may run, and running them with a
//! time limit, an output cap, a working directory inside the workspace and kernel
//! confinement.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use globset::GlobMatcher;
use tokio::io::AsyncReadExt;

use serde::{Deserialize, Serialize};

use super::command_line;
use super::confinement::{Confinement, ConfinementSupport, UnconfinedCommands};
use super::filesystem::DirGrant;

/// A grant of commands as written in `plugboard.toml`: a glob over a simple command's text
/// (`"cargo test*"`), or a table that may match word by word and carries its own examples,
/// checked when the grant loads:
///
/// ```toml
/// process = [
///   "ls*",
///   { argv = ["git", "status|diff|log", "**"], match = ["git status -s"], not_match = ["git -c core.pager=id log"] },
/// ]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CommandGrantSpec {
    /// A glob over the simple command's text.
    Glob(String),
    /// A pattern with examples.
    Rule(CommandRule),
}

/// A command pattern as a table: `pattern` (a glob over the text) or `argv` (one glob per
/// word, with alternatives separated by `|`; a last `**` takes any further words), and
/// examples it must and must not allow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandRule {
    /// A glob over the whole simple command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// One pattern per word, quotes removed and redirections left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    /// Command lines this pattern must allow.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub must_match: Vec<String>,
    /// Command lines it must not allow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_match: Vec<String>,
}

impl std::fmt::Display for CommandGrantSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandGrantSpec::Glob(text) => f.write_str(text),
            CommandGrantSpec::Rule(CommandRule { argv: Some(words), .. }) => write!(f, "argv {words:?}"),
            CommandGrantSpec::Rule(CommandRule { pattern, .. }) => f.write_str(pattern.as_deref().unwrap_or("")),
        }
    }
}

/// A command pattern, parsed.
#[derive(Debug, Clone)]
pub struct CommandPattern {
    text: String,
    matcher: Matcher,
}

#[derive(Debug, Clone)]
enum Matcher {
    Glob(GlobMatcher),
    /// One set of alternatives per word; `true`: any further words are allowed.
    Argv(Vec<Vec<GlobMatcher>>, bool),
}

fn glob(text: &str) -> Result<GlobMatcher, String> {
    globset::GlobBuilder::new(text)
        .literal_separator(false)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("command pattern `{text}`: {e}"))
}

impl CommandPattern {
    /// Parses a glob pattern.
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(CommandPattern { text: text.trim().to_string(), matcher: Matcher::Glob(glob(text.trim())?) })
    }

    /// Parses a grant, and checks its examples.
    pub fn from_spec(spec: &CommandGrantSpec) -> Result<Self, String> {
        let rule = match spec {
            CommandGrantSpec::Glob(text) => return Self::parse(text),
            CommandGrantSpec::Rule(rule) => rule,
        };
        let pattern = match (&rule.pattern, &rule.argv) {
            (Some(text), None) => Self::parse(text)?,
            (None, Some(words)) => Self::argv(words)?,
            _ => return Err("a command rule has either `pattern` or `argv`".into()),
        };
        for example in &rule.must_match {
            if let Err(why) = pattern.allows_line(example) {
                return Err(format!("command pattern {spec}: its example `{example}` (match) is not allowed: {why}"));
            }
        }
        for example in &rule.not_match {
            if pattern.allows_line(example).is_ok() {
                return Err(format!("command pattern {spec}: its example `{example}` (not_match) is allowed by it"));
            }
        }
        Ok(pattern)
    }

    fn argv(words: &[String]) -> Result<Self, String> {
        let (rest, words) = match words.split_last() {
            Some((last, init)) if last == "**" => (true, init),
            _ => (false, words),
        };
        if words.is_empty() {
            return Err("`argv` needs at least the program".into());
        }
        let alternatives = words.iter().map(|w| w.split('|').map(glob).collect::<Result<Vec<_>, _>>()).collect::<Result<_, _>>()?;
        Ok(CommandPattern { text: format!("argv {words:?}{}", if rest { " **" } else { "" }), matcher: Matcher::Argv(alternatives, rest) })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether every simple command of `line` matches this pattern.
    fn allows_line(&self, line: &str) -> Result<(), String> {
        let commands = command_line::simple_commands(line).map_err(|e| e.to_string())?;
        match commands.iter().find(|c| !self.matches(c)) {
            Some(command) => Err(format!("`{command}` does not match")),
            None => Ok(()),
        }
    }

    fn matches(&self, command: &str) -> bool {
        match &self.matcher {
            Matcher::Glob(matcher) => matcher.is_match(command),
            Matcher::Argv(alternatives, rest) => {
                let words = command_line::words(command);
                let length_fits = if *rest { words.len() >= alternatives.len() } else { words.len() == alternatives.len() };
                length_fits && alternatives.iter().zip(&words).all(|(any, word)| any.iter().any(|m| m.is_match(word)))
            }
        }
    }
}

/// Which commands a plugin may run: those matching both a requested and a granted pattern.
#[derive(Debug, Clone, Default)]
pub struct ProcessPolicy {
    /// Patterns from the plugin's manifest.
    pub requested: Vec<CommandPattern>,
    /// Patterns from the operator's grant.
    pub granted: Vec<CommandPattern>,
}

impl ProcessPolicy {
    /// Checks a command line; the error names the simple command that is not allowed.
    pub fn check(&self, line: &str) -> Result<(), ProcessDenial> {
        let deny =
            |command: &str, reason: String| ProcessDenial { kind: super::CapabilityKind::Process, command: command.to_string(), reason };
        let commands = command_line::simple_commands(line).map_err(|e| deny(line, e.to_string()))?;
        let Some(first) = commands.first() else {
            return Err(deny(line, "the command line is empty".into()));
        };
        if self.requested.is_empty() {
            return Err(deny(first, "the plugin does not request the process capability in its manifest".into()));
        }
        if self.granted.is_empty() {
            return Err(deny(first, "no commands are granted to this plugin".into()));
        }
        for command in &commands {
            if !self.requested.iter().any(|p| p.matches(command)) {
                return Err(deny(command, format!("`{command}` is not among the commands the plugin requests")));
            }
            if !self.granted.iter().any(|p| p.matches(command)) {
                let granted: Vec<&str> = self.granted.iter().map(|p| p.as_str()).collect();
                return Err(deny(command, format!("`{command}` matches no granted command pattern (granted: {})", granted.join(", "))));
            }
        }
        Ok(())
    }
}

/// A command line refused by a [`ProcessPolicy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessDenial {
    /// What the grant that would allow it is about: `Process` for a command line,
    /// `Filesystem` for a working directory.
    pub kind: super::CapabilityKind,
    /// The simple command (or the working directory) that is not allowed.
    pub command: String,
    /// Why.
    pub reason: String,
}

/// Everything needed to run a plugin's commands.
#[derive(Debug, Clone)]
pub struct CommandRunner {
    /// The allowed command lines.
    pub policy: ProcessPolicy,
    /// The workspace: working directories lie inside it or inside a filesystem grant.
    pub workspace: PathBuf,
    /// The plugin's filesystem grants, which bound the command through confinement.
    pub grants: Vec<DirGrant>,
    /// Directories every command may read and execute from.
    pub system_paths: Vec<PathBuf>,
    /// Whether the kernel can confine commands.
    pub confinement: Arc<ConfinementSupport>,
    /// What to do when it cannot.
    pub unconfined: UnconfinedCommands,
    /// Environment variables the command sees (the plugin's env grant, plus `PATH`).
    pub env: Vec<(String, String)>,
    /// The hosts the plugin may reach: a confined command reaches them through the host's
    /// proxy (`egress`), and nothing else.
    pub network: super::network::NetworkPolicy,
    /// Cap on stdout and stderr together.
    pub max_output_bytes: usize,
    /// Upper bound on a command's time.
    pub max_timeout: Duration,
}

/// A finished command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResult {
    /// Exit code; `None` when killed.
    pub exit_code: Option<i32>,
    /// Standard output (lossy UTF-8).
    pub stdout: String,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
    /// Output was cut at the cap.
    pub truncated: bool,
    /// Killed at the time limit.
    pub timed_out: bool,
}

/// Why a command did not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// Not allowed by the grant (or not confinable, when confinement is required).
    Denied(ProcessDenial),
    /// Could not be started.
    Failed(String),
}

impl CommandRunner {
    /// Runs `line` through `/bin/sh -c` in `cwd` (empty: the workspace) with a time limit.
    /// What the command writes is passed to `live` as it comes (within the output cap), so
    /// a long command's progress can be shown while it runs.
    pub async fn run(
        &self,
        line: &str,
        cwd: &str,
        timeout: Option<Duration>,
        live: Option<&(dyn Fn(&str) + Send + Sync)>,
    ) -> Result<CommandResult, CommandError> {
        self.policy.check(line).map_err(CommandError::Denied)?;
        let cwd = self.working_directory(cwd)?;
        let timeout = timeout.map_or(self.max_timeout, |t| t.min(self.max_timeout));
        let mut command = tokio::process::Command::new("/bin/sh");
        command.arg("-c").arg(line).current_dir(&cwd).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let Spawned { mut child, group: _group, egress: _egress } = self.spawn(command, line).await?;
        let pid = child.id();
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let cap = self.max_output_bytes;
        let collect = async {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let (mut out_open, mut err_open) = (true, true);
            let mut truncated = false;
            let (mut buf_out, mut buf_err) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
            let (mut live_out, mut live_err) = (LiveText::default(), LiveText::default());
            while out_open || err_open {
                tokio::select! {
                    n = stdout.read(&mut buf_out), if out_open => match n {
                        Ok(0) | Err(_) => out_open = false,
                        Ok(n) => {
                            let before = out.len();
                            truncated |= append_capped(&mut out, &buf_out[..n], cap.saturating_sub(err.len()));
                            live_out.forward(&out[before..], live);
                        }
                    },
                    n = stderr.read(&mut buf_err), if err_open => match n {
                        Ok(0) | Err(_) => err_open = false,
                        Ok(n) => {
                            let before = err.len();
                            truncated |= append_capped(&mut err, &buf_err[..n], cap.saturating_sub(out.len()));
                            live_err.forward(&err[before..], live);
                        }
                    },
                }
            }
            let status = child.wait().await;
            (out, err, truncated, status)
        };
        match tokio::time::timeout(timeout, collect).await {
            Ok((out, err, truncated, status)) => Ok(CommandResult {
                exit_code: status.ok().and_then(|s| s.code()),
                stdout: String::from_utf8_lossy(&out).into_owned(),
                stderr: String::from_utf8_lossy(&err).into_owned(),
                truncated,
                timed_out: false,
            }),
            Err(_) => {
                if let Some(pid) = pid {
                    kill_group(pid);
                }
                Ok(CommandResult {
                    exit_code: None,
                    stdout: String::new(),
                    stderr: format!("killed after {} ms (time limit)", timeout.as_millis()),
                    truncated: false,
                    timed_out: true,
                })
            }
        }
    }

    /// Starts `command` (its program, arguments, working directory and standard streams set
    /// by the caller) under this runner's confinement: only the granted files, the granted
    /// hosts through the host's proxy, the granted variables, in a process group of its own.
    /// Nothing it starts outlives the returned [`Spawned`]. `what` names it in a refusal.
    pub async fn spawn(&self, mut command: tokio::process::Command, what: &str) -> Result<Spawned, CommandError> {
        let egress = self.egress().await;
        let joined = egress.as_ref().map(|e| e.joined());
        let confinement = match &*self.confinement {
            ConfinementSupport::Confined(_) => {
                Some(Confinement::new(&self.grants, &self.system_paths, joined).map_err(CommandError::Failed)?)
            }
            ConfinementSupport::Unavailable(reason) => match self.unconfined {
                UnconfinedCommands::Refuse => {
                    return Err(CommandError::Denied(ProcessDenial {
                        kind: super::CapabilityKind::Process,
                        command: what.to_string(),
                        reason: format!(
                            "commands cannot be confined here ({reason}) and the configuration refuses unconfined commands (set `[sandbox] unconfined_commands = \"allow\"` to run them anyway)"
                        ),
                    }));
                }
                UnconfinedCommands::Allow => None,
            },
        };
        command
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(egress.iter().flat_map(|e| e.env()))
            .kill_on_drop(true)
            .process_group(0);
        if let Some(confinement) = confinement {
            let confinement = Arc::new(confinement);
            // SAFETY: the closure runs in the forked child before exec and makes only the
            // async-signal-safe calls `Confinement::enter` documents.
            unsafe {
                command.pre_exec(move || confinement.enter());
            }
        }
        let program = command.as_std().get_program().to_string_lossy().into_owned();
        let child = command.spawn().map_err(|e| CommandError::Failed(format!("cannot start `{program}`: {e}")))?;
        // However the command ends (done, timed out, or dropped because its activity was
        // cancelled), nothing it started outlives it.
        let group = child.id().map(ProcessGroup);
        Ok(Spawned { child, group, egress })
    }

    /// The proxy of a confined command whose plugin may reach some hosts; `None` leaves the
    /// command without network, also where the namespace cannot be made (said in the log).
    async fn egress(&self) -> Option<super::egress::Egress> {
        if self.network.is_closed() || !matches!(&*self.confinement, ConfinementSupport::Confined(_)) {
            return None;
        }
        match super::egress::Egress::start(self.network.clone()).await {
            Ok(egress) => Some(egress),
            Err(e) => {
                tracing::warn!(error = %e, "a command of a plugin with a network grant runs without network: its proxy cannot be set up");
                None
            }
        }
    }

    /// `cwd` (relative to the workspace; empty: the workspace), when it lies inside the
    /// workspace or a filesystem grant.
    pub fn working_directory(&self, cwd: &str) -> Result<PathBuf, CommandError> {
        let requested = if cwd.is_empty() { self.workspace.clone() } else { self.workspace.join(cwd) };
        let canonical =
            requested.canonicalize().map_err(|e| CommandError::Failed(format!("working directory `{}`: {e}", requested.display())))?;
        if !canonical.starts_with(&self.workspace) && !self.grants.iter().any(|g| canonical.starts_with(&g.path)) {
            return Err(CommandError::Denied(ProcessDenial {
                kind: super::CapabilityKind::Filesystem,
                command: canonical.display().to_string(),
                reason: format!(
                    "working directory `{}` is outside the workspace `{}` and the plugin's filesystem grants",
                    canonical.display(),
                    self.workspace.display()
                ),
            }));
        }
        Ok(canonical)
    }
}

/// A program started by [`CommandRunner::spawn`]: when dropped, its whole process group is
/// killed and its network proxy stops.
pub struct Spawned {
    /// The process.
    pub child: tokio::process::Child,
    group: Option<ProcessGroup>,
    egress: Option<super::egress::Egress>,
}

/// Passes a stream's bytes on as text, holding back a UTF-8 sequence split between reads.
#[derive(Default)]
struct LiveText {
    held: Vec<u8>,
}

impl LiveText {
    fn forward(&mut self, bytes: &[u8], live: Option<&(dyn Fn(&str) + Send + Sync)>) {
        let Some(live) = live else { return };
        self.held.extend_from_slice(bytes);
        let complete = match std::str::from_utf8(&self.held) {
            Ok(_) => self.held.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.held.len(),
        };
        if complete > 0 {
            live(&String::from_utf8_lossy(&self.held[..complete]));
            self.held.drain(..complete);
        }
    }
}

/// Appends up to `room` bytes; true when something was cut.
fn append_capped(buffer: &mut Vec<u8>, bytes: &[u8], room: usize) -> bool {
    let room = room.saturating_sub(buffer.len()).min(bytes.len());
    buffer.extend_from_slice(&bytes[..room]);
    room < bytes.len()
}

/// Kills the process group it names when dropped.
struct ProcessGroup(u32);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        kill_group(self.0);
    }
}

fn kill_group(pid: u32) {
    // SAFETY: sends SIGKILL to the process group the child leads (`process_group(0)`).
    unsafe {
        libc::kill(-(pid as i32), libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_simple_command_must_be_requested_and_granted() {
        let pats = |v: &[&str]| v.iter().map(|p| CommandPattern::parse(p).unwrap()).collect::<Vec<_>>();
        let policy = ProcessPolicy { requested: pats(&["*"]), granted: pats(&["ls*", "echo *"]) };
        assert!(policy.check("ls -la").is_ok());
        assert!(policy.check("ls && echo hi").is_ok());
        let err = policy.check("ls; rm -rf /").unwrap_err();
        assert_eq!(err.command, "rm -rf /");
        let none = ProcessPolicy { requested: pats(&["*"]), granted: vec![] };
        assert!(none.check("ls").unwrap_err().reason.contains("no commands are granted"));
        // A comment does not hide a second command, and a redirection is not one.
        let echo = ProcessPolicy { requested: pats(&["*"]), granted: pats(&["echo *", "cargo test*"]) };
        assert_eq!(echo.check("echo a #'\nid #'").unwrap_err().command, "id");
        assert!(echo.check("cargo test 2>&1").is_ok());
        assert!(echo.check("echo $(id)").unwrap_err().reason.contains("command substitution"));
    }

    fn rule(text: &str) -> Result<CommandPattern, String> {
        let table: toml::Table = toml::from_str(&format!("p = {text}")).unwrap();
        let spec: CommandGrantSpec = table["p"].clone().try_into().unwrap();
        CommandPattern::from_spec(&spec)
    }

    #[test]
    fn argv_patterns_constrain_each_word() {
        let git = rule(r#"{ argv = ["git", "status|diff|log", "**"] }"#).unwrap();
        assert!(git.allows_line("git status -s").is_ok());
        assert!(git.allows_line("git 'log' --oneline 2>&1").is_ok());
        assert!(git.allows_line("git -c core.pager=id log").is_err(), "an option before the subcommand is not a subcommand");
        assert!(git.allows_line("git push").is_err());
        let exact = rule(r#"{ argv = ["ls", "-la"] }"#).unwrap();
        assert!(exact.allows_line("ls -la").is_ok() && exact.allows_line("ls -la /").is_err());
    }

    #[test]
    fn a_rule_carries_examples_checked_when_it_loads() {
        assert!(rule(r#"{ pattern = "git status*", match = ["git status -s"], not_match = ["git push"] }"#).is_ok());
        let err = rule(r#"{ pattern = "git status*", not_match = ["git statusx"] }"#).err().unwrap();
        assert!(err.contains("git statusx") && err.contains("not_match"), "{err}");
        let err = rule(r#"{ argv = ["git", "status"], match = ["git status -s"] }"#).err().unwrap();
        assert!(err.contains("(match) is not allowed"), "{err}");
        assert!(rule(r#"{ pattern = "a", argv = ["a"] }"#).is_err());
    }
}
