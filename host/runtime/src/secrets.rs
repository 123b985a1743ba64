//! Masking configured secrets by exact value. A secret may come back from where it went: a
//! granted endpoint that echoes request headers, a provider error that quotes the key, a
//! command's output. [`Redactor`] replaces every occurrence of each known secret (the API
//! keys of the configuration and of its `api_key_env` variables, the server's shared
//! secret, a session's own key) with [`MASK`] where such text enters Plugboard: responses
//! to plugins' HTTP requests, before the plugin reads them; command output, before the
//! plugin or the event log sees it; and what a plugin hands back (a tool's result and error
//! text, a provider's error, a crash's stderr), before the model, the store or a log does.
//!
//! Values shorter than [`MIN_SECRET_LEN`] are not masked: they would match ordinary text.

use std::borrow::Cow;
use std::sync::Arc;

use aho_corasick::AhoCorasick;

/// What a secret is replaced with.
pub const MASK: &str = "[redacted]";

/// Shorter values are not treated as secrets.
pub const MIN_SECRET_LEN: usize = 8;

/// Finds and masks a set of secret values.
#[derive(Clone, Default)]
pub struct Redactor {
    matcher: Option<Arc<AhoCorasick>>,
    /// The longest secret's length: a stream keeps that much minus one byte back, since a
    /// secret may be split between two chunks.
    longest: usize,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.matcher.as_ref().map_or(0, |m| m.patterns_len()))
    }
}

impl Redactor {
    /// A redactor of `secrets` (empty and short values are left out).
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut values: Vec<&str> = secrets.into_iter().filter(|s| s.len() >= MIN_SECRET_LEN).collect();
        values.sort_unstable_by_key(|s| std::cmp::Reverse(s.len()));
        values.dedup();
        if values.is_empty() {
            return Redactor::default();
        }
        let matcher = AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(&values)
            .expect("literal patterns always build");
        Redactor { longest: values[0].len(), matcher: Some(Arc::new(matcher)) }
    }

    /// Whether there is anything to mask.
    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// `text` with every secret masked.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        match &self.matcher {
            Some(m) if m.is_match(text) => Cow::Owned(m.replace_all(text, &vec![MASK; m.patterns_len()])),
            _ => Cow::Borrowed(text),
        }
    }

    /// `bytes` with every secret masked.
    pub fn redact_bytes<'b>(&self, bytes: &'b [u8]) -> Cow<'b, [u8]> {
        match &self.matcher {
            Some(m) if m.is_match(bytes) => Cow::Owned(m.replace_all_bytes(bytes, &vec![MASK.as_bytes(); m.patterns_len()])),
            _ => Cow::Borrowed(bytes),
        }
    }

    /// Masks what can be masked of a stream's `buffer` so far: returns the bytes safe to
    /// pass on, and leaves in `buffer` the tail that may be the start of a secret.
    pub fn redact_partial(&self, buffer: &mut Vec<u8>) -> Vec<u8> {
        let Some(m) = &self.matcher else { return std::mem::take(buffer) };
        let mut out = Vec::with_capacity(buffer.len());
        let mut from = 0;
        for found in m.find_iter(buffer.as_slice()) {
            out.extend_from_slice(&buffer[from..found.start()]);
            out.extend_from_slice(MASK.as_bytes());
            from = found.end();
        }
        // After the last match, a secret may have begun within the last `longest - 1` bytes.
        let keep_from = buffer.len().saturating_sub(self.longest - 1).max(from);
        out.extend_from_slice(&buffer[from..keep_from]);
        buffer.drain(..keep_from);
        out
    }
}

/// The secret values the configuration names: each plugin's `api_key`, the variables of
/// `api_key_env` (and of the first-party providers' defaults), and the server's shared
/// secret.
pub fn configured(config: &crate::runtime::config::RuntimeConfig) -> Vec<String> {
    let plugins = &config.plugins;
    let mut secrets: Vec<String> = plugins.values().filter_map(|g| g.api_key.as_ref().map(|k| k.expose().to_string())).collect();
    secrets.extend(config.mcp_servers.values().flat_map(|server| server.secrets()));
    let mut variables: Vec<String> = plugins.values().filter_map(|g| g.api_key_env.clone()).collect();
    variables.extend(["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "PLUGBOARD_SHARED_SECRET"].map(String::from));
    secrets.extend(variables.iter().filter_map(|name| std::env::var(name).ok()));
    secrets.retain(|s| s.len() >= MIN_SECRET_LEN);
    secrets.sort();
    secrets.dedup();
    secrets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_occurrence_is_masked_and_short_values_are_not_secrets() {
        let r = Redactor::new(["sk-secret-123", "short", "sk-secret-123-longer"]);
        assert_eq!(r.redact("a sk-secret-123 b sk-secret-123-longer c"), "a [redacted] b [redacted] c");
        assert_eq!(r.redact("short stays"), "short stays");
        assert!(matches!(r.redact("nothing here"), Cow::Borrowed(_)));
        assert!(Redactor::new(["tiny"]).is_empty());
    }

    #[test]
    fn a_secret_split_between_chunks_is_masked() {
        let r = Redactor::new(["sk-secret-123"]);
        let text = b"header: sk-secret-123; again sk-secret-123!";
        for split in 0..text.len() {
            let mut buffer = Vec::new();
            let mut out = Vec::new();
            for chunk in [&text[..split], &text[split..]] {
                buffer.extend_from_slice(chunk);
                out.extend(r.redact_partial(&mut buffer));
            }
            out.extend(r.redact_bytes(&buffer).iter());
            assert_eq!(String::from_utf8(out).unwrap(), "header: [redacted]; again [redacted]!", "split at {split}");
        }
    }
}
