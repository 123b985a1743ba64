//! Outgoing HTTP(S) through `wasi:http`, subject to the plugin's network grant.
//!
//! ```text
//! let response = plugboard_sdk::http::Request::get("https://example.com/")?.send()?;
//! let body = response.text(1 << 20)?;
//! ```

use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, IncomingBody, IncomingResponse, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasip2::io::streams::{InputStream, StreamError};

use crate::{CapabilityKind, ToolError};

/// An HTTP request to send.
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    uri: http::Uri,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    timeout_ms: Option<u64>,
}

impl Request {
    /// A request with `method` to `url` (`http://` or `https://`).
    pub fn new(method: &str, url: &str) -> Result<Self, ToolError> {
        let uri: http::Uri = url.parse().map_err(|e| ToolError::InvalidArguments(format!("`{url}` is not a valid URL: {e}")))?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => {
                return Err(ToolError::InvalidArguments(format!("`{url}` must start with http:// or https://")));
            }
        }
        if uri.authority().is_none() {
            return Err(ToolError::InvalidArguments(format!("`{url}` has no host")));
        }
        let method = match method.to_ascii_uppercase().as_str() {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "HEAD" => Method::Head,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_string()),
        };
        Ok(Request { method, uri, headers: Vec::new(), body: Vec::new(), timeout_ms: None })
    }

    /// A GET request to `url`.
    pub fn get(url: &str) -> Result<Self, ToolError> {
        Self::new("GET", url)
    }

    /// A POST request to `url`.
    pub fn post(url: &str) -> Result<Self, ToolError> {
        Self::new("POST", url)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.as_bytes().to_vec()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Limits the time to the first byte of the response.
    pub fn timeout_ms(mut self, ms: u64) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// The URL.
    pub fn url(&self) -> String {
        self.uri.to_string()
    }

    /// The host part of the URL, as named in errors.
    fn host(&self) -> String {
        format!("{}://{}", self.uri.scheme_str().unwrap_or("https"), self.uri.authority().map(|a| a.as_str()).unwrap_or(""))
    }

    /// Sends the request and waits for the response head.
    pub fn send(self) -> Result<Response, ToolError> {
        let host = self.host();
        let fields = Fields::new();
        for (name, value) in &self.headers {
            fields.append(name, value).map_err(|e| ToolError::InvalidArguments(format!("header `{name}`: {e:?}")))?;
        }
        if !self.body.is_empty() && !self.headers.iter().any(|(n, _)| n == "content-length") {
            let length = self.body.len().to_string();
            fields.append("content-length", length.as_bytes()).map_err(|e| ToolError::failed(format!("content-length: {e:?}")))?;
        }
        let request = OutgoingRequest::new(fields);
        let _ = request.set_method(&self.method);
        let scheme = if self.uri.scheme_str() == Some("http") { Scheme::Http } else { Scheme::Https };
        let _ = request.set_scheme(Some(&scheme));
        let _ = request.set_authority(self.uri.authority().map(|a| a.as_str()));
        let _ = request.set_path_with_query(Some(self.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")));
        let outgoing_body = request.body().map_err(|_| ToolError::failed("request body already taken"))?;
        let options = self.timeout_ms.map(|ms| {
            let o = wasip2::http::types::RequestOptions::new();
            let _ = o.set_first_byte_timeout(Some(ms * 1_000_000));
            o
        });
        // Send first, then stream the body: the host buffers little of it before the request
        // is under way, so writing a large body before `handle` would never finish.
        let future = outgoing_handler::handle(request, options).map_err(|e| map_error(e, &host))?;
        if !self.body.is_empty() {
            let stream = outgoing_body.write().map_err(|_| ToolError::failed("request body stream unavailable"))?;
            for chunk in self.body.chunks(4096) {
                if let Err(e) = stream.blocking_write_and_flush(chunk) {
                    // The request failed while its body was going out (refused by the
                    // network grant, connection refused, ...): the response says why.
                    drop(stream);
                    drop(outgoing_body);
                    future.subscribe().block();
                    return Err(match future.get() {
                        Some(Ok(Err(code))) => map_error(code, &host),
                        _ => ToolError::failed(format!("sending the request body to {host}: {e:?}")),
                    });
                }
            }
            drop(stream);
        }
        OutgoingBody::finish(outgoing_body, None).map_err(|e| map_error(e, &host))?;
        future.subscribe().block();
        let response = match future.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(e))) => return Err(map_error(e, &host)),
            Some(Err(())) | None => {
                return Err(ToolError::failed(format!("request to {host} produced no response")));
            }
        };
        Response::new(response, host)
    }
}

/// Maps a `wasi:http` error; a refusal by the host's network policy becomes a denial.
fn map_error(e: ErrorCode, host: &str) -> ToolError {
    match e {
        ErrorCode::HttpRequestDenied => ToolError::denied(CapabilityKind::Network, host, "the host is not in this plugin's network grant"),
        ErrorCode::DnsError(d) => ToolError::failed(format!("cannot resolve {host}: {}", d.rcode.unwrap_or_default())),
        ErrorCode::ConnectionRefused => ToolError::failed(format!("connection to {host} refused")),
        ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout => ToolError::failed(format!("connection to {host} timed out")),
        other => ToolError::failed(format!("request to {host} failed: {other:?}")),
    }
}

/// A host error's debug text without the backtrace the host may have captured with it
/// (`RUST_BACKTRACE=1`): the backtrace is the host's business, not the user's.
fn without_backtrace(debug: &str) -> &str {
    debug.split("Stack backtrace:").next().unwrap_or(debug).trim_end()
}

/// A response whose body can be read whole or chunk by chunk.
pub struct Response {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    host: String,
    // Field order matters: the stream must be dropped before the body, the body before
    // the response.
    stream: Option<InputStream>,
    _body: Option<IncomingBody>,
    _response: IncomingResponse,
}

impl Response {
    fn new(response: IncomingResponse, host: String) -> Result<Self, ToolError> {
        let status = response.status();
        let headers = response.headers().entries();
        let body = response.consume().map_err(|_| ToolError::failed("response body already taken"))?;
        let stream = body.stream().map_err(|_| ToolError::failed("response body stream unavailable"))?;
        Ok(Response { status, headers, host, stream: Some(stream), _body: Some(body), _response: response })
    }

    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first value of header `name` (case-insensitive), as text.
    pub fn header(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| n.to_ascii_lowercase() == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// The next chunk of the body, or `None` at its end.
    pub fn read_chunk(&mut self) -> Result<Option<Vec<u8>>, ToolError> {
        let Some(stream) = &self.stream else {
            return Ok(None);
        };
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => Ok(Some(chunk)),
            Err(StreamError::Closed) => {
                self.stream = None;
                Ok(None)
            }
            Err(StreamError::LastOperationFailed(e)) => {
                Err(ToolError::failed(format!("reading the response from {}: {}", self.host, without_backtrace(&e.to_debug_string()))))
            }
        }
    }

    /// The whole body, at most `limit` bytes; the second value is true when it was cut.
    pub fn bytes(mut self, limit: usize) -> Result<(Vec<u8>, bool), ToolError> {
        let mut out = Vec::new();
        while let Some(chunk) = self.read_chunk()? {
            let room = limit.saturating_sub(out.len());
            if chunk.len() > room {
                out.extend_from_slice(&chunk[..room]);
                return Ok((out, true));
            }
            out.extend_from_slice(&chunk);
        }
        Ok((out, false))
    }

    /// The whole body as text (lossy UTF-8), at most `limit` bytes.
    pub fn text(self, limit: usize) -> Result<(String, bool), ToolError> {
        let (bytes, cut) = self.bytes(limit)?;
        Ok((String::from_utf8_lossy(&bytes).into_owned(), cut))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_errors_backtrace_is_left_out_of_its_text() {
        let debug = "connection reset\n\nStack backtrace:\n   0: anyhow::error\n   1: wasmtime::call";
        assert_eq!(without_backtrace(debug), "connection reset");
        assert_eq!(without_backtrace("timed out"), "timed out");
    }
}
