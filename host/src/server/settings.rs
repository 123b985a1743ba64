//! The server's settings: `[server]` in `plugboard.toml`, overridden by the environment
//! and flags (`PORT`, `PLUGBOARD_SHARED_SECRET`, `SESSION_TIMEOUT`,
//! `MAX_CONCURRENT_SESSIONS`; see `plugboard serve --help`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::agent::SessionSettings;
use crate::capability::Secret;

/// `[server]` in `plugboard.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// The address to listen on.
    pub host: IpAddr,
    /// The port.
    pub port: u16,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Seconds between heartbeats on event streams.
    pub heartbeat_seconds: u64,
    /// Seconds running activities get to finish at shutdown before they are interrupted.
    pub shutdown_grace_seconds: u64,
    /// Reload plugins and the configuration when their files change (`--no-watch` turns
    /// it off; `POST /plugins/reload`, `POST /config/reload` and `plugboard plugin reload`
    /// still work).
    pub watch: bool,
    /// Host names, besides the loopback names and IP addresses, that requests may be
    /// addressed to (the `Host` header): the name a reverse proxy or a LAN uses. Any other
    /// name is refused, which defeats DNS rebinding.
    pub allowed_hosts: Vec<String>,
    /// Web origins (`scheme://host[:port]`) whose pages may call the API, with CORS. A
    /// request from any other origin is refused.
    pub allowed_origins: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 3003,
            max_body_bytes: 1 << 20,
            heartbeat_seconds: 15,
            shutdown_grace_seconds: 10,
            watch: true,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
        }
    }
}

/// The settings the server runs with, resolved and checked.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The bearer token every route but the health checks requires, when set.
    pub shared_secret: Option<Secret>,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Time between heartbeats on event streams.
    pub heartbeat: Duration,
    /// Time running activities get at shutdown.
    pub shutdown_grace: Duration,
    /// Session limits.
    pub sessions: SessionSettings,
    /// Whether file changes reload plugins and the configuration.
    pub watch: bool,
    /// Host names requests may be addressed to, lowercase, besides loopback names and IPs.
    pub allowed_hosts: Vec<String>,
    /// Origins allowed to call the API from a browser, normalized (`https://ui.example`).
    pub allowed_origins: Vec<String>,
}

/// Why the settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// Listening beyond this machine without a secret.
    #[error(
        "refusing to listen on {0} without a shared secret: anyone who can reach it could run tools in the workspace. Set PLUGBOARD_SHARED_SECRET, listen on 127.0.0.1, or pass --insecure if something else guards the port"
    )]
    Unprotected(SocketAddr),
    /// A value out of range.
    #[error("invalid {name}: {reason}")]
    Invalid {
        /// The setting.
        name: &'static str,
        /// Why.
        reason: String,
    },
}

impl ServerSettings {
    /// Checks the settings: a non-loopback address needs a secret unless `insecure`; an
    /// empty secret, a zero limit or heartbeat are refused.
    pub fn resolve(
        config: &ServerConfig,
        addr: SocketAddr,
        secret: Option<String>,
        insecure: bool,
        sessions: SessionSettings,
    ) -> Result<Self, SettingsError> {
        let invalid = |name, reason: &str| SettingsError::Invalid { name, reason: reason.into() };
        let shared_secret = match secret {
            Some(s) if s.trim().is_empty() => return Err(invalid("PLUGBOARD_SHARED_SECRET", "it is empty")),
            Some(s) => Some(Secret::new(s)),
            None => None,
        };
        if shared_secret.is_none() && !addr.ip().is_loopback() && !insecure {
            return Err(SettingsError::Unprotected(addr));
        }
        if config.max_body_bytes == 0 {
            return Err(invalid("[server] max_body_bytes", "must be at least 1"));
        }
        if config.heartbeat_seconds == 0 {
            return Err(invalid("[server] heartbeat_seconds", "must be at least 1"));
        }
        if sessions.max_concurrent == 0 {
            return Err(invalid("MAX_CONCURRENT_SESSIONS", "must be at least 1"));
        }
        if sessions.timeout_seconds == Some(0) {
            return Err(invalid("SESSION_TIMEOUT", "must be at least 1 second"));
        }
        let allowed_hosts = config
            .allowed_hosts
            .iter()
            .map(|h| {
                let host = h.trim().trim_end_matches('.').to_ascii_lowercase();
                let valid = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
                if valid {
                    Ok(host)
                } else {
                    Err(invalid_owned("[server] allowed_hosts", format!("`{h}` is not a host name (no scheme, port or wildcard)")))
                }
            })
            .collect::<Result<_, _>>()?;
        let allowed_origins = config
            .allowed_origins
            .iter()
            .map(|o| normalize_origin(o).map_err(|r| invalid_owned("[server] allowed_origins", r)))
            .collect::<Result<_, _>>()?;
        Ok(ServerSettings {
            allowed_hosts,
            allowed_origins,
            addr,
            shared_secret,
            max_body_bytes: config.max_body_bytes,
            heartbeat: Duration::from_secs(config.heartbeat_seconds),
            shutdown_grace: Duration::from_secs(config.shutdown_grace_seconds),
            sessions,
            watch: config.watch,
        })
    }
}

fn invalid_owned(name: &'static str, reason: String) -> SettingsError {
    SettingsError::Invalid { name, reason }
}

/// An origin as browsers send it: `scheme://host[:port]`, lowercase, without a default
/// port, path or trailing slash.
pub fn normalize_origin(origin: &str) -> Result<String, String> {
    let uri: http::Uri = origin.trim().parse().map_err(|e| format!("`{origin}` is not an origin: {e}"))?;
    let scheme = uri.scheme_str().filter(|s| *s == "http" || *s == "https");
    let (Some(scheme), Some(host)) = (scheme, uri.host()) else {
        return Err(format!("`{origin}` is not an origin: write it as http(s)://host[:port]"));
    };
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/" && !p.as_str().is_empty()) || host.contains('*') {
        return Err(format!("`{origin}` is not an origin: no path, query or wildcard"));
    }
    let default_port = if scheme == "https" { 443 } else { 80 };
    let host = host.to_ascii_lowercase();
    Ok(match uri.port_u16() {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(addr: &str, secret: Option<&str>, insecure: bool) -> Result<ServerSettings, SettingsError> {
        let addr = addr.parse().unwrap();
        ServerSettings::resolve(&ServerConfig::default(), addr, secret.map(str::to_string), insecure, SessionSettings::default())
    }

    #[test]
    fn a_public_address_needs_a_secret_or_insecure() {
        let err = resolve("0.0.0.0:3003", None, false).unwrap_err();
        assert!(err.to_string().contains("PLUGBOARD_SHARED_SECRET"), "{err}");
        assert!(resolve("0.0.0.0:3003", Some("s3cret"), false).is_ok());
        assert!(resolve("0.0.0.0:3003", None, true).is_ok());
        assert!(resolve("127.0.0.1:3003", None, false).is_ok());
        assert!(resolve("[::1]:3003", None, false).is_ok());
    }

    #[test]
    fn origins_are_normalized_and_wildcards_refused() {
        assert_eq!(normalize_origin("https://UI.example:443/").unwrap(), "https://ui.example");
        assert_eq!(normalize_origin("http://localhost:5173").unwrap(), "http://localhost:5173");
        assert!(normalize_origin("*").is_err());
        assert!(normalize_origin("https://*.example").is_err());
        assert!(normalize_origin("https://ui.example/app").is_err());
        assert!(normalize_origin("ui.example").is_err());
        let config = ServerConfig { allowed_origins: vec!["ftp://x".into()], ..ServerConfig::default() };
        let err = ServerSettings::resolve(&config, "127.0.0.1:1".parse().unwrap(), None, false, SessionSettings::default()).unwrap_err();
        assert!(err.to_string().contains("[server] allowed_origins"), "{err}");
    }

    #[test]
    fn an_empty_secret_is_refused() {
        let err = resolve("127.0.0.1:3003", Some("  "), false).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }
}
