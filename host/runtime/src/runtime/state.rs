//! The data of one call's `Store`: its WASI context (only the granted directories and
//! variables), the `wasi:http` context with the network policy as hooks, the memory limiter,
//! and the host interfaces every plugin imports.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::capability::CapabilityPolicy;
use crate::capability::filesystem::Access;
use crate::capability::network::NetworkPolicy;
use crate::capability::process::CommandError;
use crate::runtime::bindings::{host, process, types};
use crate::runtime::connections::Connections;

/// Receives the partial output (`host.progress`) of a running call.
pub type ProgressSink = Arc<dyn Fn(&str) + Send + Sync>;

/// Bytes of a plugin's stderr kept to explain a crash.
const STDERR_CAPACITY: usize = 16 * 1024;

/// Filesystem calls run on the thread that runs the guest, instead of each being handed to
/// a blocking thread and back (which cost a `read` call most of its CPU and about 30
/// context switches). The guest's thread is where the call already computes, and it yields
/// to the async runtime at every epoch tick; what a call can open is bounded to regular
/// files and directories (FIFOs, devices and sockets are refused at `open-at`), so each
/// operation returns as soon as the disk does. A granted directory on a mount that hangs
/// (a dead network share) would hold that thread, as it would hold a blocking one.
pub(crate) const FS_ON_CURRENT_THREAD: bool = true;

/// What the host refused during a call, to explain the call's failure precisely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDenial {
    /// The kind of capability.
    pub kind: crate::capability::CapabilityKind,
    /// What was refused.
    pub target: String,
    /// Why.
    pub reason: String,
}

/// The `T` of `Store<T>` for one call.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    hooks: NetworkHooks,
    pub(crate) limiter: MemoryLimiter,
    policy: Arc<CapabilityPolicy>,
    progress: Option<ProgressSink>,
    pub(crate) stderr: MemoryOutputPipe,
    pub(crate) denials: Vec<HostDenial>,
}

impl CallState {
    /// Prepares the sandbox of one call from the plugin's policy.
    pub fn new(policy: Arc<CapabilityPolicy>, progress: Option<ProgressSink>, connections: Arc<Connections>) -> anyhow::Result<Self> {
        let mut builder = WasiCtx::builder();
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        builder
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .allow_blocking_current_thread(FS_ON_CURRENT_THREAD);
        for (name, value) in &policy.env {
            builder.env(name, value);
        }
        for grant in &policy.filesystem {
            grant.still_in_place().map_err(anyhow::Error::msg)?;
            let perms = match grant.access {
                Access::ReadOnly => FsPerms::ReadOnly,
                Access::ReadWrite => FsPerms::ReadWrite,
            };
            let guest_path = grant.path.to_string_lossy();
            builder
                .preopened_dir(&grant.path, guest_path.as_ref(), perms)
                .map_err(|e| anyhow::anyhow!("cannot open granted directory `{}`: {e}", grant.path.display()))?;
        }
        let memory = (policy.limits.memory_mib as usize) << 20;
        let progress = progress.map(|sink| capped(sink, policy.limits.max_output_bytes as usize, policy.redactor.clone()));
        Ok(CallState {
            wasi: builder.build(),
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            hooks: NetworkHooks {
                policy: policy.network.clone(),
                credential: policy.credential.clone(),
                redactor: policy.redactor.clone(),
                connections,
                denials: Vec::new(),
            },
            limiter: MemoryLimiter { max_bytes: memory, exceeded: false },
            policy,
            progress,
            stderr,
            denials: Vec::new(),
        })
    }

    /// Masks the secrets this call's policy knows (a session's own key included).
    pub(crate) fn redactor(&self) -> &crate::secrets::Redactor {
        &self.policy.redactor
    }

    /// The call's resources, for host functions linked beside WASI's.
    pub(crate) fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// Everything the host refused during the call.
    pub fn take_denials(&mut self) -> Vec<HostDenial> {
        let mut all = std::mem::take(&mut self.denials);
        all.append(&mut self.hooks.denials);
        all
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

/// Caps the plugin's linear memory and remembers whether the cap was hit.
pub(crate) struct MemoryLimiter {
    max_bytes: usize,
    pub(crate) exceeded: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.exceeded = true;
            wasmtime::bail!("memory limit of {} MiB exceeded (wanted {} MiB)", self.max_bytes >> 20, desired.div_ceil(1 << 20));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// What `WasiHttpHooks::send_request` returns: the response and the task that drives it.
pub(crate) type SentRequest = Box<
    dyn Future<
            Output = Result<
                (http::Response<wasmtime_wasi_http::WasiBody>, Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>),
                wasmtime_wasi_http::Error,
            >,
        > + Send,
>;

/// The network policy, where `wasi:http` sends requests: a refused request is never sent.
/// A provider's API key is added here, to allowed requests only; the plugin can neither
/// read nor set that header. The response's headers and body reach the plugin with every
/// known secret masked, so an endpoint that echoes the key does not hand it over. Allowed
/// requests go out on the sandbox's [`Connections`], which keep them open between requests.
struct NetworkHooks {
    policy: NetworkPolicy,
    credential: Option<crate::capability::Credential>,
    redactor: crate::secrets::Redactor,
    connections: Arc<Connections>,
    denials: Vec<HostDenial>,
}

impl WasiHttpHooks for NetworkHooks {
    fn forbidden_header_filter(&mut self) -> wasmtime_wasi_http::ForbiddenHeaderFilter {
        let credential = self.credential.as_ref().map(|c| c.header.clone());
        std::sync::Arc::new(move |name| {
            wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(name) || credential.as_ref().is_some_and(|c| c == name)
        })
    }

    fn send_request(
        &mut self,
        mut request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> SentRequest {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("https").to_string();
        let host = uri.host().unwrap_or("").to_string();
        let port = uri.port_u16();
        if let Err(denial) = self.policy.check(&scheme, &host, port) {
            let target = match port {
                Some(p) => format!("{scheme}://{host}:{p}"),
                None => format!("{scheme}://{host}"),
            };
            return self.refuse(target, denial.reason());
        }
        let port = port.unwrap_or_else(|| crate::capability::network::default_port(&scheme));
        if crate::capability::network::names_plugboard(&host, port) {
            return self.refuse(format!("{scheme}://{host}:{port}"), crate::capability::network::OWN_API);
        }
        if let Some(credential) = &self.credential {
            request.headers_mut().insert(credential.header.clone(), credential.value.clone());
        }
        let redactor = self.redactor.clone();
        let connections = self.connections.clone();
        Box::new(async move {
            // A name that resolves to Plugboard's own API (checked only on a port it serves).
            if crate::capability::network::resolves_to_plugboard(&host, port).await {
                tracing::info!(target = %format!("{scheme}://{host}:{port}"), "outgoing request to Plugboard's own API refused");
                return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
            }
            let response = connections.send(request, options).await?;
            let response = if redactor.is_empty() { response } else { redact_response(response, redactor) };
            // The connection's I/O is a task of its own (it may outlive this response).
            Ok((response, Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>))
        })
    }
}

impl NetworkHooks {
    /// Refuses a request to `target` before anything is sent, and records why.
    fn refuse(&mut self, target: String, reason: &'static str) -> SentRequest {
        tracing::info!(%target, reason, "outgoing request refused");
        self.denials.push(HostDenial { kind: crate::capability::CapabilityKind::Network, target, reason: reason.into() });
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// A response with every secret masked in its header values and body (a secret split
/// between two chunks of the body included).
fn redact_response<B>(response: http::Response<B>, redactor: crate::secrets::Redactor) -> http::Response<wasmtime_wasi_http::WasiBody>
where
    B: http_body::Body<Data = bytes::Bytes, Error = wasmtime_wasi_http::Error> + Send + 'static,
{
    use http_body_util::BodyExt;
    let (mut parts, body) = response.into_parts();
    for value in parts.headers.values_mut() {
        if let std::borrow::Cow::Owned(masked) = redactor.redact_bytes(value.as_bytes())
            && let Ok(masked) = http::HeaderValue::from_bytes(&masked)
        {
            *value = masked;
        }
    }
    let stream = async_stream::stream! {
        let mut body = std::pin::pin!(body);
        let mut held = Vec::new();
        while let Some(frame) = body.frame().await {
            match frame.map(|f| f.into_data()) {
                Ok(Ok(data)) => {
                    held.extend_from_slice(&data);
                    let ready = redactor.redact_partial(&mut held);
                    if !ready.is_empty() {
                        yield Ok(http_body::Frame::data(bytes::Bytes::from(ready)));
                    }
                }
                Ok(Err(trailers)) => yield Ok(trailers),
                Err(e) => yield Err(e),
            }
        }
        if !held.is_empty() {
            yield Ok(http_body::Frame::data(bytes::Bytes::from(redactor.redact_bytes(&held).into_owned())));
        }
    };
    http::Response::from_parts(parts, http_body_util::StreamBody::new(stream).boxed_unsync())
}

impl types::Host for CallState {}

impl host::Host for CallState {
    async fn log(&mut self, level: types::LogLevel, message: String) {
        let plugin = self.policy.plugin_id.as_str();
        let message = self.policy.redactor.redact(truncate(&message, 4096)).into_owned();
        match level {
            types::LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            types::LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            types::LogLevel::Info => tracing::info!(plugin, "{message}"),
            types::LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            types::LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
    }

    async fn progress(&mut self, text: String) {
        if let Some(sink) = &self.progress {
            sink(&text);
        }
    }

    async fn config(&mut self, key: String) -> Option<String> {
        self.policy.settings.get(&key).cloned()
    }
}

impl process::Host for CallState {
    async fn run(&mut self, command: process::Command) -> Result<process::CommandOutput, process::CommandError> {
        let timeout = command.timeout_ms.map(|ms| std::time::Duration::from_millis(ms.into()));
        let redactor = &self.policy.redactor;
        let live = self.progress.as_deref();
        match self.policy.process.run(&command.command_line, &command.working_directory, timeout, live).await {
            Ok(r) => Ok(process::CommandOutput {
                exit_code: r.exit_code,
                stdout: redactor.redact(&r.stdout).into_owned(),
                stderr: redactor.redact(&r.stderr).into_owned(),
                truncated: r.truncated,
                timed_out: r.timed_out,
            }),
            Err(CommandError::Denied(denial)) => {
                tracing::info!(plugin = %self.policy.plugin_id, command = %command.command_line, reason = %denial.reason, "command refused");
                self.denials.push(HostDenial { kind: denial.kind, target: denial.command, reason: denial.reason.clone() });
                Err(process::CommandError::Denied(denial.reason))
            }
            Err(CommandError::Failed(message)) => Err(process::CommandError::Failed(message)),
        }
    }
}

/// `sink`, passing on at most `cap` bytes in all, with every secret masked: a call's live
/// output (its `progress` and its commands' output as it comes) is stored as events, so it
/// is bounded like the call's result. What is over the cap is dropped, with one notice.
/// The live output is one stream: a secret split between two pieces is still masked, since
/// a tail that may begin one is held back until the next piece, or until the call's store
/// is dropped.
fn capped(sink: ProgressSink, cap: usize, redactor: crate::secrets::Redactor) -> ProgressSink {
    let live = LiveOutput { sink, cap, redactor, state: std::sync::Mutex::new((0, Vec::new())) };
    Arc::new(move |text: &str| live.send(text))
}

/// The state behind [`capped`]: bytes passed on so far, and the held-back tail.
struct LiveOutput {
    sink: ProgressSink,
    cap: usize,
    redactor: crate::secrets::Redactor,
    state: std::sync::Mutex<(usize, Vec<u8>)>,
}

impl LiveOutput {
    fn send(&self, text: &str) {
        let Ok(mut state) = self.state.lock() else { return };
        let (sent, held) = &mut *state;
        if *sent >= self.cap {
            return;
        }
        held.extend_from_slice(text.as_bytes());
        let mut out = self.redactor.redact_partial(held);
        // The safe part may end inside a character that the held tail completes.
        let valid = std::str::from_utf8(&out).map_or_else(|e| e.valid_up_to(), |_| out.len());
        let tail = out.split_off(valid);
        held.splice(0..0, tail);
        self.emit(sent, &String::from_utf8_lossy(&out));
    }

    fn emit(&self, sent: &mut usize, text: &str) {
        if text.is_empty() || *sent >= self.cap {
            return;
        }
        let room = self.cap - *sent;
        (self.sink)(truncate(text, room));
        *sent += text.len();
        if text.len() > room {
            (self.sink)(&format!("\n[progress output over this call's limit of {} bytes is dropped]\n", self.cap));
        }
    }
}

impl Drop for LiveOutput {
    fn drop(&mut self) {
        let Ok(mut state) = self.state.lock() else { return };
        let (sent, held) = &mut *state;
        let rest = String::from_utf8_lossy(&self.redactor.redact_bytes(held)).into_owned();
        self.emit(sent, &rest);
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    #[test]
    fn live_output_masks_a_secret_split_between_pieces_and_flushes_its_tail_when_dropped() {
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let record = seen.clone();
        let sink: super::ProgressSink = Arc::new(move |t: &str| record.lock().unwrap().push(t.to_string()));
        let live = super::capped(sink, 1 << 20, crate::secrets::Redactor::new(["sk-secret-123"]));
        for piece in ["key=sk-se", "cret-123 é", "\u{e9}nd sk-secret", "-12"] {
            live(piece);
        }
        drop(live);
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0], "key=[redacted]", "the first piece's start of the secret was held back");
        assert_eq!(seen.concat(), "key=[redacted] é\u{e9}nd sk-secret-12", "everything arrives, in order, the tail at the end");
    }

    #[test]
    fn live_output_stops_at_its_cap_with_one_notice() {
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let record = seen.clone();
        let sink: super::ProgressSink = Arc::new(move |t: &str| record.lock().unwrap().push(t.to_string()));
        let live = super::capped(sink, 10, crate::secrets::Redactor::default());
        live("0123456789abc");
        live("more");
        drop(live);
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0], "0123456789");
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(seen[1].contains("limit of 10 bytes"), "{seen:?}");
    }
}
