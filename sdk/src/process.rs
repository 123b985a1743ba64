//! Running commands through the host's process capability.

use crate::bindings::plugboard::plugin::process as wit_process;
use crate::{CapabilityKind, ToolError};

pub use wit_process::CommandOutput;

/// Runs `command_line` through `/bin/sh -c` in `working_directory` (empty: the workspace),
/// under the plugin's process grant. The host confines the command to the plugin's
/// filesystem grants, applies the time limit and caps the output.
pub fn run(command_line: &str, working_directory: &str, timeout_ms: Option<u32>) -> Result<CommandOutput, ToolError> {
    let command =
        wit_process::Command { command_line: command_line.to_string(), working_directory: working_directory.to_string(), timeout_ms };
    wit_process::run(&command).map_err(|e| match e {
        wit_process::CommandError::Denied(reason) => ToolError::denied(CapabilityKind::Process, command_line, reason),
        wit_process::CommandError::Failed(message) => ToolError::failed(message),
    })
}
