//! Network grants: outgoing HTTP(S) to host patterns, in the style of Spin's
//! `allowed_outbound_hosts`: `scheme://host:port`, where the scheme may be `*`, the host
//! `*` or `*.example.com`, and the port `*`. Without a port, the scheme's default port.
//! `*` alone allows every host.
//!
//! No grant reaches Plugboard's own HTTP API: [`serving`] records the ports this process
//! serves it on, and a destination on one of them at a loopback or unspecified address is
//! refused wherever plugins' requests leave (`wasi:http` and the commands' proxy), however
//! wide the grant (`http://127.0.0.1:*`, `*`). Through the API a plugin could otherwise run
//! other plugins' tools under their grants.

use std::net::IpAddr;
use std::sync::Mutex;

/// The ports this process serves Plugboard's API on (one entry per server).
static SERVED_PORTS: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// Records that Plugboard's API is served on `port` until the returned guard is dropped.
pub fn serving(port: u16) -> Serving {
    if let Ok(mut ports) = SERVED_PORTS.lock() {
        ports.push(port);
    }
    Serving(port)
}

/// Plugboard's API is served on this port while this lives.
#[derive(Debug)]
pub struct Serving(u16);

impl Drop for Serving {
    fn drop(&mut self) {
        if let Ok(mut ports) = SERVED_PORTS.lock()
            && let Some(i) = ports.iter().position(|p| *p == self.0)
        {
            ports.swap_remove(i);
        }
    }
}

/// Whether Plugboard's API is served on `port` in this process.
pub fn serves(port: u16) -> bool {
    SERVED_PORTS.lock().is_ok_and(|ports| ports.contains(&port))
}

/// Whether a connection to `ip:port` would reach Plugboard's own API.
pub fn is_plugboard(ip: IpAddr, port: u16) -> bool {
    serves(port) && (ip.is_loopback() || ip.is_unspecified() || ip.to_canonical().is_loopback())
}

/// Whether `host:port` names Plugboard's own API without a lookup: an address, or
/// `localhost` (and its subdomains, which resolve to loopback).
pub fn names_plugboard(host: &str, port: u16) -> bool {
    let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
    match host.parse::<IpAddr>() {
        Ok(ip) => is_plugboard(ip, port),
        Err(_) => serves(port) && (host == "localhost" || host.ends_with(".localhost")),
    }
}

/// The reason given when a destination is Plugboard's own API.
pub const OWN_API: &str = "it is Plugboard's own API, which no grant reaches";

/// Makes `ring` the process's TLS provider (the one `wasi:http` uses), for the HTTP clients
/// that take the process's provider: the MCP client's. Idempotent; called at start.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whether `host` resolves to Plugboard's own API on `port` (looked up only when `port` is
/// one it serves): a name can point anywhere, so a grant of a name does not reach it either.
pub async fn resolves_to_plugboard(host: &str, port: u16) -> bool {
    serves(port) && tokio::net::lookup_host((host, port)).await.is_ok_and(|mut addrs| addrs.any(|a| is_plugboard(a.ip(), port)))
}

/// One host pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    text: String,
    scheme: Option<String>,
    host: HostMatch,
    port: PortMatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Any,
    Exact(String),
    /// `*.example.com`: any subdomain of `example.com`.
    Subdomain(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortMatch {
    Any,
    Default,
    Exact(u16),
}

impl HostPattern {
    /// Parses a pattern; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "*" {
            return Ok(HostPattern { text: text.into(), scheme: None, host: HostMatch::Any, port: PortMatch::Any });
        }
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("host pattern `{text}` needs a scheme, e.g. `https://{text}` (or `*://{text}`)"))?;
        let scheme = match scheme {
            "*" => None,
            "http" | "https" => Some(scheme.to_string()),
            other => {
                return Err(format!("host pattern `{text}`: scheme `{other}` is not http, https or *"));
            }
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return Err(format!("host pattern `{text}` must not have a path"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => (h, Some(p)),
            _ => (rest, None),
        };
        let port = match port {
            None => PortMatch::Default,
            Some("*") => PortMatch::Any,
            Some(p) => PortMatch::Exact(p.parse().map_err(|_| format!("host pattern `{text}`: `{p}` is not a port"))?),
        };
        let host = host.to_ascii_lowercase();
        let host = if host == "*" {
            HostMatch::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            HostMatch::Subdomain(suffix.to_string())
        } else if host.is_empty() || host.contains('*') {
            return Err(format!("host pattern `{text}`: a host is a name, `*` or `*.domain`"));
        } else {
            HostMatch::Exact(host)
        };
        Ok(HostPattern { text: text.into(), scheme, host, port })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether a request to `scheme://host:port` matches.
    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        if let Some(s) = &self.scheme
            && s != scheme
        {
            return false;
        }
        let host = host.to_ascii_lowercase();
        let host_ok = match &self.host {
            HostMatch::Any => true,
            HostMatch::Exact(h) => *h == host,
            HostMatch::Subdomain(suffix) => host.strip_suffix(suffix.as_str()).is_some_and(|p| p.ends_with('.')),
        };
        let port_ok = match self.port {
            PortMatch::Any => true,
            PortMatch::Exact(p) => p == port,
            PortMatch::Default => port == default_port(scheme),
        };
        host_ok && port_ok
    }
}

/// The port of `scheme` when a URL names none.
pub fn default_port(scheme: &str) -> u16 {
    if scheme == "http" { 80 } else { 443 }
}

/// Which hosts a plugin may reach: those matching both what it requested and what the
/// operator granted.
#[derive(Debug, Clone, Default)]
pub struct NetworkPolicy {
    /// Patterns from the plugin's manifest.
    pub requested: Vec<HostPattern>,
    /// Patterns from the operator's grant.
    pub granted: Vec<HostPattern>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkDenial {
    /// The plugin's manifest does not request this host.
    NotRequested,
    /// The operator has not granted this host.
    NotGranted,
}

impl NetworkDenial {
    /// Why, in words.
    pub fn reason(&self) -> &'static str {
        match self {
            NetworkDenial::NotRequested => "the plugin's manifest does not request this host",
            NetworkDenial::NotGranted => "the host is not in the plugin's network grant",
        }
    }
}

impl NetworkPolicy {
    /// Checks a request to `scheme://host:port`.
    pub fn check(&self, scheme: &str, host: &str, port: Option<u16>) -> Result<(), NetworkDenial> {
        let port = port.unwrap_or_else(|| default_port(scheme));
        if !self.requested.iter().any(|p| p.matches(scheme, host, port)) {
            return Err(NetworkDenial::NotRequested);
        }
        if !self.granted.iter().any(|p| p.matches(scheme, host, port)) {
            return Err(NetworkDenial::NotGranted);
        }
        Ok(())
    }

    /// True when no host at all can be reached.
    pub fn is_closed(&self) -> bool {
        self.requested.is_empty() || self.granted.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> HostPattern {
        HostPattern::parse(s).unwrap()
    }

    #[test]
    fn patterns_match_like_spin() {
        assert!(p("https://api.openai.com").matches("https", "api.openai.com", 443));
        assert!(!p("https://api.openai.com").matches("http", "api.openai.com", 80));
        assert!(!p("https://api.openai.com").matches("https", "api.openai.com", 8443));
        assert!(p("https://*.example.com").matches("https", "a.b.example.com", 443));
        assert!(!p("https://*.example.com").matches("https", "example.com", 443));
        assert!(!p("https://*.example.com").matches("https", "badexample.com", 443));
        assert!(p("http://127.0.0.1:*").matches("http", "127.0.0.1", 39211));
        assert!(p("*://localhost:8080").matches("http", "localhost", 8080));
        assert!(p("*").matches("http", "anything", 1));
    }

    #[test]
    fn bad_patterns_say_why() {
        assert!(HostPattern::parse("example.com").unwrap_err().contains("needs a scheme"));
        assert!(HostPattern::parse("ftp://x").unwrap_err().contains("ftp"));
        assert!(HostPattern::parse("https://x/path").unwrap_err().contains("path"));
        assert!(HostPattern::parse("https://x:port").unwrap_err().contains("port"));
        assert!(HostPattern::parse("https://a*b.com").unwrap_err().contains("host"));
    }

    #[test]
    fn plugboards_own_port_is_recognized_at_local_addresses_only_while_served() {
        let port = 1; // a port no test serves on
        assert!(!names_plugboard("127.0.0.1", port));
        let served = serving(port);
        for local in ["127.0.0.1", "127.0.0.2", "[::1]", "0.0.0.0", "LOCALHOST", "api.localhost", "::ffff:127.0.0.1"] {
            assert!(names_plugboard(local, port), "{local}");
        }
        assert!(!names_plugboard("192.0.2.1", port) && !names_plugboard("example.com", port));
        assert!(!names_plugboard("127.0.0.1", port + 1));
        drop(served);
        assert!(!names_plugboard("127.0.0.1", port));
    }

    #[test]
    fn both_request_and_grant_are_needed() {
        let policy = NetworkPolicy { requested: vec![p("*")], granted: vec![p("http://127.0.0.1:*")] };
        assert_eq!(policy.check("http", "127.0.0.1", Some(8080)), Ok(()));
        assert_eq!(policy.check("https", "example.com", None), Err(NetworkDenial::NotGranted));
        let policy = NetworkPolicy { requested: vec![p("https://api.example.com")], granted: vec![p("*")] };
        assert_eq!(policy.check("https", "other.com", None), Err(NetworkDenial::NotRequested));
    }
}
