//! A trivial tool: returns its text. Used by the test suite and the benchmarks.

use plugboard_sdk::prelude::*;

#[args]
struct EchoArgs {
    /// The text to return.
    text: String,
}

/// Returns `text` unchanged.
#[tool]
fn echo(args: EchoArgs) -> Result<Output, ToolError> {
    Ok(Output::text(args.text))
}

export_tools!(echo);
