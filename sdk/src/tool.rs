//! Tool descriptors, the call context, outputs and errors.

use std::path::{Path, PathBuf};

use crate::bindings::plugboard::plugin::types as wit;

/// A kind of capability a plugin may be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapabilityKind {
    /// Directories of the host filesystem.
    Filesystem,
    /// Outgoing HTTP(S) to hosts.
    Network,
    /// Running commands.
    Process,
    /// Environment variables.
    Env,
}

/// Whether a path is needed for reading only or also for writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reading files or listing directories.
    Read,
    /// Creating, changing or removing files.
    Write,
}

/// Why a tool call failed. The host shows the message to the model and the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolError {
    /// The arguments do not match the tool's schema; the text names the field.
    InvalidArguments(String),
    /// The call needed a capability the plugin was not granted.
    Denied {
        /// Which kind of grant was missing.
        kind: CapabilityKind,
        /// What was refused: a path, a host, a command line or a variable name.
        target: String,
        /// Why, in words.
        reason: String,
    },
    /// Any other failure, in words the model can act on.
    Failed(String),
}

impl ToolError {
    /// A failure with a message.
    pub fn failed(message: impl Into<String>) -> Self {
        ToolError::Failed(message.into())
    }

    /// A refusal for lack of a capability grant.
    pub fn denied(kind: CapabilityKind, target: impl Into<String>, reason: impl Into<String>) -> Self {
        ToolError::Denied { kind, target: target.into(), reason: reason.into() }
    }

    /// Turns an I/O error on `path` into a tool error. A permission error means the
    /// sandbox refused the access (a symlink or `..` leading outside the grants, or a write
    /// into a read-only grant), and becomes a filesystem denial.
    pub fn from_io(error: std::io::Error, path: &Path) -> Self {
        let shown = path.display();
        match error.kind() {
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => ToolError::denied(
                CapabilityKind::Filesystem,
                shown.to_string(),
                "the sandbox refused the access: the path (or a symlink in it) leads outside the granted directories, or the grant does not allow writing",
            ),
            std::io::ErrorKind::NotFound => ToolError::Failed(format!("`{shown}` does not exist")),
            _ => ToolError::Failed(format!("`{shown}`: {error}")),
        }
    }
}

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ToolError::InvalidArguments(m) => write!(f, "invalid arguments: {m}"),
            ToolError::Denied { kind, target, reason } => write!(f, "{kind:?} access to `{target}` denied: {reason}"),
            ToolError::Failed(m) => f.write_str(m),
        }
    }
}

impl From<ToolError> for wit::ToolError {
    fn from(e: ToolError) -> Self {
        match e {
            ToolError::InvalidArguments(m) => wit::ToolError::InvalidArguments(m),
            ToolError::Failed(m) => wit::ToolError::Failed(m),
            ToolError::Denied { kind, target, reason } => wit::ToolError::Denied(wit::CapabilityDenied {
                kind: match kind {
                    CapabilityKind::Filesystem => wit::CapabilityKind::Filesystem,
                    CapabilityKind::Network => wit::CapabilityKind::Network,
                    CapabilityKind::Process => wit::CapabilityKind::Process,
                    CapabilityKind::Env => wit::CapabilityKind::Env,
                },
                target,
                reason,
            }),
        }
    }
}

/// What a successful call returns: the text the model sees, and optionally a title and
/// structured metadata for user interfaces.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    /// The text the model sees.
    pub text: String,
    /// A short human title, e.g. `src/main.rs (120 lines)`.
    pub title: Option<String>,
    /// Structured data for user interfaces.
    pub metadata: Option<serde_json::Value>,
}

impl Output {
    /// An output that is only text.
    pub fn text(text: impl Into<String>) -> Self {
        Output { text: text.into(), ..Default::default() }
    }

    /// Sets the title.
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Sets the metadata.
    pub fn with_metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = Some(metadata);
        self
    }
}

impl From<String> for Output {
    fn from(text: String) -> Self {
        Output::text(text)
    }
}

impl From<&str> for Output {
    fn from(text: &str) -> Self {
        Output::text(text)
    }
}

/// Where and on whose behalf a call runs.
#[derive(Debug, Clone)]
pub struct Context {
    /// The session the call belongs to (empty outside a session).
    pub session_id: String,
    /// Unique id of this call.
    pub call_id: String,
    /// Absolute path of the working directory (the workspace).
    pub working_directory: PathBuf,
}

impl Context {
    /// Resolves `path` (relative to the working directory, or absolute) to an absolute,
    /// normalized path, and checks that it lies inside a directory granted to this plugin,
    /// with write access when `access` is [`Access::Write`].
    ///
    /// This is a lexical check that gives a clear error early; the sandbox enforces the
    /// grants in any case, symlinks included (see [`ToolError::from_io`]).
    pub fn resolve_path(&self, path: &str, access: Access) -> Result<PathBuf, ToolError> {
        if path.is_empty() {
            return Err(ToolError::InvalidArguments("`path` must not be empty".into()));
        }
        let joined = self.working_directory.join(path);
        let normalized = crate::fs::normalize(&joined);
        let grants = crate::fs::grants();
        let Some(grant) = grants.iter().filter(|g| normalized.starts_with(&g.path)).max_by_key(|g| g.path.as_os_str().len()) else {
            let granted: Vec<String> = grants.iter().map(|g| g.path.display().to_string()).collect();
            let reason = if granted.is_empty() {
                "this plugin has no filesystem grant".to_string()
            } else {
                format!("outside every granted directory ({})", granted.join(", "))
            };
            return Err(ToolError::denied(CapabilityKind::Filesystem, normalized.display().to_string(), reason));
        };
        if access == Access::Write && !grant.writable {
            return Err(ToolError::denied(
                CapabilityKind::Filesystem,
                normalized.display().to_string(),
                format!("the grant `{}` is read-only", grant.path.display()),
            ));
        }
        Ok(normalized)
    }

    /// Shows partial output of this call live to the user.
    pub fn progress(&self, text: &str) {
        crate::host::progress(text);
    }
}

impl From<wit::CallContext> for Context {
    fn from(c: wit::CallContext) -> Self {
        Context { session_id: c.session_id, call_id: c.call_id, working_directory: PathBuf::from(c.working_directory) }
    }
}

/// What `#[tool]` generates for each tool function.
pub struct ToolDescriptor {
    /// Tool name.
    pub name: &'static str,
    /// Tool description (the function's doc comment).
    pub description: &'static str,
    /// Produces the JSON Schema of the arguments.
    pub schema: fn() -> String,
    /// Runs the tool on JSON arguments.
    pub call: fn(&str, &Context) -> Result<Output, ToolError>,
}

/// The JSON Schema of `T`, as a JSON document.
pub fn schema_of<T: schemars::JsonSchema>() -> String {
    let schema = schemars::SchemaGenerator::default().into_root_schema_for::<T>();
    serde_json::to_string(&schema).expect("a JSON Schema serializes")
}

/// Parses tool arguments, naming the offending field on error.
pub fn parse_arguments<T: serde::de::DeserializeOwned>(arguments: &str) -> Result<T, ToolError> {
    let arguments = if arguments.trim().is_empty() { "{}" } else { arguments };
    let de = &mut serde_json::Deserializer::from_str(arguments);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("arguments are not valid JSON: {inner}")
        } else if path == "." {
            strip_position(&inner.to_string())
        } else {
            format!("field `{path}`: {}", strip_position(&inner.to_string()))
        };
        ToolError::InvalidArguments(message)
    })
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// The WIT definitions of `tools`.
pub fn definitions(tools: &[&ToolDescriptor]) -> Vec<wit::ToolDefinition> {
    tools
        .iter()
        .map(|t| wit::ToolDefinition { name: t.name.to_string(), description: t.description.to_string(), parameters_schema: (t.schema)() })
        .collect()
}

/// Runs the tool called `name`.
pub fn dispatch(
    tools: &[&ToolDescriptor],
    name: &str,
    arguments: &str,
    context: wit::CallContext,
) -> Result<wit::ToolOutput, wit::ToolError> {
    let Some(tool) = tools.iter().find(|t| t.name == name) else {
        return Err(wit::ToolError::UnknownTool(name.to_string()));
    };
    let context = Context::from(context);
    match (tool.call)(arguments, &context) {
        Ok(out) => Ok(wit::ToolOutput { text: out.text, title: out.title, metadata: out.metadata.map(|m| m.to_string()) }),
        Err(e) => Err(e.into()),
    }
}
