//! Outgoing HTTP connections of one sandbox (one plugin under one policy), kept open
//! between its requests: a provider's next turn, or a tool's next fetch from the same host,
//! goes out on the connection (and TLS session) the last one used instead of a new one.
//!
//! - Reuse never widens a grant: the network policy is checked for every request before a
//!   connection is looked for (`state::NetworkHooks`), and a pool belongs to one sandbox, so
//!   it is never shared between plugins, and a reload (new grants, a new key) starts empty.
//! - A connection goes back to the pool only when its response was read to the end and
//!   hyper can send another request on it. A response dropped with at most [`DRAIN_BYTES`]
//!   left, all arriving within [`DRAIN_TIME`] (the closing bytes of a stream after the last
//!   event a provider wanted), is read to its end first; one dropped midway is closed, so
//!   the server stops sending (and a model stops generating).
//! - Idle connections are kept per origin (scheme, host, port) for [`IDLE_TIMEOUT`], at most
//!   [`MAX_IDLE`] in all; a request a pooled connection could not start sending (the server
//!   closed it meanwhile) goes out on a new one.
//! - New connections are made as `wasmtime_wasi_http::default_send_request` makes them: the
//!   request's connect timeout, TLS with the same web PKI roots, HTTP/1.1. The first-byte and
//!   between-bytes timeouts apply per request, to pooled connections too.
//! - A kept connection acknowledges what it reads at once (`TCP_QUICKACK`), so a server
//!   that leaves Nagle's algorithm on does not hold each chunk of a stream back for a
//!   delayed acknowledgement.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// How long an idle connection is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept per sandbox, all origins together.
pub const MAX_IDLE: usize = 1024;
/// The most a dropped response may still have to come for its connection to be kept.
pub const DRAIN_BYTES: usize = 16 * 1024;
/// How long the rest of a dropped response may take to come for its connection to be kept.
pub const DRAIN_TIME: Duration = Duration::from_millis(200);
/// A timeout the request leaves unset (wasmtime's default).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Where a connection goes: TLS or not, and `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Origin {
    tls: bool,
    authority: String,
}

impl Origin {
    fn of(uri: &http::Uri) -> Result<Origin, Error> {
        let authority = uri.authority().ok_or(Error::HttpRequestUriInvalid)?;
        let tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let authority = match authority.port() {
            Some(_) => authority.to_string(),
            None => format!("{authority}:{}", if tls { 443 } else { 80 }),
        };
        Ok(Origin { tls, authority })
    }
}

/// The timeouts of one request.
#[derive(Clone, Copy)]
struct Timeouts {
    connect: Duration,
    first_byte: Duration,
    between_bytes: Duration,
}

impl Timeouts {
    fn of(options: Option<RequestOptions>) -> Timeouts {
        let pick = |f: fn(&RequestOptions) -> Option<Duration>| options.as_ref().and_then(f).unwrap_or(DEFAULT_TIMEOUT);
        Timeouts {
            connect: pick(|o| o.connect_timeout),
            first_byte: pick(|o| o.first_byte_timeout),
            // tokio's interval refuses a zero period.
            between_bytes: pick(|o| o.between_bytes_timeout).max(Duration::from_nanos(1)),
        }
    }
}

/// A connection waiting for its next request.
struct Idle {
    sender: SendRequest<WasiBody>,
    since: Instant,
}

/// The idle connections of one sandbox.
#[derive(Default)]
pub struct Connections {
    idle: Mutex<IdleSet>,
}

#[derive(Default)]
struct IdleSet {
    by_origin: HashMap<Origin, VecDeque<Idle>>,
    count: usize,
}

impl IdleSet {
    /// The most recently used live connection to `origin`.
    fn take(&mut self, origin: &Origin) -> Option<SendRequest<WasiBody>> {
        let queue = self.by_origin.get_mut(origin)?;
        let mut found = None;
        while let Some(idle) = queue.pop_back() {
            self.count -= 1;
            if idle.since.elapsed() < IDLE_TIMEOUT && !idle.sender.is_closed() {
                found = Some(idle.sender);
                break;
            }
        }
        if queue.is_empty() {
            self.by_origin.remove(origin);
        }
        found
    }

    /// Keeps `sender` for the next request to `origin`, dropping the connections there that
    /// were idle too long; closes it instead when the set is full.
    fn put(&mut self, origin: Origin, sender: SendRequest<WasiBody>) {
        let queue = self.by_origin.entry(origin).or_default();
        let before = queue.len();
        queue.retain(|idle| idle.since.elapsed() < IDLE_TIMEOUT && !idle.sender.is_closed());
        self.count -= before - queue.len();
        if self.count < MAX_IDLE {
            queue.push_back(Idle { sender, since: Instant::now() });
            self.count += 1;
        }
    }
}

impl Connections {
    /// Sends `request`, on an idle connection to its origin when there is one.
    pub async fn send(
        self: &Arc<Self>,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<http::Response<WasiBody>, Error> {
        let origin = Origin::of(request.uri())?;
        let timeouts = Timeouts::of(options);
        // Origin form: the scheme and authority go in the request line only to a proxy.
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        *request.uri_mut() = http::Uri::builder().path_and_query(path).build().map_err(|_| Error::HttpRequestUriInvalid)?;
        let mut pooled = self.checkout(&origin).await;
        loop {
            let reused = pooled.is_some();
            let mut sender = match pooled.take() {
                Some(sender) => sender,
                None => connect(&origin, timeouts.connect).await?,
            };
            let sent = tokio::time::timeout(timeouts.first_byte, sender.try_send_request(request))
                .await
                .map_err(|_| Error::ConnectionReadTimeout)?;
            match sent {
                Ok(response) => {
                    let reuse = Some(Reuse { pool: Arc::downgrade(self), origin, sender });
                    // An interval's first tick is at once; the first wait starts now.
                    let mut timeout = tokio::time::interval(timeouts.between_bytes);
                    timeout.reset();
                    return Ok(response.map(|incoming| ResponseBody { incoming: Some(incoming), timeout, reuse }.boxed_unsync()));
                }
                Err(mut failed) => match failed.take_message() {
                    // Not sent at all: the pooled connection had closed. A new one gets it.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(failed.into_error().into()),
                },
            }
        }
    }

    /// An idle connection to `origin` that can take a request now.
    async fn checkout(&self, origin: &Origin) -> Option<SendRequest<WasiBody>> {
        loop {
            let mut sender = self.idle.lock().expect("not poisoned").take(origin)?;
            // Ready at once, unless the connection is still settling the last response.
            if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(1), sender.ready()).await {
                return Some(sender);
            }
        }
    }
}

/// What it takes to give a connection back once its response is read.
struct Reuse {
    pool: Weak<Connections>,
    origin: Origin,
    sender: SendRequest<WasiBody>,
}

impl Reuse {
    fn give_back(self) {
        if let Some(pool) = self.pool.upgrade()
            && !self.sender.is_closed()
        {
            pool.idle.lock().expect("not poisoned").put(self.origin, self.sender);
        }
    }

    /// Reads what is left of a dropped response, within bounds, and keeps the connection
    /// if that was its end.
    async fn drain(self, mut incoming: Incoming) {
        let read_to_end = async {
            let mut left = DRAIN_BYTES;
            while let Some(frame) = incoming.frame().await {
                let Ok(frame) = frame else { return false };
                let size = frame.data_ref().map_or(0, Bytes::len);
                if size > left {
                    return false;
                }
                left -= size;
            }
            true
        };
        if let Ok(true) = tokio::time::timeout(DRAIN_TIME, read_to_end).await {
            self.give_back();
        }
    }
}

/// A response's body: the between-bytes timeout, and its connection given back at the end.
struct ResponseBody {
    incoming: Option<Incoming>,
    timeout: tokio::time::Interval,
    reuse: Option<Reuse>,
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        let Some(incoming) = this.incoming.as_mut() else { return Poll::Ready(None) };
        match Pin::new(incoming).poll_frame(cx) {
            Poll::Ready(None) => {
                this.incoming = None;
                if let Some(reuse) = this.reuse.take() {
                    reuse.give_back();
                }
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                this.timeout.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.reuse = None;
                Poll::Ready(Some(Err(if e.is_timeout() { Error::HttpResponseTimeout } else { e.into() })))
            }
            Poll::Pending => {
                ready!(this.timeout.poll_tick(cx));
                this.reuse = None;
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.as_ref().map_or_else(|| SizeHint::with_exact(0), Incoming::size_hint)
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        let (Some(incoming), Some(reuse)) = (self.incoming.take(), self.reuse.take()) else { return };
        if incoming.is_end_stream() {
            reuse.give_back();
        } else if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(reuse.drain(incoming));
        }
    }
}

/// A new connection to `origin`, its I/O driven by a task of its own, which ends when the
/// connection closes.
async fn connect(origin: &Origin, timeout: Duration) -> Result<SendRequest<WasiBody>, Error> {
    let tcp = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&origin.authority)).await {
        Ok(stream) => stream.map_err(Error::Connect)?,
        Err(_) => return Err(Error::ConnectionTimeout),
    };
    let _ = tcp.set_nodelay(true);
    let tcp = QuickAck(tcp);
    if origin.tls {
        let host = origin.authority.rsplit_once(':').map_or(origin.authority.as_str(), |(host, _)| host);
        let name = rustls::pki_types::ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_string())?;
        let tls = tokio_rustls::TlsConnector::from(tls_config()).connect(name, tcp).await.map_err(Error::Tls)?;
        handshake(tls, timeout).await
    } else {
        handshake(tcp, timeout).await
    }
}

/// A TCP stream that acknowledges what it read at once (`TCP_QUICKACK`, on Linux). On a
/// connection kept open between requests, Linux leaves the quick-ack mode a connection
/// starts in and delays its acknowledgements (by up to 40 ms); a server that leaves
/// Nagle's algorithm on then holds back each small chunk of a stream until the previous
/// one is acknowledged, which added 38 ms to a prompt of the load benchmark. Linux clears
/// the flag as it goes, so it is set again after every read.
struct QuickAck(tokio::net::TcpStream);

impl QuickAck {
    #[cfg(target_os = "linux")]
    fn acknowledge_at_once(&self) {
        use std::os::fd::AsRawFd;
        let on: libc::c_int = 1;
        // SAFETY: the descriptor is this stream's, open while `self` lives; the option's
        // value is a live `c_int` of the size given. A failure only leaves the kernel's
        // default, so its result is not needed.
        unsafe {
            libc::setsockopt(
                self.0.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }

    #[cfg(not(target_os = "linux"))]
    fn acknowledge_at_once(&self) {}
}

impl tokio::io::AsyncRead for QuickAck {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.0).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.acknowledge_at_once();
        }
        poll
    }
}

impl tokio::io::AsyncWrite for QuickAck {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

async fn handshake<S>(stream: S, timeout: Duration) -> Result<SendRequest<WasiBody>, Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let handshake = hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(stream));
    let (sender, connection) = tokio::time::timeout(timeout, handshake).await.map_err(|_| Error::ConnectionTimeout)??;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "an outgoing connection ended with an error");
        }
    });
    Ok(sender)
}

/// The TLS client settings: the web PKI roots, as `wasmtime-wasi-http` uses them.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.into() };
            Arc::new(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
        })
        .clone()
}
