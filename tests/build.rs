//! Builds the test plugins (`tests/plugins/*`) to components and exposes their paths.

use std::fmt::Write;
use std::path::Path;

const TEST_PLUGINS: &[&str] = &[
    "tests/plugins/echo",
    "tests/plugins/hostile",
    "tests/plugins/instant-provider",
    "tests/plugins/versioned-a",
    "tests/plugins/versioned-b",
    "tests/plugins/hook-a",
    "tests/plugins/hook-b",
    "tests/plugins/lister",
];

fn main() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let components = plugboard_guest_build::build_components(&workspace, TEST_PLUGINS);
    let mut code = String::new();
    for c in &components {
        let name = c.package.strip_prefix("plugboard-test-").unwrap_or(&c.package).to_uppercase().replace('-', "_");
        writeln!(code, "/// Path of the `{}` test component.\npub const {name}: &str = {:?};", c.package, c.path.display().to_string())
            .unwrap();
    }
    std::fs::write(Path::new(&std::env::var("OUT_DIR").unwrap()).join("test_plugins.rs"), code).unwrap();
}
