// The tool of the `versioned` test plugin, shared by its versions (each sets `VERSION`).

use plugboard_sdk::prelude::*;

#[args]
struct WhichArgs {
    /// A marker echoed back after the version.
    text: String,
}

/// Answers `<version>:<text>`, so a test can tell which version served a call.
#[tool]
fn which(args: WhichArgs) -> Result<Output, ToolError> {
    Ok(Output::text(format!("{VERSION}:{}", args.text)))
}

export_tools!(which);
