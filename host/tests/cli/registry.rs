//! Plugins shipped through a real OCI registry on loopback: push, install by tag and by
//! digest, the lock file, signatures verified on install and on load.

use std::path::Path;

use plugboard_tests::components::{ECHO, VERSIONED_A, VERSIONED_B};
use plugboard_tests::registry::TestRegistry;

use super::{TempDir, plugboard, text, trust};

/// Runs `plugboard` and returns its stdout, failing the test with both outputs when it fails.
fn ok(workspace: &Path, args: &[&str]) -> String {
    let out = plugboard(workspace, args);
    assert!(out.status.success(), "plugboard {args:?} failed:\n{}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// Runs `plugboard`, expecting it to fail; returns its stderr.
fn refused(workspace: &Path, args: &[&str]) -> String {
    let out = plugboard(workspace, args);
    assert!(!out.status.success(), "plugboard {args:?} should have failed:\n{}", text(&out.stdout));
    text(&out.stderr)
}

/// The `sha256:…` digest `plugin push` printed.
fn pushed_digest(stdout: &str) -> String {
    let start = stdout.find("(sha256:").expect("push prints the digest") + 1;
    stdout[start..start + "sha256:".len() + 64].to_string()
}

fn str_of(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
#[ignore = "needs an OCI registry: Debian's docker-registry (.ci/run installs it)"]
fn a_pushed_plugin_installs_by_tag_and_digest_and_its_lock_file_reinstalls_the_same_bytes_after_the_tag_moves() {
    let registry = TestRegistry::start();
    let tmp = TempDir::new("oci-install");
    let ws = tmp.workspace();
    let echo = registry.reference("plugins/echo:1.0.0");
    let digest = pushed_digest(&ok(&ws, &["plugin", "push", ECHO, &echo]));

    let (first, second, elsewhere) = (tmp.0.join("first"), tmp.0.join("second"), tmp.0.join("elsewhere"));
    let installed = ok(&ws, &["plugin", "install", &echo, "--dir", str_of(&first)]);
    assert!(installed.contains("echo.wasm") && installed.contains(&digest) && installed.contains("unsigned"), "{installed}");
    assert_eq!(std::fs::read(first.join("echo.wasm")).unwrap(), std::fs::read(ECHO).unwrap());
    let lock = std::fs::read_to_string(first.join("plugboard.lock")).unwrap();
    assert!(lock.contains(&format!("digest = \"{digest}\"")) && lock.contains(&format!("source = \"{echo}\"")), "{lock}");

    // By digest, under another name.
    let by_digest = registry.reference(&format!("plugins/echo@{digest}"));
    ok(&ws, &["plugin", "install", &by_digest, "--dir", str_of(&second), "--name", "pinned"]);
    assert_eq!(std::fs::read(second.join("pinned.wasm")).unwrap(), std::fs::read(ECHO).unwrap());

    // Loaded, it says where it came from.
    let listed = ok(&ws, &["--plugins", str_of(&first), "plugin", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let plugin = listed["plugins"].as_array().unwrap().iter().find(|p| p["manifest"]["id"] == "echo").expect("echo is loaded");
    assert_eq!(plugin["provenance"]["source"], echo.as_str());
    assert_eq!(plugin["provenance"]["digest"], digest.as_str());
    assert!(plugin["provenance"]["signer"].is_null(), "{plugin}");

    // The tag moves to another component; the lock file still installs the pinned bytes.
    let moved = pushed_digest(&ok(&ws, &["plugin", "push", VERSIONED_A, &echo]));
    assert_ne!(moved, digest);
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::copy(first.join("plugboard.lock"), elsewhere.join("plugboard.lock")).unwrap();
    ok(&ws, &["plugin", "install", "--locked", "--dir", str_of(&elsewhere)]);
    assert_eq!(std::fs::read(elsewhere.join("echo.wasm")).unwrap(), std::fs::read(first.join("echo.wasm")).unwrap());
    // While installing by tag now gets the new one.
    ok(&ws, &["plugin", "install", &echo, "--dir", str_of(&second)]);
    assert_eq!(std::fs::read(second.join("echo.wasm")).unwrap(), std::fs::read(VERSIONED_A).unwrap());

    // A lock file that names a file outside its directory installs nothing.
    let hostile = tmp.0.join("hostile");
    std::fs::create_dir_all(&hostile).unwrap();
    let lock = std::fs::read_to_string(first.join("plugboard.lock")).unwrap().replace("file = \"echo.wasm\"", "file = \"../escaped.wasm\"");
    std::fs::write(hostile.join("plugboard.lock"), lock).unwrap();
    let err = refused(&ws, &["plugin", "install", "--locked", "--dir", str_of(&hostile)]);
    assert!(err.contains("`../escaped.wasm` is not a plugin file name"), "{err}");
    assert!(!tmp.0.join("escaped.wasm").exists());

    // What is not a plugin reference, or not a wasm artifact, is named.
    let err = refused(&ws, &["plugin", "install", "plugins/echo:1.0.0", "--dir", str_of(&first)]);
    assert!(err.contains("does not start with oci://"), "{err}");
    let err = refused(&ws, &["plugin", "install", &registry.reference("plugins/missing:1"), "--dir", str_of(&first)]);
    assert!(err.contains("plugins/missing:1"), "{err}");
}

#[test]
#[ignore = "needs an OCI registry: Debian's docker-registry (.ci/run installs it)"]
fn signatures_are_checked_on_install_and_on_load_and_require_signatures_refuses_unsigned_changed_or_untrusted_plugins() {
    let registry = TestRegistry::start();
    let tmp = TempDir::new("oci-sign");
    let ws = tmp.workspace();
    let keys = tmp.0.join("keys");
    ok(&ws, &["plugin", "keygen", "--dir", str_of(&keys), "--name", "alice"]);
    ok(&ws, &["plugin", "keygen", "--dir", str_of(&keys), "--name", "mallory"]);
    let err = refused(&ws, &["plugin", "keygen", "--dir", str_of(&keys), "--name", "alice"]);
    assert!(err.contains("alice.key exists"), "{err}");
    let (alice_pub, alice_key, mallory_key) = (keys.join("alice.pub"), keys.join("alice.key"), keys.join("mallory.key"));
    let plugins = tmp.0.join("plugins");
    let echo = registry.reference("team/echo:1.0.0");
    let digest = pushed_digest(&ok(&ws, &["plugin", "push", ECHO, &echo]));

    // Unsigned, then signed by a key not trusted: refused, nothing written.
    let install = ["plugin", "install", &echo, "--dir", str_of(&plugins), "--key", str_of(&alice_pub)];
    let err = refused(&ws, &install);
    assert!(err.contains("is not signed"), "{err}");
    ok(&ws, &["plugin", "sign", &echo, "--key", str_of(&mallory_key)]);
    let err = refused(&ws, &install);
    assert!(err.contains("1 signature(s), none by a trusted key"), "{err}");
    assert!(!plugins.join("echo.wasm").exists());

    // Signed by alice: installed, and the record keeps both signatures.
    ok(&ws, &["plugin", "sign", &echo, "--key", str_of(&alice_key)]);
    let installed = ok(&ws, &install);
    assert!(installed.contains("signed by alice"), "{installed}");
    let lock = std::fs::read_to_string(plugins.join("plugboard.lock")).unwrap();
    assert_eq!(lock.matches("[[plugin.signatures]]").count(), 2, "{lock}");

    // On load, under [provenance]: signer, digest and source are shown.
    let config = tmp.0.join("operator.toml");
    std::fs::write(&config, "[provenance]\nrequire_signatures = true\ntrusted_keys = [\"keys/alice.pub\"]\n").unwrap();
    let with = |args: &[&str]| {
        let mut all = vec!["--config", str_of(&config), "--plugins", str_of(&plugins)];
        all.extend_from_slice(args);
        plugboard(&ws, &all)
    };
    let inspected = text(&with(&["plugin", "inspect", "echo"]).stdout);
    assert!(inspected.contains(&format!("installed   {echo} ({digest})")), "{inspected}");
    assert!(inspected.contains("signer      alice (sha256:"), "{inspected}");

    // A plugin copied in by hand, and an installed one changed afterwards, do not load.
    std::fs::copy(VERSIONED_A, plugins.join("by_hand.wasm")).unwrap();
    let listed = text(&with(&["plugin", "list"]).stdout);
    assert!(listed.contains("echo 0.1.0") && listed.contains("signed by alice"), "{listed}");
    assert!(listed.contains("FAILED") && listed.contains("by_hand.wasm was not installed from a registry"), "{listed}");
    std::fs::remove_file(plugins.join("by_hand.wasm")).unwrap();
    std::fs::copy(VERSIONED_B, plugins.join("echo.wasm")).unwrap();
    let listed = text(&with(&["plugin", "list"]).stdout);
    assert!(listed.contains("echo.wasm changed since it was installed from"), "{listed}");
    assert!(!listed.contains("echo 0.1.0"), "{listed}");

    // Without the requirement, the changed file loads as a local file, vouched for by no one.
    let listed = ok(&ws, &["--plugins", str_of(&plugins), "plugin", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let changed =
        listed["plugins"].as_array().unwrap().iter().find(|p| p["source"]["path"].as_str().is_some_and(|s| s.ends_with("echo.wasm")));
    assert!(changed.is_some_and(|p| p["provenance"].is_null()), "{:?} {}", changed.map(|p| &p["provenance"]), listed["failures"]);

    // A trusted key that cannot be read is a configuration error naming the file.
    std::fs::write(&config, "[provenance]\nrequire_signatures = true\ntrusted_keys = [\"keys/nobody.pub\"]\n").unwrap();
    let err = text(&with(&["plugin", "list"]).stderr);
    assert!(err.contains("keys/nobody.pub") && err.contains("cannot read the key"), "{err}");
}

#[test]
#[ignore = "needs an OCI registry: Debian's docker-registry (.ci/run installs it)"]
fn a_plugin_installed_into_a_workspace_loads_only_once_the_operator_trusts_it() {
    let registry = TestRegistry::start();
    let tmp = TempDir::new("oci-workspace");
    let ws = tmp.workspace();
    let echo = registry.reference("plugins/echo:1.0.0");
    ok(&ws, &["plugin", "push", ECHO, &echo]);
    let dir = ws.join(".plugboard/plugins");
    ok(&ws, &["plugin", "install", &echo, "--dir", str_of(&dir)]);
    let out = plugboard(&ws, &["tool", "list"]);
    assert!(!text(&out.stdout).contains("echo"), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("echo.wasm is not trusted"), "{}", text(&out.stderr));
    trust(&ws, None);
    let listed = ok(&ws, &["plugin", "list"]);
    assert!(listed.contains("echo 0.1.0") && listed.contains(&format!("from {echo}")), "{listed}");
}
