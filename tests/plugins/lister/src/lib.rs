//! A tool plugin that answers the host's `tools` call with the list its `list` setting
//! names: `many` (200,000 tools), `spaces`, `control` or `long` (a name against the WIT's
//! format), `spin` (no answer, ever), or anything else for one well-formed tool. It
//! implements the WIT export by hand, since the SDK's macros only list well-formed tools.

use plugboard_sdk::bindings::exports::plugboard::plugin::tool::Guest;
use plugboard_sdk::bindings::plugboard::plugin::types::{CallContext, ToolDefinition, ToolError, ToolOutput};

struct Lister;

fn tool(name: String) -> ToolDefinition {
    ToolDefinition { name, description: "a tool".into(), parameters_schema: r#"{"type":"object"}"#.into() }
}

impl Guest for Lister {
    fn tools() -> Vec<ToolDefinition> {
        let list: String = plugboard_sdk::host::setting("list").ok().flatten().unwrap_or_default();
        match list.as_str() {
            "many" => (0..200_000).map(|i| tool(format!("t{i}"))).collect(),
            "spaces" => vec![tool("two words".into())],
            "control" => vec![tool("bell\u{7}".into())],
            "long" => vec![tool("x".repeat(10_000))],
            "spin" => loop {
                std::hint::black_box(&list);
            },
            _ => vec![tool("fine".into())],
        }
    }

    fn call(name: String, _arguments: String, _context: CallContext) -> Result<ToolOutput, ToolError> {
        Ok(ToolOutput { text: format!("{name} ran"), title: None, metadata: None })
    }
}

plugboard_sdk::bindings::export!(Lister with_types_in plugboard_sdk::bindings);

/// The manifest, written out because no SDK macro builds this plugin.
#[used]
#[unsafe(link_section = "plugboard-manifest")]
static MANIFEST: [u8; MANIFEST_JSON.len()] = *MANIFEST_JSON;

const MANIFEST_JSON: &[u8; 159] = br#"{"id":"lister","version":"0.1.0","description":"a hostile tool list","world":"tool-plugin","wit":"plugboard:plugin@0.1.0","capabilities":{},"credentials":null}"#;
