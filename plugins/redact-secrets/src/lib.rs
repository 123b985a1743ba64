//! `redact-secrets`: a `tool.after` hook that masks, in the text and title of every tool
//! result, strings that look like API keys, access tokens and private keys, before the model
//! or the log sees them. A match becomes `[REDACTED:<kind>]`.
//!
//! Each call runs in a fresh instance, so nothing compiled survives between calls. One
//! Aho-Corasick pass over the text finds which kinds of secret may be present (by their
//! fixed prefixes); only the patterns of those kinds are compiled and applied, so a result
//! without any candidate costs one scan.
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

use aho_corasick::AhoCorasick;
use plugboard_sdk::hook::{HookContext, ToolCall, ToolResult};
use regex::{Captures, Regex};

/// One kind of secret: its name, the literals one of which every match contains (matched
/// ASCII case-insensitively), and its pattern (ASCII classes: secrets are ASCII, and ASCII
/// patterns compile much faster than Unicode ones).
struct Kind {
    name: &'static str,
    needles: &'static [&'static str],
    pattern: &'static str,
}

/// In the order they are applied: a private key block first, assignments last.
const KINDS: &[Kind] = &[
    Kind {
        name: "private-key",
        needles: &["PRIVATE KEY-----"],
        pattern: r"(?-u)-----BEGIN [A-Z ]*PRIVATE KEY-----[A-Za-z0-9+/=\s:,\-]*?-----END [A-Z ]*PRIVATE KEY-----",
    },
    Kind { name: "anthropic-key", needles: &["sk-ant-"], pattern: r"(?-u)\bsk-ant-[A-Za-z0-9_\-]{20,}" },
    Kind { name: "openai-key", needles: &["sk-"], pattern: r"(?-u)\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}" },
    Kind {
        name: "github-token",
        needles: &["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"],
        pattern: r"(?-u)\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})",
    },
    Kind { name: "aws-access-key", needles: &["AKIA", "ASIA"], pattern: r"(?-u)\b(?:AKIA|ASIA)[0-9A-Z]{16}\b" },
    Kind { name: "slack-token", needles: &["xox"], pattern: r"(?-u)\bxox[abposr]-[A-Za-z0-9\-]{10,}" },
    Kind { name: "google-api-key", needles: &["AIza"], pattern: r"(?-u)\bAIza[0-9A-Za-z_\-]{35}" },
    Kind { name: "stripe-key", needles: &["k_live_", "k_test_"], pattern: r"(?-u)\b[rs]k_(?:live|test)_[0-9A-Za-z]{20,}" },
    Kind { name: "jwt", needles: &["eyJ"], pattern: r"(?-u)\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}" },
    // The scheme stays; the credential goes.
    Kind { name: "bearer-token", needles: &["bearer"], pattern: r"(?-u)(?i:\b(bearer\s+))[A-Za-z0-9._~+/\-]{20,}=*" },
    // `key = value` assignments of secret-sounding names: the name stays, the value goes.
    Kind {
        name: "assignment",
        needles: &["key", "secret", "token", "passw"],
        pattern: r#"(?-u)(?i)\b((?:api[_-]?key|secret[_-]?key|client[_-]?secret|access[_-]?token|auth[_-]?token|password|passwd)["']?\s*[:=]\s*["']?)([[:graph:]--["',;\[]]{8,})"#,
    },
];

/// The kinds whose literals occur in `text`, as indexes into [`KINDS`].
fn candidates(text: &str) -> Vec<usize> {
    let (needles, owners): (Vec<&str>, Vec<usize>) =
        KINDS.iter().enumerate().flat_map(|(i, k)| k.needles.iter().map(move |n| (*n, i))).unzip();
    let finder = AhoCorasick::builder().ascii_case_insensitive(true).build(&needles).expect("the needles are valid");
    let mut present = vec![false; KINDS.len()];
    for found in finder.find_overlapping_iter(text) {
        present[owners[found.pattern().as_usize()]] = true;
    }
    (0..KINDS.len()).filter(|i| present[*i]).collect()
}

/// Masks every secret in `text`; `extra` are the operator's patterns.
fn redact(text: &str, extra: &[Regex]) -> String {
    let mut text = text.to_string();
    for index in candidates(&text) {
        let kind = &KINDS[index];
        let pattern = Regex::new(kind.pattern).expect("the built-in patterns are valid");
        let replaced = pattern.replace_all(&text, |caps: &Captures| match kind.name {
            "bearer-token" => format!("{}[REDACTED:bearer-token]", &caps[1]),
            "assignment" => format!("{}[REDACTED:assignment]", &caps[1]),
            name => format!("[REDACTED:{name}]"),
        });
        if let std::borrow::Cow::Owned(replaced) = replaced {
            text = replaced;
        }
    }
    for pattern in extra {
        if let std::borrow::Cow::Owned(replaced) = pattern.replace_all(&text, "[REDACTED:custom]") {
            text = replaced;
        }
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
