//! `[mcp.<name>]`: one MCP server the agent's tools come from, as the operator writes it,
//! and what it resolves to when the server starts: its grants (deny by default), its
//! environment and headers with `${VAR}` taken from Plugboard's environment (those values
//! are secrets: masked wherever they could show), and its limits.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::capability::filesystem::{self, DirGrant, DirGrantSpec};
use crate::capability::network::{HostPattern, NetworkPolicy};
use crate::capability::{Limits, PolicyContext};

/// `[mcp.<name>]`: a stdio server (`command`, `args`, `env`) or a remote one (`url`,
/// `headers`), with the grants a stdio server runs under and the limits of a call.
///
/// ```toml
/// [mcp.everything]
/// command = "node"
/// args = ["/opt/mcp/server-everything/dist/index.js", "stdio"]
/// env = { DEBUG = "1" }
/// filesystem = ["/opt/mcp"]          # read-only; { path, access = "read-write" } to write
/// timeout_ms = 30000
///
/// [mcp.docs]
/// url = "https://mcp.example.com/mcp"
/// headers = { Authorization = "Bearer ${DOCS_TOKEN}" }
/// network = ["https://mcp.example.com"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// The program of a stdio server (looked up on `PATH`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Its environment, besides `PATH` (nothing else of Plugboard's is passed): values may
    /// name Plugboard's variables as `${VAR}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Its working directory, inside the workspace or a filesystem grant (default: the
    /// workspace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// The streamable HTTP endpoint of a remote server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Headers sent to a remote server; values may name Plugboard's variables as `${VAR}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Directories a stdio server may use, read-only (a path) or `{ path, access }`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filesystem: Vec<DirGrantSpec>,
    /// Hosts a stdio server may reach (through the host's proxy), or that a remote
    /// server's `url` lies on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network: Vec<String>,
    /// The time limit of one call, in milliseconds (default: `[limits] timeout_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// The most text one call returns; more is cut (default: `[limits] max_output_bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
    /// How long the server may take to start and list its tools (default 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_timeout_ms: Option<u64>,
    /// Set to false to keep the table without starting the server.
    #[serde(default = "enabled", skip_serializing_if = "is_enabled")]
    pub enabled: bool,
}

fn enabled() -> bool {
    true
}

fn is_enabled(value: &bool) -> bool {
    *value
}

/// How long a server may take to start when its table does not say.
pub const DEFAULT_STARTUP_TIMEOUT_MS: u64 = 30_000;

/// Where a server runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A program spoken to over its standard input and output.
    Stdio {
        /// The program.
        command: String,
    },
    /// A streamable HTTP endpoint.
    Http {
        /// The endpoint.
        url: http::Uri,
    },
}

/// A server's table, resolved when it starts.
#[derive(Debug, Clone)]
pub struct ResolvedServer {
    /// Where it runs.
    pub transport: Transport,
    /// Its directories, canonical.
    pub filesystem: Vec<DirGrant>,
    /// The hosts it may reach.
    pub network: NetworkPolicy,
    /// Its environment, `${VAR}` expanded.
    pub env: Vec<(String, String)>,
    /// Its headers, `${VAR}` expanded.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl McpServerConfig {
    /// Checks what can be checked without the environment: a valid name, exactly one of
    /// `command` and `url`, fields of the other kind left out, a URL and host patterns that
    /// parse, limits above zero.
    pub fn validate(&self, name: &str) -> Result<(), String> {
        let at = |message: String| format!("[mcp.{name}]: {message}");
        if !valid_name(name) {
            return Err(at("a server's name is lowercase letters, digits and `-` (its tools are named `<name>_<tool>`)".into()));
        }
        match (&self.command, &self.url) {
            (Some(_), Some(_)) => return Err(at("set `command` (a stdio server) or `url` (a remote one), not both".into())),
            (None, None) => return Err(at("set `command` (a stdio server) or `url` (a remote one)".into())),
            (Some(command), None) => {
                if command.trim().is_empty() {
                    return Err(at("`command` is empty".into()));
                }
                if !self.headers.is_empty() {
                    return Err(at("`headers` are for a remote server (`url`)".into()));
                }
            }
            (None, Some(url)) => {
                parse_url(url).map_err(at)?;
                if !self.args.is_empty() || !self.env.is_empty() || self.cwd.is_some() || !self.filesystem.is_empty() {
                    return Err(at("`args`, `env`, `cwd` and `filesystem` are for a stdio server (`command`)".into()));
                }
            }
        }
        for pattern in &self.network {
            HostPattern::parse(pattern).map_err(|e| at(format!("network: {e}")))?;
        }
        if [self.timeout_ms, self.max_output_bytes, self.startup_timeout_ms].contains(&Some(0)) {
            return Err(at("limits must be greater than zero".into()));
        }
        for (key, value) in self.env.iter().chain(&self.headers) {
            placeholders(value).map_err(|e| at(format!("`{key}`: {e}")))?;
        }
        Ok(())
    }

    /// Resolves the table for a start: grants against the workspace (none of the protected
    /// directories), `${VAR}` from Plugboard's environment, and a `url` only where
    /// `network` reaches.
    pub fn resolve(&self, name: &str, ctx: &PolicyContext) -> Result<ResolvedServer, String> {
        self.validate(name)?;
        let at = |message: String| format!("[mcp.{name}]: {message}");
        let mut grants = Vec::new();
        for spec in &self.filesystem {
            let grant = filesystem::resolve(spec, &ctx.workspace).map_err(|e| at(format!("filesystem: {e}")))?;
            filesystem::refuse_protected(&grant.path, &ctx.protected).map_err(|e| at(format!("filesystem: {e}")))?;
            grants.push(grant);
        }
        filesystem::refuse_nested(&grants).map_err(|e| at(format!("filesystem: {e}")))?;
        let hosts: Vec<HostPattern> = self.network.iter().map(|p| HostPattern::parse(p)).collect::<Result<_, _>>().map_err(at)?;
        let network = NetworkPolicy { requested: hosts.clone(), granted: hosts };
        let mut env = Vec::new();
        for (key, value) in &self.env {
            if key.is_empty() || key.contains('=') {
                return Err(at(format!("env: `{key}` is not a variable name")));
            }
            env.push((key.clone(), expand(value).map_err(|e| at(format!("env `{key}`: {e}")))?));
        }
        let mut headers = Vec::new();
        for (key, value) in &self.headers {
            let header = http::HeaderName::try_from(key.as_str()).map_err(|e| at(format!("header `{key}`: {e}")))?;
            let expanded = expand(value).map_err(|e| at(format!("header `{key}`: {e}")))?;
            let mut value =
                http::HeaderValue::try_from(expanded).map_err(|_| at(format!("header `{key}`: the value is not a valid header value")))?;
            value.set_sensitive(true);
            headers.push((header, value));
        }
        let transport = match (&self.command, &self.url) {
            (Some(command), _) => Transport::Stdio { command: command.clone() },
            (None, Some(url)) => {
                let url = parse_url(url).map_err(at)?;
                let scheme = url.scheme_str().unwrap_or("https");
                let host = url.host().unwrap_or_default();
                if let Err(denial) = network.check(scheme, host, url.port_u16()) {
                    return Err(at(format!(
                        "`url` {url} is not reachable: {}; grant it with network = [\"{scheme}://{host}{}\"]",
                        denial.reason(),
                        url.port().map(|p| format!(":{p}")).unwrap_or_default()
                    )));
                }
                Transport::Http { url }
            }
            (None, None) => unreachable!("validated: one of command and url"),
        };
        Ok(ResolvedServer { transport, filesystem: grants, network, env, headers })
    }

    /// The limits of its calls: its own, else the defaults.
    pub fn limits(&self, defaults: Limits) -> Limits {
        Limits {
            timeout_ms: self.timeout_ms.unwrap_or(defaults.timeout_ms),
            max_output_bytes: self.max_output_bytes.unwrap_or(defaults.max_output_bytes),
            ..defaults
        }
    }

    /// How long it may take to start.
    pub fn startup_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.startup_timeout_ms.unwrap_or(DEFAULT_STARTUP_TIMEOUT_MS))
    }

    /// The values its table takes from Plugboard's environment: secrets, masked wherever
    /// output is shown.
    pub fn secrets(&self) -> Vec<String> {
        self.env
            .values()
            .chain(self.headers.values())
            .filter_map(|value| placeholders(value).ok())
            .flatten()
            .filter_map(|name| std::env::var(name).ok())
            .collect()
    }

    /// What a stdio server is started as, for logs and listings (no values of `env`).
    pub fn describe(&self) -> String {
        match (&self.command, &self.url) {
            (Some(command), _) => {
                std::iter::once(command.as_str()).chain(self.args.iter().map(String::as_str)).collect::<Vec<_>>().join(" ")
            }
            (None, Some(url)) => url.clone(),
            (None, None) => String::new(),
        }
    }
}

/// Whether `name` can name a server: lowercase letters, digits and `-`, 1 to 32 of them.
pub fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

fn parse_url(url: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("`url` {url} is not a URL: {e}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(uri),
        _ => Err(format!("`url` {url} is not an http:// or https:// URL")),
    }
}

/// `value` with each `${VAR}` replaced by `variable(VAR)`, in one pass (what a variable
/// holds is never read as a placeholder).
fn substitute(value: &str, mut variable: impl FnMut(&str) -> Result<String, String>) -> Result<String, String> {
    let (mut out, mut rest) = (String::new(), value);
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| format!("`${{` without its `}}` in `{value}`"))?;
        let name = &after[..end];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("`${{{name}}}` does not name an environment variable"));
        }
        out.push_str(&variable(name)?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The variables `${VAR}` names in `value`.
fn placeholders(value: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    substitute(value, |name| {
        names.push(name.to_string());
        Ok(String::new())
    })?;
    Ok(names)
}

/// `value` with each `${VAR}` replaced by Plugboard's variable; an unset one is an error
/// that names it.
fn expand(value: &str) -> Result<String, String> {
    substitute(value, |name| std::env::var(name).map_err(|_| format!("the environment variable `{name}` is not set")))
}

/// Where a server's program is found: `command` as given when it has a `/`, else the
/// first match on `PATH`.
pub fn find_program(command: &str, path: &str) -> Option<PathBuf> {
    if command.contains('/') {
        return Some(PathBuf::from(command));
    }
    std::env::split_paths(path).map(|dir| dir.join(command)).find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> McpServerConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_server_is_a_command_or_a_url_and_its_fields_follow() {
        assert!(table("command = \"node\"\nargs = [\"server.js\"]").validate("ok").is_ok());
        let both = table("command = \"node\"\nurl = \"https://a.example/mcp\"").validate("x").unwrap_err();
        assert!(both.contains("[mcp.x]") && both.contains("not both"), "{both}");
        assert!(table("url = \"https://a.example/mcp\"\nargs = [\"x\"]").validate("x").unwrap_err().contains("for a stdio server"));
        assert!(table("command = \"node\"\nheaders = { A = \"b\" }").validate("x").unwrap_err().contains("for a remote server"));
        assert!(table("url = \"ftp://a.example\"").validate("x").unwrap_err().contains("not an http"));
        assert!(table("command = \"node\"").validate("Bad_Name").unwrap_err().contains("lowercase"));
        assert!(table("command = \"node\"\ntimeout_ms = 0").validate("x").unwrap_err().contains("greater than zero"));
        assert!(table("command = \"node\"\nenv = { A = \"${\" }").validate("x").unwrap_err().contains("without its"));
    }

    #[test]
    fn placeholders_take_plugboards_variables_and_an_unset_one_is_named() {
        // SAFETY: the tests of this module are the only ones that read these names.
        unsafe { std::env::set_var("PLUGBOARD_TEST_MCP_TOKEN", "tok-123456789") };
        assert_eq!(expand("Bearer ${PLUGBOARD_TEST_MCP_TOKEN}").unwrap(), "Bearer tok-123456789");
        assert_eq!(expand("plain").unwrap(), "plain");
        let err = expand("${PLUGBOARD_TEST_MCP_UNSET}").unwrap_err();
        assert!(err.contains("PLUGBOARD_TEST_MCP_UNSET") && err.contains("not set"), "{err}");
        let remote = table("url = \"https://a.example/mcp\"\nheaders = { Authorization = \"Bearer ${PLUGBOARD_TEST_MCP_TOKEN}\" }");
        assert_eq!(remote.secrets(), vec!["tok-123456789".to_string()]);
    }

    #[test]
    fn a_remote_url_must_lie_within_the_network_grant() {
        let ctx = PolicyContext {
            workspace: std::env::temp_dir(),
            default_limits: Limits::default(),
            sandbox: Default::default(),
            confinement: std::sync::Arc::new(crate::capability::confinement::ConfinementSupport::Unavailable("a test".into())),
            max_memory_mib: None,
            protected: Vec::new(),
            secrets: Default::default(),
            redactor: Default::default(),
        };
        let ungranted = table("url = \"https://mcp.example.com/mcp\"");
        let err = ungranted.resolve("docs", &ctx).unwrap_err();
        assert!(err.contains("network = [\"https://mcp.example.com\"]"), "{err}");
        let granted = table("url = \"https://mcp.example.com/mcp\"\nnetwork = [\"https://mcp.example.com\"]");
        assert!(matches!(granted.resolve("docs", &ctx).unwrap().transport, Transport::Http { .. }));
        let elsewhere = table("url = \"https://evil.example.net/mcp\"\nnetwork = [\"https://mcp.example.com\"]");
        assert!(elsewhere.resolve("docs", &ctx).is_err());
    }
}
