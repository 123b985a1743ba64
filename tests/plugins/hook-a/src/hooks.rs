// A hook plugin for the tests: what it answers at each point is read from its settings
// (`[plugins.<id>.settings]`), one key per point. Unset keys leave things as they are.
//
// - `prompt_before`: `keep`, `rewrite:<text>` (appends ` <text>`), `reject:<reason>`,
//   `empty` (an invalid rewrite), `trap`;
// - `tool_before`: `allow`, `deny:<reason>`, `rewrite:<json>`, `trap`, `spin` (computes
//   until its time limit);
// - `tool_after`: `tag` (appends `[<tag>]`), `trap`, `spin`, `huge` (an oversized rewrite);
// - `chat_params`: `temperature:<t>`, `max_tokens:<n>`, `system:<text>` (appends it),
//   `invalid` (temperature 9);
// - `compacting`: `context:<text>` (adds a paragraph), `prompt:<text>` (replaces the
//   instructions), `summary:<text>` (writes the summary, followed by the number of
//   messages and the transcript's first line), `empty` (an invalid, empty summary), `trap`;
// - `session_created`, `on_event`: `ok` or `fail`;
// - `tag`: the text `tool_after` appends.

use plugboard_sdk::hook::*;
use plugboard_sdk::serde_json::Value;

fn action(point: &str) -> String {
    plugboard_sdk::host::setting::<String>(point).ok().flatten().unwrap_or_default()
}

fn spin() -> ! {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

fn session_created(_ctx: &HookContext, _session: &Session) -> Result<(), String> {
    match action("session_created").as_str() {
        "fail" => Err("scripted failure".into()),
        _ => Ok(()),
    }
}

fn prompt_before(_ctx: &HookContext, prompt: &str) -> PromptVerdict {
    let action = action("prompt_before");
    match action.split_once(':') {
        Some(("rewrite", text)) => PromptVerdict::Rewrite(format!("{prompt} {text}")),
        Some(("reject", reason)) => PromptVerdict::Reject(reason.into()),
        _ => match action.as_str() {
            "empty" => PromptVerdict::Rewrite("   ".into()),
            "trap" => panic!("scripted trap in prompt_before"),
            _ => PromptVerdict::Keep,
        },
    }
}

fn tool_before(_ctx: &HookContext, _call: &ToolCall) -> ToolVerdict {
    let action = action("tool_before");
    match action.split_once(':') {
        Some(("deny", reason)) => ToolVerdict::Deny(reason.into()),
        Some(("rewrite", json)) => ToolVerdict::Rewrite(plugboard_sdk::serde_json::from_str(json).unwrap_or(Value::Null)),
        _ => match action.as_str() {
            "trap" => panic!("scripted trap in tool_before"),
            "spin" => spin(),
            _ => ToolVerdict::Allow,
        },
    }
}

fn tool_after(_ctx: &HookContext, _call: &ToolCall, result: &mut ToolResult) {
    match action("tool_after").as_str() {
        "tag" => result.text.push_str(&format!("[{}]", action("tag"))),
        "trap" => panic!("scripted trap in tool_after"),
        "spin" => spin(),
        "huge" => result.text = "x".repeat(4 << 20),
        _ => {}
    }
}

fn chat_params(_ctx: &HookContext, params: &mut ChatParams) {
    let action = action("chat_params");
    match action.split_once(':') {
        Some(("temperature", t)) => params.temperature = t.parse().ok(),
        Some(("max_tokens", n)) => params.max_tokens = n.parse().ok(),
        Some(("system", text)) => params.system_prompt.push_str(&format!("\n{text}")),
        _ if action == "invalid" => params.temperature = Some(9.0),
        _ => {}
    }
}

fn compacting(_ctx: &HookContext, compaction: &Compaction, draft: &mut CompactionDraft) {
    let action = action("compacting");
    match action.split_once(':') {
        Some(("context", text)) => draft.context.push(text.into()),
        Some(("prompt", text)) => draft.prompt = text.into(),
        Some(("summary", text)) => {
            let first = compaction.transcript.lines().next().unwrap_or_default();
            draft.summary = Some(format!("{text} ({} messages; {first})", compaction.messages));
        }
        _ => match action.as_str() {
            "empty" => draft.summary = Some(" ".into()),
            "trap" => panic!("scripted trap in compacting"),
            _ => {}
        },
    }
}

fn on_event(_ctx: &HookContext, _event: &Event) -> Result<(), String> {
    match action("on_event").as_str() {
        "fail" => Err("scripted failure".into()),
        _ => Ok(()),
    }
}

plugboard_sdk::export_hooks! {
    session_created: session_created,
    prompt_before: prompt_before,
    tool_before: tool_before,
    tool_after: tool_after,
    chat_params: chat_params,
    compacting: compacting,
    on_event: on_event,
    event_types: ["session.created", "tool.state"],
}
