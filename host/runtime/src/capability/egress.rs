//! Network for confined commands, limited to the plugin's network grant. A confined command
//! has a network namespace of its own; when its plugin may reach some hosts, that namespace
//! holds a loopback with one listener of the host's: an HTTP proxy, named to the command by
//! `HTTP_PROXY`, `HTTPS_PROXY` and their lowercase forms. Nothing else is reachable from the
//! namespace, so a program that ignores the proxy reaches nothing, and the proxy lets through
//! only what [`NetworkPolicy::check`] allows:
//!
//! - `CONNECT host:port` (how clients tunnel TLS) is checked as `https://host:port`;
//! - a request for an absolute `http://` URL is checked as that URL and sent on to the host
//!   in origin form.
//!
//! Plugboard's own API is refused whatever the grant (see `network`). Anything else gets a
//! `403` or `400` whose body says why. The namespace is made on a
//! thread of its own that ends right after (namespaces are per thread), and the proxy's own
//! connections leave from the host's network; both end with the command. Making a network
//! namespace needs `CAP_SYS_ADMIN`: without it, [`Egress::start`] fails and commands keep no
//! network at all.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::confinement::JoinedNetwork;
use super::network::{self, NetworkPolicy};

/// The largest request head the proxy reads.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// How long the proxy waits for a host to accept a connection, and for a request head.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most connections one command may hold through the proxy at once; each holds a
/// socket of the host's, so more are refused (`503`) rather than let exhaust its files.
pub const MAX_CONNECTIONS: usize = 64;

/// One command's proxy and the network namespace it listens in; both end when dropped.
pub struct Egress {
    namespace: OwnedFd,
    port: u16,
    proxy: tokio::task::JoinHandle<()>,
}

impl Drop for Egress {
    fn drop(&mut self) {
        self.proxy.abort();
    }
}

impl Egress {
    /// Makes the namespace and starts the proxy, for a command of a plugin with `policy`.
    pub async fn start(policy: NetworkPolicy) -> std::io::Result<Egress> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new().name("plugboard-netns".into()).spawn(move || {
            let _ = tx.send(namespace_with_listener());
        })?;
        let (namespace, listener) = rx.await.map_err(|_| std::io::Error::other("the namespace thread ended without an answer"))??;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let proxy = tokio::spawn(serve(listener, policy));
        Ok(Egress { namespace, port, proxy })
    }

    /// The namespace a command joins, and the proxy's port on its loopback.
    pub fn joined(&self) -> JoinedNetwork {
        JoinedNetwork { namespace: self.namespace.as_raw_fd(), proxy_port: self.port }
    }

    /// The variables that name the proxy to the command.
    pub fn env(&self) -> Vec<(String, String)> {
        let url = format!("http://127.0.0.1:{}", self.port);
        ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"].iter().map(|k| (k.to_string(), url.clone())).collect()
    }
}

/// Network namespaces exist only on Linux.
#[cfg(not(target_os = "linux"))]
fn namespace_with_listener() -> std::io::Result<(OwnedFd, std::net::TcpListener)> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "network namespaces exist only on Linux"))
}

/// On the calling thread, which must be one that ends right after: a new network namespace
/// with its loopback up, a listener on it, and the namespace's descriptor.
#[cfg(target_os = "linux")]
fn namespace_with_listener() -> std::io::Result<(OwnedFd, std::net::TcpListener)> {
    use std::os::fd::FromRawFd;
    let check = |r: libc::c_int, what: &str| {
        if r < 0 {
            let e = std::io::Error::last_os_error();
            Err(std::io::Error::new(e.kind(), format!("{what}: {e}")))
        } else {
            Ok(r)
        }
    };
    // SAFETY: unshare, socket, ioctl, open and close on this thread with valid arguments;
    // the interface request is a zeroed `ifreq` holding a NUL-terminated name.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNET), "unshare (network namespace)")?;
        let socket = check(libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0), "socket")?;
        let socket = OwnedFd::from_raw_fd(socket);
        let mut request: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            request.ifr_name[i] = *b as libc::c_char;
        }
        check(libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request), "reading the loopback's flags")?;
        request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        check(libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request), "bringing the loopback up")?;
        let namespace = check(libc::open(c"/proc/thread-self/ns/net".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC), "opening the namespace")?;
        let namespace = OwnedFd::from_raw_fd(namespace);
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        Ok((namespace, listener))
    }
}

/// Accepts the command's connections until dropped; each is served on a task that ends
/// with this one.
async fn serve(listener: TcpListener, policy: NetworkPolicy) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((mut client, _)) if connections.len() >= MAX_CONNECTIONS => {
                    let why = format!("a command may hold at most {MAX_CONNECTIONS} connections through the proxy");
                    connections.spawn(async move { let _ = refuse(&mut client, "503 Service Unavailable", &why).await; });
                }
                Ok((client, _)) => {
                    let policy = policy.clone();
                    connections.spawn(async move { if let Err(e) = proxy(client, &policy).await {
                        tracing::debug!(error = %e, "a command's proxied connection ended with an error");
                    } });
                }
                Err(e) => {
                    tracing::debug!(error = %e, "the command proxy stopped accepting");
                    return;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// What one request asks the proxy for.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// A tunnel to `host:port`.
    Tunnel { host: String, port: u16 },
    /// A plain HTTP request, `head` rewritten to origin form.
    Forward { host: String, port: u16, head: Vec<u8> },
}

/// Serves one connection: reads the request head, checks its destination, and then relays
/// bytes both ways.
async fn proxy(mut client: TcpStream, policy: &NetworkPolicy) -> std::io::Result<()> {
    let mut buffer = Vec::with_capacity(4096);
    let head_len = loop {
        let mut chunk = [0u8; 4096];
        let Ok(n) = tokio::time::timeout(CONNECT_TIMEOUT, client.read(&mut chunk)).await else {
            return refuse(&mut client, "408 Request Timeout", "no request head came").await;
        };
        let n = n?;
        if n == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if buffer.len() > MAX_HEAD_BYTES {
            return refuse(&mut client, "431 Request Header Fields Too Large", "the request head is too large").await;
        }
    };
    let target = match parse(&buffer[..head_len]) {
        Ok(target) => target,
        Err(why) => return refuse(&mut client, "400 Bad Request", &why).await,
    };
    let (scheme, host, port) = match &target {
        Target::Tunnel { host, port } => ("https", host.clone(), *port),
        Target::Forward { host, port, .. } => ("http", host.clone(), *port),
    };
    let why = match policy.check(scheme, &host, Some(port)) {
        Err(denial) => Some(denial.reason()),
        Ok(()) if network::names_plugboard(&host, port) => Some(network::OWN_API),
        Ok(()) => None,
    };
    if let Some(why) = why {
        return refuse(&mut client, "403 Forbidden", &format!("{scheme}://{host}:{port} is refused: {why}")).await;
    }
    let upstream = match tokio::time::timeout(CONNECT_TIMEOUT, connect(&host, port)).await {
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return refuse(&mut client, "403 Forbidden", &format!("{scheme}://{host}:{port} is refused: {e}")).await;
        }
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return refuse(&mut client, "502 Bad Gateway", &format!("cannot connect to {host}:{port}: {e}")).await,
        Err(_) => return refuse(&mut client, "504 Gateway Timeout", &format!("{host}:{port} did not answer")).await,
    };
    let mut upstream = upstream;
    match target {
        Target::Tunnel { .. } => client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").await?,
        Target::Forward { head, .. } => upstream.write_all(&head).await?,
    }
    upstream.write_all(&buffer[head_len..]).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

/// Connects to `host:port` from the host's network. On a port where Plugboard serves its
/// API, the name is resolved here and only addresses that are not that API are tried.
async fn connect(host: &str, port: u16) -> std::io::Result<TcpStream> {
    if !network::serves(port) {
        return TcpStream::connect((host, port)).await;
    }
    let addrs: Vec<_> = tokio::net::lookup_host((host, port)).await?.collect();
    if addrs.iter().any(|a| network::is_plugboard(a.ip(), port)) {
        return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, network::OWN_API));
    }
    TcpStream::connect(addrs.as_slice()).await
}

async fn refuse(client: &mut TcpStream, status: &str, why: &str) -> std::io::Result<()> {
    let body = format!("plugboard: {why}\n");
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(response.as_bytes()).await?;
    // Closing with unread bytes would reset the connection, and the client could lose the
    // answer: end the writing side, then read what is left for a moment.
    client.shutdown().await?;
    let drain = async {
        let mut sink = [0u8; 4096];
        while client.read(&mut sink).await.is_ok_and(|n| n > 0) {}
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    Ok(())
}

/// Reads a request head: a `CONNECT host:port`, or a request for an absolute `http://` URL
/// (rewritten to origin form, without the proxy's own headers).
fn parse(head: &[u8]) -> Result<Target, String> {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err("the request head is incomplete".into()),
        Err(e) => return Err(format!("the request head is malformed: {e}")),
    }
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return Err("the request has no method or target".into());
    };
    if method == "CONNECT" {
        let uri: http::Uri = format!("https://{target}").parse().map_err(|_| format!("`{target}` is not host:port"))?;
        let (Some(host), Some(port)) = (uri.host(), uri.port_u16()) else {
            return Err(format!("CONNECT needs host:port, not `{target}`"));
        };
        return Ok(Target::Tunnel { host: host.trim_matches(['[', ']']).to_string(), port });
    }
    let uri: http::Uri = target.parse().map_err(|_| format!("`{target}` is not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => return Err(format!("`{other}://` goes through CONNECT (a tunnel), not a proxied request")),
        None => return Err(format!("`{target}` is not an absolute http:// URL: this is a proxy")),
    }
    let Some(host) = uri.host() else { return Err(format!("`{target}` has no host")) };
    let port = uri.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let version = if request.version == Some(0) { "HTTP/1.0" } else { "HTTP/1.1" };
    let mut rewritten = format!("{method} {path} {version}\r\n").into_bytes();
    for header in request.headers.iter() {
        let name = header.name.to_ascii_lowercase();
        if name == "proxy-authorization" || name == "proxy-connection" {
            continue;
        }
        rewritten.extend_from_slice(header.name.as_bytes());
        rewritten.extend_from_slice(b": ");
        rewritten.extend_from_slice(header.value);
        rewritten.extend_from_slice(b"\r\n");
    }
    rewritten.extend_from_slice(b"\r\n");
    Ok(Target::Forward { host: host.trim_matches(['[', ']']).to_string(), port, head: rewritten })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tunnel_and_an_absolute_url_are_read_and_anything_else_is_refused_with_the_reason() {
        assert_eq!(
            parse(b"CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n"),
            Ok(Target::Tunnel { host: "api.example.com".into(), port: 443 })
        );
        let Ok(Target::Forward { host, port, head }) =
            parse(b"GET http://127.0.0.1:8080/a?b=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nProxy-Authorization: x\r\n\r\n")
        else {
            panic!("not forwarded")
        };
        assert_eq!((host.as_str(), port), ("127.0.0.1", 8080));
        assert_eq!(String::from_utf8(head).unwrap(), "GET /a?b=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n");
        assert!(parse(b"GET /relative HTTP/1.1\r\n\r\n").unwrap_err().contains("absolute"));
        assert!(parse(b"GET https://x/ HTTP/1.1\r\n\r\n").unwrap_err().contains("CONNECT"));
        assert!(parse(b"CONNECT nohost HTTP/1.1\r\n\r\n").unwrap_err().contains("host:port"));
        assert!(parse(b"\x00\x01garbage\r\n\r\n").unwrap_err().contains("malformed"));
    }
}
