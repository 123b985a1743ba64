//! Server-Sent Events, parsed incrementally from a byte stream (as model APIs stream them).

/// One event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field; empty when absent (the default type, `message`).
    pub event: String,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// An incremental parser: feed it bytes as they arrive, split anywhere (even inside a UTF-8
/// character), and take out complete events.
#[derive(Debug, Default)]
pub struct Parser {
    pending: Vec<u8>,
    current: Event,
    has_data: bool,
}

impl Parser {
    /// A new parser.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes and returns the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.pending.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                if self.has_data {
                    events.push(std::mem::take(&mut self.current));
                    self.has_data = false;
                } else {
                    self.current = Event::default();
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_ref(), ""),
            };
            match field {
                "event" => self.current.event = value.to_string(),
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        events
    }

    /// True when bytes of an unfinished event are buffered (a stream that ends here was cut).
    pub fn has_partial(&self) -> bool {
        self.has_data || !self.pending.is_empty()
    }
}

/// Events read from an HTTP response body as it streams.
pub struct EventReader {
    response: crate::http::Response,
    parser: Parser,
    queue: std::collections::VecDeque<Event>,
    ended: bool,
}

impl EventReader {
    /// Reads events from `response`'s body.
    pub fn new(response: crate::http::Response) -> Self {
        EventReader { response, parser: Parser::new(), queue: Default::default(), ended: false }
    }

    /// The next event; `Ok(None)` at the end of the body. An error when reading fails, or
    /// when the body ends in the middle of an event (`cut` is then true).
    pub fn next_event(&mut self) -> Result<Option<Event>, ReadError> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Ok(Some(event));
            }
            if self.ended {
                return Ok(None);
            }
            match self.response.read_chunk() {
                Ok(Some(chunk)) => self.queue.extend(self.parser.feed(&chunk)),
                Ok(None) => {
                    self.ended = true;
                    if self.parser.has_partial() {
                        return Err(ReadError { message: "the stream ended in the middle of an event".into(), cut: true });
                    }
                }
                Err(e) => return Err(ReadError { message: e.to_string(), cut: true }),
            }
        }
    }
}

/// Why reading events failed.
#[derive(Debug, Clone)]
pub struct ReadError {
    /// What happened.
    pub message: String,
    /// True when the connection or stream was cut (worth retrying).
    pub cut: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_at_any_byte_parse_the_same() {
        let text = "event: message_start\ndata: {\"a\":\"é\"}\n\n: comment\ndata: line1\r\ndata: line2\n\ndata: [DONE]\n\n";
        let whole = Parser::new().feed(text.as_bytes());
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[0], Event { event: "message_start".into(), data: "{\"a\":\"é\"}".into() });
        assert_eq!(whole[1].data, "line1\nline2");
        assert_eq!(whole[2].data, "[DONE]");
        for split in 0..text.len() {
            let mut p = Parser::new();
            let mut events = p.feed(&text.as_bytes()[..split]);
            events.extend(p.feed(&text.as_bytes()[split..]));
            assert_eq!(events, whole, "split at {split}");
        }
    }

    #[test]
    fn a_cut_stream_is_detected() {
        let mut p = Parser::new();
        p.feed(b"data: {\"partial\":");
        assert!(p.has_partial());
    }
}
