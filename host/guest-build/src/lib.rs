//! Build-script support: compiles plugin crates of this workspace to `wasm32-wasip2`
//! components, so that a plain `cargo build` or `cargo test` of the host also builds the
//! plugins it needs (the way wasmtime's `test-programs` builds its guests).
//!
//! Call [`build_components`] from a `build.rs`. The guests are built by a nested
//! `cargo build --release --target wasm32-wasip2` into `<target>/guests`, a target
//! directory of their own (sharing the host's would deadlock on its lock).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The WebAssembly target plugins are built for.
pub const TARGET: &str = "wasm32-wasip2";

/// One built component.
#[derive(Debug, Clone)]
pub struct Component {
    /// The cargo package name, e.g. `plugboard-plugin-read`.
    pub package: String,
    /// Absolute path of the `.wasm` component.
    pub path: PathBuf,
}

/// Builds the given packages of the workspace at `workspace_root` (the directory of the
/// top-level `Cargo.toml`) and returns their components, in the order given.
///
/// Emits `cargo:rerun-if-changed` for the SDK, the WIT package and each package's
/// directory (`package_dirs`, relative to the workspace root).
///
/// # Panics
/// When the `wasm32-wasip2` target is missing and cannot be installed, or a guest fails to
/// build; the message says what to do. Panicking is how a build script reports failure.
pub fn build_components(workspace_root: &Path, package_dirs: &[&str]) -> Vec<Component> {
    for watched in ["sdk", "wit", "Cargo.lock"].iter().chain(package_dirs) {
        println!("cargo:rerun-if-changed={}", workspace_root.join(watched).display());
    }
    ensure_target_installed();

    let packages: Vec<String> = package_dirs.iter().map(|dir| package_name(&workspace_root.join(dir))).collect();
    let target_dir = guest_target_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut command = Command::new(&cargo);
    command
        .arg("build")
        .arg("--release")
        .arg("--target")
        .arg(TARGET)
        .arg("--manifest-path")
        .arg(workspace_root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    for package in &packages {
        command.arg("-p").arg(package);
    }
    // The outer build's settings are for the host; they must not leak into the guests.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PROFILE_RELEASE_DEBUG",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        command.env_remove(var);
    }
    let status = command.status().unwrap_or_else(|e| panic!("cannot run `{cargo}` to build the plugins: {e}"));
    if !status.success() {
        panic!(
            "building the WebAssembly plugins failed ({status}); the compiler's messages are above. \
             To see them alone, run: cargo build --release --target {TARGET} {}",
            packages.iter().map(|p| format!("-p {p}")).collect::<Vec<_>>().join(" ")
        );
    }
    packages
        .into_iter()
        .map(|package| {
            let path = target_dir.join(TARGET).join("release").join(format!("{}.wasm", package.replace('-', "_")));
            assert!(path.exists(), "cargo built `{package}` but {} is missing: is its crate-type [\"cdylib\"]?", path.display());
            Component { package, path }
        })
        .collect()
}

/// The package name in `dir/Cargo.toml`.
fn package_name(dir: &Path) -> String {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap_or_else(|e| panic!("cannot read {}: {e}", manifest.display()));
    let mut in_package = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package
            && let Some(rest) = line.strip_prefix("name")
            && let Some(value) = rest.trim_start().strip_prefix('=')
        {
            return value.trim().trim_matches('"').to_string();
        }
    }
    panic!("{} has no [package] name", manifest.display());
}

/// `<target>/guests`, where `<target>` is the host build's target directory (found as the
/// ancestor of `OUT_DIR` that holds `CACHEDIR.TAG`), so all build scripts share one
/// guest build.
fn guest_target_dir() -> PathBuf {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR is set for build scripts"));
    out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").exists())
        .map(|target| target.join("guests"))
        .unwrap_or_else(|| out_dir.join("guests"))
}

/// Makes sure the standard library for `wasm32-wasip2` is installed, installing it with
/// rustup when it is not.
fn ensure_target_installed() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(sysroot) = &sysroot
        && sysroot.join("lib/rustlib").join(TARGET).exists()
    {
        return;
    }
    println!("cargo:warning=installing the {TARGET} target with rustup (needed to build the plugins)");
    let installed = Command::new("rustup").args(["target", "add", TARGET]).status().map(|s| s.success()).unwrap_or(false);
    if !installed {
        panic!("the Rust target `{TARGET}` is not installed and rustup could not install it. Run: rustup target add {TARGET}");
    }
}
