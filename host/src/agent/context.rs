//! The model's context window as the agent plans for it: how many tokens a request is taken
//! to hold (characters over a ratio that only ever errs towards more tokens), how much of
//! the window the input may fill (the rest is kept for the answer), and how a tool's output
//! is cut for the model when it is too long (the whole output stays stored). Pure
//! functions: no store, no plugins.

use std::borrow::Cow;

use crate::runtime::provider::{CompletionRequest, ContentPart, Message, ToolSpec};
use crate::store::sessions::Tokens;

/// Characters a token is taken to hold until a provider's reported usage says it holds
/// fewer. English prose runs about 4 to a token; code and other scripts fewer.
pub const CHARS_PER_TOKEN: f64 = 4.0;
/// The fewest characters a token is ever taken to hold, whatever a provider reports.
const MIN_CHARS_PER_TOKEN: f64 = 1.5;

/// The characters of a conversation's messages.
pub fn message_chars(messages: &[Message]) -> usize {
    messages.iter().flat_map(|m| &m.parts).map(part_chars).sum()
}

/// The characters of one part of a message.
pub fn part_chars(part: &ContentPart) -> usize {
    match part {
        ContentPart::Text(text) => text.len(),
        ContentPart::Reasoning((text, _)) => text.len(),
        ContentPart::ToolCall(call) => call.name.len() + call.arguments.len(),
        ContentPart::ToolResult(result) => result.content.len(),
    }
}

/// The characters a request sends beside its messages: the system prompt and the tools.
pub fn fixed_chars(request: &CompletionRequest) -> usize {
    request.system.as_ref().map_or(0, String::len) + tools_chars(&request.tools)
}

/// The characters of the tools a request offers.
pub fn tools_chars(tools: &[ToolSpec]) -> usize {
    tools.iter().map(|t| t.name.len() + t.description.len() + t.parameters_schema.len()).sum()
}

/// The characters of what a request sends: the system prompt, every part of every message,
/// and the tools offered.
pub fn request_chars(request: &CompletionRequest) -> usize {
    fixed_chars(request) + message_chars(&request.messages)
}

/// Turns characters into tokens, at a ratio that starts at [`CHARS_PER_TOKEN`] and moves
/// down (never up) to what the provider reports: an estimate that errs towards more tokens
/// compacts a little early rather than sending a request that does not fit.
#[derive(Debug, Clone, Copy)]
pub struct Estimator {
    chars_per_token: f64,
}

impl Default for Estimator {
    fn default() -> Self {
        Estimator { chars_per_token: CHARS_PER_TOKEN }
    }
}

impl Estimator {
    /// The tokens `chars` characters are taken to hold.
    pub fn tokens(&self, chars: usize) -> u64 {
        (chars as f64 / self.chars_per_token).ceil() as u64
    }

    /// The characters `tokens` tokens are taken to hold.
    pub fn chars(&self, tokens: u64) -> usize {
        (tokens as f64 * self.chars_per_token) as usize
    }

    /// Learns from a turn that sent `chars` characters and was billed `input` tokens for
    /// them (cached ones included).
    pub fn observe(&mut self, chars: usize, input: u64) {
        if input == 0 || chars == 0 {
            return;
        }
        let ratio = (chars as f64 / input as f64).max(MIN_CHARS_PER_TOKEN);
        self.chars_per_token = self.chars_per_token.min(ratio);
    }
}

/// The tokens of a turn whose provider reported no usage (a stream cut before its usage
/// came, a server that sends none), estimated from what was sent (`sent` characters) and
/// what streamed back (`streamed`): the tokens were billed all the same. A turn that
/// failed before anything streamed back is counted as nothing.
pub fn estimated_usage(sent: usize, streamed: usize) -> Tokens {
    if streamed == 0 {
        return Tokens::default();
    }
    let estimate = Estimator::default();
    Tokens { input: estimate.tokens(sent), output: estimate.tokens(streamed), ..Tokens::default() }
}

/// How a model's context window is shared between a request and its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The model's context, in tokens.
    pub context: u64,
    /// Tokens kept for the answer: the model's output limit, at most a quarter of the
    /// context.
    pub reserve: u64,
}

impl Window {
    /// The window of a model with `context_tokens` that answers with at most
    /// `output_tokens`.
    pub fn new(context_tokens: u32, output_tokens: u32) -> Self {
        let context = u64::from(context_tokens);
        Window { context, reserve: u64::from(output_tokens).min(context / 4) }
    }

    /// Tokens the request may fill.
    pub fn budget(&self) -> u64 {
        self.context - self.reserve
    }

    /// The largest answer a request of `input` tokens leaves room for.
    pub fn room_after(&self, input: u64) -> u32 {
        self.context.saturating_sub(input).min(u64::from(u32::MAX)) as u32
    }
}

/// `text` cut for the model to at most about `limit` bytes when it is longer: its start and
/// its end, and between them a note of what was cut and where the whole of it is (part
/// `part`, which stays stored).
pub fn cut_tool_output<'a>(text: &'a str, limit: usize, part: &str) -> Cow<'a, str> {
    if text.len() <= limit {
        return Cow::Borrowed(text);
    }
    let head = floor_char_boundary(text, limit * 3 / 4);
    let tail = ceil_char_boundary(text, text.len() - limit / 4);
    let cut = tail - head;
    Cow::Owned(format!(
        "{}\n\n[… {cut} bytes of {} cut here for the model; the whole output is stored with the session (part {part}). \
         To see the cut part, run the call again on a narrower range (fewer lines, a filter, an offset).]\n\n{}",
        &text[..head],
        text.len(),
        &text[tail..]
    ))
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn ceil_char_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::provider::Role;

    #[test]
    fn a_turn_without_reported_usage_is_estimated_from_what_was_sent_and_what_came_back() {
        let request = CompletionRequest {
            model: String::new(),
            system: Some("s".repeat(40)),
            messages: vec![Message { role: Role::User, parts: vec![ContentPart::Text("u".repeat(20))] }],
            tools: Vec::new(),
            temperature: None,
            max_output_tokens: None,
            options: None,
        };
        assert_eq!((request_chars(&request), fixed_chars(&request)), (60, 40));
        assert_eq!(estimated_usage(60, 9), Tokens { input: 15, output: 3, ..Tokens::default() });
        assert_eq!(estimated_usage(60, 0), Tokens::default(), "nothing came back: nothing to count");
    }

    #[test]
    fn the_estimate_learns_that_tokens_hold_fewer_characters_but_never_more() {
        let mut estimate = Estimator::default();
        assert_eq!(estimate.tokens(4_000), 1_000);
        estimate.observe(4_000, 100);
        assert_eq!(estimate.tokens(4_000), 1_000, "a provider that reports fewer tokens does not make the estimate smaller");
        estimate.observe(3_000, 1_000);
        assert_eq!(estimate.tokens(3_000), 1_000);
        estimate.observe(1_000, 10_000);
        assert_eq!(estimate.tokens(1_500), 1_000, "at least 1.5 characters a token");
    }

    #[test]
    fn the_window_keeps_the_output_limit_for_the_answer_but_never_more_than_a_quarter() {
        let window = Window::new(128_000, 16_384);
        assert_eq!((window.budget(), window.room_after(100_000)), (128_000 - 16_384, 28_000));
        assert_eq!(Window::new(1_000, 4_096).budget(), 750);
        assert_eq!(Window::new(1_000, 4_096).room_after(2_000), 0);
    }

    #[test]
    fn a_long_tool_output_keeps_its_start_and_end_and_says_where_the_rest_is() {
        assert_eq!(cut_tool_output("short", 100, "prt_1"), "short");
        let text = format!("{}{}{}", "a".repeat(600), "m".repeat(1_000), "z".repeat(400));
        let cut = cut_tool_output(&text, 800, "prt_9");
        assert!(cut.starts_with(&"a".repeat(600)) && cut.ends_with(&"z".repeat(200)), "{cut}");
        assert!(cut.contains("1200 bytes of 2000 cut") && cut.contains("part prt_9"), "{cut}");
        assert!(!cut.contains("mm"), "the middle is gone: {cut}");
        // Never in the middle of a character.
        let accents = "é".repeat(1_000);
        let cut = cut_tool_output(&accents, 101, "p");
        assert!(cut.starts_with('é') && cut.ends_with('é'));
    }
}
