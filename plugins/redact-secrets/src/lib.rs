//! `redact-secrets`: a `tool.after` hook that masks, in the text and title of every tool
//! result, strings that look like API keys, access tokens and private keys, before the model
//! or the log sees them. A match becomes `[REDACTED:<kind>]`.
//!
//! Operators may add patterns of their own (Rust regex syntax) in `plugboard.toml`:
//!
//! ```toml
//! [hooks.redact-secrets]
//! enabled = true
//!
//! [plugins.redact-secrets.settings]
//! extra_patterns = ["corp-[0-9a-f]{32}"]
//! ```

use std::sync::OnceLock;

use plugboard_sdk::hook::{HookContext, ToolCall, ToolResult};
use regex::{Captures, Regex};

/// The kinds of secret recognised, each a named group of one regex (compiled once per
/// instance). Order matters: the first alternative that matches at a position wins.
const PATTERNS: &[(&str, &str)] = &[
    ("private-key", r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
    ("anthropic-key", r"\bsk-ant-[A-Za-z0-9_\-]{20,}"),
    ("openai-key", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"),
    ("github-token", r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})"),
    ("aws-access-key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    ("slack-token", r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"),
    ("google-api-key", r"\bAIza[0-9A-Za-z_\-]{35}"),
    ("stripe-key", r"\b[rs]k_(?:live|test)_[0-9A-Za-z]{20,}"),
    ("jwt", r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
    ("bearer-token", r"(?i:\bbearer\s+)[A-Za-z0-9._~+/\-]{20,}=*"),
];

/// `key = value` assignments of secret-sounding names: only the value is masked.
const ASSIGNMENT: &str = r#"(?i)\b((?:api[_-]?key|secret[_-]?key|client[_-]?secret|access[_-]?token|auth[_-]?token|password|passwd)["']?\s*[:=]\s*["']?)([^\s"',;]{8,})"#;

fn secrets() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let alternatives: Vec<String> = PATTERNS.iter().map(|(kind, p)| format!("(?P<{}>{p})", kind.replace('-', "_"))).collect();
        Regex::new(&alternatives.join("|")).expect("the built-in patterns are valid")
    })
}

fn assignments() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(ASSIGNMENT).expect("the built-in pattern is valid"))
}

/// Masks every secret in `text`; `extra` are the operator's patterns.
fn redact(text: &str, extra: &[Regex]) -> String {
    let masked = secrets().replace_all(text, |caps: &Captures| {
        let kind = PATTERNS.iter().map(|(k, _)| *k).find(|k| caps.name(&k.replace('-', "_")).is_some()).unwrap_or("secret");
        if kind == "bearer-token" {
            // Keep the scheme, mask the credential.
            let whole = &caps[0];
            let scheme_end = whole.find(char::is_whitespace).unwrap_or(0);
            let rest = &whole[scheme_end..];
            let spaces = rest.len() - rest.trim_start().len();
            return format!("{}[REDACTED:{kind}]", &whole[..scheme_end + spaces]);
        }
        format!("[REDACTED:{kind}]")
    });
    let masked = assignments().replace_all(&masked, |caps: &Captures| {
        if caps[2].starts_with("[REDACTED") { caps[0].to_string() } else { format!("{}[REDACTED:assignment]", &caps[1]) }
    });
    let mut text = masked.into_owned();
    for pattern in extra {
        text = pattern.replace_all(&text, "[REDACTED:custom]").into_owned();
    }
    text
}

/// The operator's extra patterns; an invalid one is reported and skipped.
fn extra_patterns() -> Vec<Regex> {
    let patterns: Vec<String> = match plugboard_sdk::host::setting("extra_patterns") {
        Ok(p) => p.unwrap_or_default(),
        Err(e) => {
            plugboard_sdk::host::warn(&format!("{e}; expected a list of regular expressions"));
            Vec::new()
        }
    };
    patterns
        .iter()
        .filter_map(|p| match Regex::new(p) {
            Ok(re) => Some(re),
            Err(e) => {
                plugboard_sdk::host::warn(&format!("extra pattern `{p}` is not a valid regex and is skipped: {e}"));
                None
            }
        })
        .collect()
}

fn redact_result(_ctx: &HookContext, _call: &ToolCall, result: &mut ToolResult) {
    let extra = extra_patterns();
    result.text = redact(&result.text, &extra);
    if let Some(title) = &result.title {
        result.title = Some(redact(title, &extra));
    }
}

plugboard_sdk::export_hooks! {
    tool_after: redact_result,
}
