//! Every first-party tool, through the host, under the built-in grants.

use plugboard::runtime::CallError;
use plugboard_tests::{LocalServer, Workspace, call};
use serde_json::json;

#[tokio::test]
async fn read_numbers_lines_and_pages() {
    let ws = Workspace::new();
    ws.file("notes.txt", "one\ntwo\nthree\nfour\n");
    let host = ws.host().await;
    let out = call(&host, "read", json!({"path": "notes.txt"})).await.unwrap();
    assert_eq!(out.text, "     1\tone\n     2\ttwo\n     3\tthree\n     4\tfour\n");
    let out = call(&host, "read", json!({"path": "notes.txt", "offset": 2, "limit": 2})).await.unwrap();
    assert!(out.text.starts_with("     2\ttwo\n     3\tthree\n"), "{}", out.text);
    assert!(out.text.contains("use offset=4 to read more"), "{}", out.text);
}

#[tokio::test]
async fn read_refuses_binary_files_and_directories() {
    let ws = Workspace::new();
    ws.file("image.bin", [0u8, 159, 146, 150, 0, 1, 2]);
    ws.file("dir/inner.txt", "x");
    let host = ws.host().await;
    let err = call(&host, "read", json!({"path": "image.bin"})).await.unwrap_err();
    assert!(matches!(&err, CallError::Failed { message, .. } if message.contains("binary file")), "{err}");
    let err = call(&host, "read", json!({"path": "dir"})).await.unwrap_err();
    assert!(err.to_string().contains("is a directory"), "{err}");
}

#[tokio::test]
async fn read_outside_the_workspace_names_the_filesystem_grant() {
    let ws = Workspace::new();
    let host = ws.host().await;
    let err = call(&host, "read", json!({"path": "../outside/secret.txt"})).await.unwrap_err();
    match &err {
        CallError::Denied { plugin, kind, hint, .. } => {
            assert_eq!(plugin, "read");
            assert_eq!(kind.to_string(), "filesystem");
            assert!(hint.contains("[plugins.read]") && hint.contains("filesystem = ["), "{hint}");
        }
        other => panic!("expected a denial, got {other}"),
    }
    assert!(!err.to_string().contains("TOP-SECRET"));
}

#[tokio::test]
async fn invalid_arguments_name_the_field() {
    let ws = Workspace::new();
    let host = ws.host().await;
    let err = call(&host, "read", json!({"path": 7})).await.unwrap_err();
    assert!(matches!(&err, CallError::InvalidArguments { message, .. } if message.contains("`path`")), "{err}");
    let err = call(&host, "read", json!({})).await.unwrap_err();
    assert!(err.to_string().contains("missing field `path`"), "{err}");
    let err = host.call_tool("read", "[1,2]", &Default::default(), None).await.unwrap_err();
    assert!(err.to_string().contains("expected a JSON object"), "{err}");
    let err = call(&host, "nope", json!({})).await.unwrap_err();
    assert!(matches!(err, CallError::UnknownTool { .. }), "{err}");
}

#[tokio::test]
async fn write_creates_files_and_parents() {
    let ws = Workspace::new();
    let host = ws.host().await;
    let out = call(&host, "write", json!({"path": "a/b/c.txt", "content": "hello\n"})).await.unwrap();
    assert!(out.text.starts_with("Created"), "{}", out.text);
    assert_eq!(std::fs::read_to_string(ws.dir.join("a/b/c.txt")).unwrap(), "hello\n");
    let out = call(&host, "write", json!({"path": "a/b/c.txt", "content": "bye\n"})).await.unwrap();
    assert!(out.text.starts_with("Overwrote"), "{}", out.text);
    assert_eq!(std::fs::read_to_string(ws.dir.join("a/b/c.txt")).unwrap(), "bye\n");
}

#[tokio::test]
async fn edit_replaces_exactly_once_unless_told_otherwise() {
    let ws = Workspace::new();
    ws.file("f.rs", "let a = 1;\nlet b = 1;\n");
    let host = ws.host().await;
    let err = call(&host, "edit", json!({"path": "f.rs", "old_string": "= 1", "new_string": "= 2"})).await.unwrap_err();
    assert!(err.to_string().contains("occurs 2 times"), "{err}");
    let err = call(&host, "edit", json!({"path": "f.rs", "old_string": "let c", "new_string": "let d"})).await.unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
    call(&host, "edit", json!({"path": "f.rs", "old_string": "let a = 1", "new_string": "let a = 3"})).await.unwrap();
    assert_eq!(std::fs::read_to_string(ws.dir.join("f.rs")).unwrap(), "let a = 3;\nlet b = 1;\n");
    let out = call(&host, "edit", json!({"path": "f.rs", "old_string": "let", "new_string": "const", "replace_all": true})).await.unwrap();
    assert!(out.text.contains("Replaced 2 occurrences"), "{}", out.text);
    assert_eq!(std::fs::read_to_string(ws.dir.join("f.rs")).unwrap(), "const a = 3;\nconst b = 1;\n");
}

#[tokio::test]
async fn list_glob_and_grep_find_what_is_there() {
    let ws = Workspace::new();
    ws.file("src/main.rs", "fn main() {\n    println!(\"Hello\");\n}\n");
    ws.file("src/lib/mod.rs", "pub fn hello() {}\n");
    ws.file("README.md", "# hello world\n");
    ws.file("target/debug/junk.rs", "fn hello() {}\n");
    let host = ws.host().await;

    let out = call(&host, "list", json!({})).await.unwrap();
    assert!(out.text.contains("  src/\n    lib/\n      mod.rs\n    main.rs\n"), "{}", out.text);
    assert!(!out.text.contains("junk.rs"), "target/ is skipped: {}", out.text);

    let out = call(&host, "glob", json!({"pattern": "**/*.rs"})).await.unwrap();
    let mut found: Vec<&str> = out.text.lines().collect();
    found.sort();
    let expected = [ws.dir.join("src/lib/mod.rs"), ws.dir.join("src/main.rs")];
    assert_eq!(found, expected.iter().map(|p| p.to_str().unwrap()).collect::<Vec<_>>());

    let out = call(&host, "grep", json!({"pattern": "hel+o", "case_insensitive": true, "include": "*.rs"})).await.unwrap();
    assert!(out.text.contains("src/main.rs:2:     println!(\"Hello\");"), "{}", out.text);
    assert!(out.text.contains("src/lib/mod.rs:1: pub fn hello() {}"), "{}", out.text);
    assert!(!out.text.contains("README.md"), "include filters files: {}", out.text);

    let out = call(&host, "grep", json!({"pattern": "hello", "case_insensitive": true, "max_matches": 1})).await.unwrap();
    assert_eq!(out.text.lines().filter(|l| l.contains(": ")).count(), 1, "{}", out.text);
    assert!(out.text.contains("stopped at 1 matches"), "{}", out.text);

    let err = call(&host, "grep", json!({"pattern": "("})).await.unwrap_err();
    assert!(matches!(&err, CallError::InvalidArguments { message, .. } if message.contains("`pattern`")), "{err}");
}

#[tokio::test]
async fn fetch_reaches_granted_hosts_only() {
    let server = LocalServer::start("fetched body");
    let ws = Workspace::new();
    ws.config(&format!("[plugins.fetch]\nnetwork = [\"{}\"]\n", server.url()));
    let host = ws.host().await;
    let out = call(&host, "fetch", json!({"url": format!("{}/page", server.url())})).await.unwrap();
    assert_eq!(out.text, "fetched body");
    assert_eq!(server.hits(), 1);

    let other = LocalServer::start("must not be reached");
    let err = call(&host, "fetch", json!({"url": other.url()})).await.unwrap_err();
    match &err {
        CallError::Denied { kind, target, hint, .. } => {
            assert_eq!(kind.to_string(), "network");
            assert_eq!(target, &other.url());
            assert!(hint.contains("network = ["), "{hint}");
        }
        e => panic!("expected a network denial, got {e}"),
    }
    assert_eq!(other.hits(), 0, "a refused request is never sent");
}

#[tokio::test]
async fn a_working_directory_outside_the_grants_is_hinted_as_a_filesystem_grant_and_works_once_granted() {
    let ws = Workspace::new();
    let grants = |extra: &str| {
        format!(
            "[plugins.shell]\nfilesystem = [{{ path = \".\", access = \"read-write\" }}{extra}]\nprocess = [\"pwd\"]\n[sandbox]\nunconfined_commands = \"allow\"\n"
        )
    };
    ws.config(&grants(""));
    let outside = ws.outside.canonicalize().unwrap();
    let host = ws.host().await;
    let err = call(&host, "shell", json!({"command": "pwd", "workdir": outside})).await.unwrap_err();
    match &err {
        CallError::Denied { kind, target, hint, .. } => {
            assert_eq!(kind.to_string(), "filesystem", "{err}");
            assert_eq!(target, &outside.display().to_string());
            assert!(hint.contains(&format!("filesystem = [{{ path = {:?}", outside.display().to_string())), "{hint}");
            assert!(!hint.contains("process ="), "a command pattern cannot allow a working directory: {hint}");
        }
        e => panic!("expected a denial, got {e}"),
    }
    ws.config(&grants(&format!(", {{ path = {:?}, access = \"read-only\" }}", outside.display().to_string())));
    let host = ws.host().await;
    let out = call(&host, "shell", json!({"command": "pwd", "workdir": outside})).await.unwrap();
    assert!(out.text.starts_with(&outside.display().to_string()), "{}", out.text);
}

#[tokio::test]
async fn shell_runs_granted_commands_only() {
    let ws = Workspace::new();
    ws.config("[plugins.shell]\nfilesystem = [{ path = \".\", access = \"read-write\" }]\nprocess = [\"echo *\", \"cat *\"]\n[sandbox]\nunconfined_commands = \"allow\"\n");
    ws.file("hello.txt", "from a file\n");
    let host = ws.host().await;
    let out = call(&host, "shell", json!({"command": "echo hi && cat hello.txt"})).await.unwrap();
    assert_eq!(out.text, "hi\nfrom a file\n(exit code 0)");
    let err = call(&host, "shell", json!({"command": "echo hi; rm hello.txt"})).await.unwrap_err();
    match &err {
        CallError::Denied { kind, reason, hint, .. } => {
            assert_eq!(kind.to_string(), "process");
            assert!(reason.contains("`rm hello.txt`"), "{reason}");
            assert!(hint.contains("process = [\"rm\", \"rm *\"]"), "{hint}");
        }
        e => panic!("expected a process denial, got {e}"),
    }
    assert!(ws.dir.join("hello.txt").exists());
}
