//! The toolchains of plugins in other languages, installed under `target/plugin-toolchains`
//! by the tests that need them (once per run, pinned versions).

use std::path::PathBuf;
use std::sync::OnceLock;

/// The componentize-py release the Python plugin tests build with.
pub const COMPONENTIZE_PY: &str = "0.25.1";

static COMPONENTIZE_PY_INSTALL: OnceLock<Result<PathBuf, String>> = OnceLock::new();

fn toolchains_dir() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugin-toolchains")
}

/// The `componentize-py` executable of a virtual environment holding [`COMPONENTIZE_PY`].
pub fn componentize_py() -> Result<PathBuf, String> {
    COMPONENTIZE_PY_INSTALL
        .get_or_init(|| {
            let venv = toolchains_dir().join("python");
            let (python, tool) = (venv.join("bin/python"), venv.join("bin/componentize-py"));
            let installed = crate::mcp::run(std::process::Command::new(&tool).arg("--version"), "componentize-py").ok();
            if installed.as_deref() != Some(&format!("componentize-py {COMPONENTIZE_PY}")) {
                crate::mcp::run(
                    std::process::Command::new("python3").args(["-m", "venv"]).arg(&venv),
                    "`python3 -m venv` (the Python plugin tests need Python 3 with venv)",
                )?;
                crate::mcp::run(
                    std::process::Command::new(&python).args([
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        &format!("componentize-py=={COMPONENTIZE_PY}"),
                    ]),
                    "pip install componentize-py",
                )?;
            }
            Ok(tool)
        })
        .clone()
}

static COMPONENTIZE_JS_INSTALL: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// A `node_modules` folder holding componentize-js at the version the JavaScript scaffold
/// pins (`plugboard::cli::scaffold::COMPONENTIZE_JS`).
pub fn componentize_js() -> Result<PathBuf, String> {
    COMPONENTIZE_JS_INSTALL
        .get_or_init(|| {
            let prefix = toolchains_dir().join("node");
            let version = plugboard::cli::scaffold::COMPONENTIZE_JS;
            crate::mcp::npm_install(&prefix, "@bytecodealliance/componentize-js", version, "the JavaScript plugin tests")?;
            Ok(prefix.join("node_modules"))
        })
        .clone()
}
