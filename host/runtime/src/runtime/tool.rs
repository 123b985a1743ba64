//! The `tool-plugin` world on top of the sandbox: what a tool plugin lists (bounded and
//! checked once, at load), and one call (a fresh instance; the output capped and masked;
//! a denial explained with the grant that would allow it).

use serde::Serialize;

use super::error::{CallError, LoadError};
use super::sandbox::Sandbox;
use super::state::{CallState, HostDenial, ProgressSink};
use crate::capability::CapabilityKind;
use crate::runtime::bindings::{ToolPluginPre, types};

/// One tool as offered to the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolDefinition {
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// JSON Schema of its arguments.
    pub parameters: serde_json::Value,
    /// `parameters` as JSON text, as every provider request carries it: serialized once
    /// here rather than on every turn of every session.
    #[serde(skip)]
    parameters_json: String,
}

impl ToolDefinition {
    /// A tool named `name` whose arguments follow the JSON Schema `parameters`.
    pub fn new(name: String, description: String, parameters: serde_json::Value) -> Self {
        let parameters_json = parameters.to_string();
        ToolDefinition { name, description, parameters, parameters_json }
    }

    /// Its parameters schema as JSON text.
    pub fn parameters_json(&self) -> &str {
        &self.parameters_json
    }
}

/// What a call needs besides the tool and its arguments.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// The session (empty outside one).
    pub session_id: String,
    /// The call's id.
    pub call_id: String,
}

/// A successful call's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolOutput {
    /// The text the model sees.
    pub text: String,
    /// A short title.
    pub title: Option<String>,
    /// Structured metadata.
    pub metadata: Option<serde_json::Value>,
}

/// The most tools one plugin may provide.
pub const MAX_TOOLS: usize = 128;
/// The longest tool description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 8 * 1024;
/// The largest parameters schema, in bytes.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// The longest tool name (the limit of the model APIs' function names).
pub const MAX_TOOL_NAME: usize = 64;

/// A tool plugin, described.
#[derive(Clone)]
pub(crate) struct ToolWorld {
    pre: ToolPluginPre<CallState>,
    pub(crate) tools: Vec<ToolDefinition>,
}

impl ToolWorld {
    pub(crate) fn pre(&self) -> &ToolPluginPre<CallState> {
        &self.pre
    }

    /// Runs the plugin's `tools` export once, under its limits, to learn its tools. What it
    /// lists is bounded: [`MAX_TOOLS`] tools, names in the WIT's format, and descriptions and
    /// schemas of bounded size, so a hostile list costs the host little to refuse.
    pub(crate) async fn describe(pre: ToolPluginPre<CallState>, sandbox: &Sandbox) -> Result<Self, LoadError> {
        let recipe = pre.clone();
        let (definitions, _) = sandbox
            .run(None, move |store| {
                Box::pin(async move { recipe.instantiate_async(&mut *store).await?.plugboard_plugin_tool().call_tools(store).await })
            })
            .await
            .map_err(|e| LoadError::Tools(e.to_string()))?;
        if definitions.len() > MAX_TOOLS {
            return Err(LoadError::Tools(format!("it lists {} tools; a plugin may provide at most {MAX_TOOLS}", definitions.len())));
        }
        let mut tools: Vec<ToolDefinition> = Vec::with_capacity(definitions.len());
        for d in definitions {
            let definition = checked_definition(d).map_err(LoadError::Tools)?;
            if tools.iter().any(|t| t.name == definition.name) {
                return Err(LoadError::Tools(format!("the tool `{}` is listed twice", definition.name)));
            }
            tools.push(definition);
        }
        Ok(ToolWorld { pre, tools })
    }

    /// Runs tool `name`: a fresh instance, the call under the sandbox's limits, then the
    /// instance is dropped.
    pub(crate) async fn call(
        &self,
        sandbox: &Sandbox,
        name: &str,
        arguments: &str,
        context: &CallContext,
        progress: Option<ProgressSink>,
    ) -> Result<ToolOutput, CallError> {
        let policy = sandbox.policy();
        let wit_context = types::CallContext {
            session_id: context.session_id.clone(),
            call_id: context.call_id.clone(),
            working_directory: policy.process.workspace.to_string_lossy().into_owned(),
        };
        let (pre, tool, arguments) = (self.pre.clone(), name.to_string(), arguments.to_string());
        let (result, mut store) = sandbox
            .run(progress, move |store| {
                Box::pin(async move {
                    let instance = pre.instantiate_async(&mut *store).await?;
                    instance.plugboard_plugin_tool().call_call(store, &tool, &arguments, &wit_context).await
                })
            })
            .await?;
        let denials = store.data_mut().take_denials();
        match result {
            Ok(output) => checked_output(sandbox, name, output),
            Err(error) => Err(explain_tool_error(sandbox, name, masked(sandbox, error), denials)),
        }
    }
}

/// One listed tool, checked: its name in the WIT's format, description and schema bounded,
/// the schema JSON.
fn checked_definition(d: types::ToolDefinition) -> Result<ToolDefinition, String> {
    check_tool_name(&d.name)?;
    if d.description.len() > MAX_DESCRIPTION_BYTES {
        return Err(format!("tool `{}` has a description of {} bytes; at most {MAX_DESCRIPTION_BYTES}", d.name, d.description.len()));
    }
    if d.parameters_schema.len() > MAX_SCHEMA_BYTES {
        return Err(format!(
            "tool `{}` has a parameters schema of {} bytes; at most {MAX_SCHEMA_BYTES}",
            d.name,
            d.parameters_schema.len()
        ));
    }
    let parameters = serde_json::from_str(&d.parameters_schema)
        .map_err(|e| format!("tool `{}` has a parameters schema that is not JSON: {e}", d.name))?;
    Ok(ToolDefinition::new(d.name, d.description, parameters))
}

/// A tool's output within the plugin's `max_output_bytes`, its text, title and metadata
/// masked, the metadata parsed.
fn checked_output(sandbox: &Sandbox, tool: &str, output: types::ToolOutput) -> Result<ToolOutput, CallError> {
    let limit = sandbox.policy().limits.max_output_bytes;
    let size = (output.text.len() + output.metadata.as_ref().map_or(0, |m| m.len())) as u64;
    if size > limit {
        return Err(CallError::OutputTooLarge { plugin: sandbox.plugin().to_string(), size, limit });
    }
    let metadata = match output.metadata.map(|m| sandbox.mask(&m)) {
        None => None,
        Some(m) => Some(serde_json::from_str(&m).map_err(|e| CallError::Failed {
            tool: tool.to_string(),
            message: format!("the plugin returned metadata that is not JSON: {e}"),
        })?),
    };
    Ok(ToolOutput { text: sandbox.mask(&output.text), title: output.title.map(|t| sandbox.mask(&t)), metadata })
}

/// `error` with the configured secrets masked in the plugin's own words.
fn masked(sandbox: &Sandbox, error: types::ToolError) -> types::ToolError {
    let mask = |text: String| sandbox.mask(&text);
    match error {
        types::ToolError::InvalidArguments(m) => types::ToolError::InvalidArguments(mask(m)),
        types::ToolError::UnknownTool(m) => types::ToolError::UnknownTool(mask(m)),
        types::ToolError::Failed(m) => types::ToolError::Failed(mask(m)),
        types::ToolError::Denied(d) => {
            types::ToolError::Denied(types::CapabilityDenied { target: mask(d.target), reason: mask(d.reason), ..d })
        }
    }
}

fn explain_tool_error(sandbox: &Sandbox, tool: &str, error: types::ToolError, denials: Vec<HostDenial>) -> CallError {
    match error {
        types::ToolError::InvalidArguments(message) => CallError::InvalidArguments { tool: tool.into(), message },
        types::ToolError::UnknownTool(name) => CallError::Failed { tool: tool.into(), message: format!("the plugin has no tool `{name}`") },
        types::ToolError::Failed(message) => CallError::Failed { tool: tool.into(), message },
        types::ToolError::Denied(d) => {
            let kind = match d.kind {
                types::CapabilityKind::Filesystem => CapabilityKind::Filesystem,
                types::CapabilityKind::Network => CapabilityKind::Network,
                types::CapabilityKind::Process => CapabilityKind::Process,
                types::CapabilityKind::Env => CapabilityKind::Env,
            };
            // What the host itself refused is the most precise account, and names the
            // capability that would allow it (a command's working directory is a
            // filesystem matter, whatever the plugin reports).
            let (kind, target, reason) = match denials.iter().find(|h| h.kind == kind).or(denials.first()) {
                Some(h) => (h.kind, h.target.clone(), h.reason.clone()),
                None => (kind, d.target, d.reason),
            };
            let hint = sandbox.policy().grant_hint(kind, &target);
            CallError::Denied { plugin: sandbox.plugin().to_string(), kind, target, reason, hint }
        }
    }
}

/// A tool name as the WIT states it: lowercase letters, digits, `_` and `-`, 1 to
/// [`MAX_TOOL_NAME`] characters.
fn check_tool_name(name: &str) -> Result<(), String> {
    let shown: String = name.chars().take(MAX_TOOL_NAME).flat_map(char::escape_default).collect();
    if name.is_empty() || name.len() > MAX_TOOL_NAME {
        return Err(format!("a tool name must have 1 to {MAX_TOOL_NAME} characters (`{shown}` has {})", name.chars().count()));
    }
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-') {
        return Err(format!("the tool name `{shown}` may hold only lowercase letters, digits, `_` and `-`"));
    }
    Ok(())
}

/// The arguments of a direct call must be one JSON object; the plugin checks them against
/// its schema.
pub(crate) fn check_arguments_object(tool: &str, arguments: &str) -> Result<(), CallError> {
    let invalid = |message: String| CallError::InvalidArguments { tool: tool.to_string(), message };
    let value: serde_json::Value = serde_json::from_str(arguments).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(invalid(format!("expected a JSON object, got {}", json_kind(&value))));
    }
    Ok(())
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_follow_the_wit() {
        assert!(check_tool_name("read_raw").is_ok() && check_tool_name("web-fetch2").is_ok());
        for bad in ["", "Read", "two words", "tab\there", "ctrl\u{7}", "ünïcode"] {
            assert!(check_tool_name(bad).is_err(), "{bad:?}");
        }
        let long = "x".repeat(10_000);
        let err = check_tool_name(&long).unwrap_err();
        assert!(err.contains("10000") && err.len() < 200, "{err}");
    }

    #[test]
    fn a_direct_call_takes_one_json_object_and_says_what_it_got_otherwise() {
        assert!(check_arguments_object("read", r#"{"path":"a"}"#).is_ok());
        let err = check_arguments_object("read", "[1]").unwrap_err().to_string();
        assert!(err.contains("`read`") && err.contains("got an array"), "{err}");
        let err = check_arguments_object("read", "{").unwrap_err().to_string();
        assert!(err.contains("not valid JSON"), "{err}");
    }
}
