//! The `fetch` tool: an HTTP GET through `wasi:http`, subject to the network grant.

use plugboard_sdk::http::Request;
use plugboard_sdk::prelude::*;

const DEFAULT_MAX_BYTES: usize = 512 * 1024;

#[args]
struct FetchArgs {
    /// The URL to fetch (http:// or https://).
    url: String,
    /// Give up after this many milliseconds without a response. Default: 30000.
    #[serde(default)]
    timeout_ms: Option<u64>,
    /// Return at most this many bytes of the body. Default: 524288.
    #[serde(default)]
    max_bytes: Option<usize>,
}

/// Fetches a URL with HTTP GET and returns the response body as text, with the status and
/// content type. Only hosts granted to this plugin can be reached.
#[tool]
fn fetch(args: FetchArgs, _ctx: &Context) -> Result<Output, ToolError> {
    let request = Request::get(&args.url)?
        .header("user-agent", concat!("plugboard-fetch/", env!("CARGO_PKG_VERSION")))
        .header("accept", "text/html, text/plain, application/json, */*;q=0.5")
        .timeout_ms(args.timeout_ms.unwrap_or(30_000));
    let response = request.send()?;
    let status = response.status();
    let content_type = response.header("content-type").unwrap_or_default();
    let limit = args.max_bytes.unwrap_or(DEFAULT_MAX_BYTES).max(1);
    let (bytes, cut) = response.bytes(limit)?;
    if plugboard_sdk::fs::looks_binary(&bytes) {
        return Err(ToolError::failed(format!("{} returned binary content ({content_type}); fetch returns text only", args.url)));
    }
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if cut {
        text.push_str(&format!("\n\n(body cut at {limit} bytes)"));
    }
    if !(200..300).contains(&status) {
        return Err(ToolError::failed(format!("{} answered HTTP {status}: {}", args.url, text.chars().take(2000).collect::<String>())));
    }
    Ok(Output::text(text)
        .with_title(format!("{} ({status}, {content_type})", args.url))
        .with_metadata(json!({ "url": args.url, "status": status, "content_type": content_type, "bytes": bytes.len(), "truncated": cut })))
}

export_tools!(fetch);
