//! A provider that answers at once, without a network: while the conversation has no tool
//! results yet and tools are offered, it asks for three parallel `echo` calls; then it
//! answers with text. It
//! measures the agent loop's own overhead.

use std::collections::VecDeque;

use plugboard_sdk::provider::*;

struct Instant;

impl Provider for Instant {
    fn info() -> ProviderInfo {
        ProviderInfo {
            id: "instant".into(),
            name: "Instant (test)".into(),
            models: vec![ModelInfo {
                id: "script".into(),
                name: "Scripted".into(),
                context_tokens: 100_000,
                output_tokens: 1000,
                supports_tools: true,
                supports_reasoning: false,
                supports_images: false,
                price: ModelPrice { input: 1.0, output: 2.0, cache_read: 0.0, cache_write: 0.0 },
            }],
        }
    }

    fn complete(request: CompletionRequest) -> Result<Box<dyn CompletionStream>, ProviderError> {
        // Without tools to call (a summary, the last step) it can only answer.
        let answered = request.tools.is_empty() || request.messages.iter().any(|m| m.role == Role::Tool);
        let mut events = VecDeque::new();
        if answered {
            events.push_back(StreamEvent::TextDelta("All three echoed.".into()));
            events.push_back(StreamEvent::Finish(FinishReason::Stop));
        } else {
            for i in 0..3u32 {
                events.push_back(StreamEvent::ToolCallStart(ToolCallStart { index: i, id: format!("call_{i}"), name: "echo".into() }));
                events.push_back(StreamEvent::ToolCallDelta(ToolCallDelta { index: i, arguments: format!("{{\"text\":\"hello {i}\"}}") }));
            }
            events.push_back(StreamEvent::Finish(FinishReason::ToolCalls));
        }
        events.push_back(StreamEvent::Usage(Usage {
            input_tokens: 50,
            output_tokens: 10,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
        }));
        Ok(Box::new(Script(events)))
    }
}

struct Script(VecDeque<StreamEvent>);

impl CompletionStream for Script {
    fn next(&mut self) -> Result<Option<StreamEvent>, ProviderError> {
        Ok(self.0.pop_front())
    }
}

plugboard_sdk::export_provider!(Instant);
