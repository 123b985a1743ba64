//! A hostile plugin must be contained with a clear error while the host keeps serving.

use std::time::Instant;

use plugboard::capability::confinement::ConfinementSupport;
use plugboard::runtime::{CallError, PluginHost};
use plugboard_tests::{LocalServer, Workspace, call};
use serde_json::json;

/// The host still answers a healthy call.
async fn assert_serving(host: &PluginHost) {
    let out = call(host, "echo", json!({"text": "still here"})).await.expect("the host keeps serving");
    assert_eq!(out.text, "still here");
}

fn hostile_config(extra: &str) -> String {
    format!("[plugins.hostile]\nfilesystem = [{{ path = \".\", access = \"read-write\" }}]\n{extra}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_is_stopped_at_the_deadline_while_others_are_served() {
    let ws = Workspace::new();
    ws.config(&hostile_config("limits = { timeout_ms = 400 }"));
    let host = ws.host().await;
    let started = Instant::now();
    let (spin, healthy) = tokio::join!(call(&host, "spin", json!({})), async {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        call(&host, "echo", json!({"text": "concurrent"})).await
    });
    let err = spin.unwrap_err();
    assert!(matches!(err, CallError::Timeout { limit_ms: 400, .. }), "{err}");
    assert!(err.to_string().contains("timeout_ms"), "{err}");
    assert_eq!(healthy.unwrap().text, "concurrent");
    assert!(started.elapsed().as_secs() < 10, "stopped, not left running");
    assert_serving(&host).await;
}

#[tokio::test]
async fn memory_growth_past_the_limit_is_stopped() {
    let ws = Workspace::new();
    ws.config(&hostile_config("limits = { memory_mib = 32 }"));
    let host = ws.host().await;
    let err = call(&host, "grow_memory", json!({})).await.unwrap_err();
    assert!(matches!(err, CallError::MemoryExceeded { limit_mib: 32, .. }), "{err}");
    assert_serving(&host).await;
}

#[tokio::test]
async fn reads_outside_the_grants_fail_by_dotdot_absolute_path_and_symlink() {
    let ws = Workspace::new();
    ws.config(&hostile_config(""));
    std::os::unix::fs::symlink(&ws.outside, ws.dir.join("link")).unwrap();
    std::os::unix::fs::symlink(ws.outside.join("secret.txt"), ws.dir.join("secret-link.txt")).unwrap();
    let host = ws.host().await;
    let absolute = ws.outside.join("secret.txt");
    for path in ["../outside/secret.txt", absolute.to_str().unwrap(), "link/secret.txt", "secret-link.txt"] {
        let result = call(&host, "read_raw", json!({"path": path})).await;
        match result {
            Ok(out) => panic!("reading {path} must fail, got {:?}", out.text),
            Err(e) => assert!(!e.to_string().contains("TOP-SECRET"), "{e}"),
        }
    }
    // The same plugin can read inside its grant.
    ws.file("inside.txt", "fine");
    assert_eq!(call(&host, "read_raw", json!({"path": "inside.txt"})).await.unwrap().text, "fine");
    assert_serving(&host).await;
}

#[tokio::test]
async fn writes_outside_the_grants_and_into_read_only_grants_fail() {
    let ws = Workspace::new();
    ws.file("ro/keep.txt", "original");
    ws.config("[plugins.hostile]\nfilesystem = [{ path = \"ro\", access = \"read-only\" }]\n");
    std::os::unix::fs::symlink(&ws.outside, ws.dir.join("ro/link")).unwrap();
    let host = ws.host().await;
    let absolute = ws.outside.join("new.txt");
    for path in ["ro/keep.txt", "ro/new.txt", "ro/../../outside/new.txt", absolute.to_str().unwrap(), "ro/link/new.txt"] {
        let err = call(&host, "write_raw", json!({"path": path})).await.unwrap_err();
        assert!(matches!(err, CallError::Denied { .. } | CallError::Failed { .. }), "{path}: {err}");
    }
    let err = call(&host, "write_raw", json!({"path": "ro/keep.txt"})).await.unwrap_err();
    assert!(matches!(&err, CallError::Denied { kind, .. } if kind.to_string() == "filesystem"), "{err}");
    assert_eq!(std::fs::read_to_string(ws.dir.join("ro/keep.txt")).unwrap(), "original");
    assert!(!ws.dir.join("ro/new.txt").exists());
    assert!(!ws.outside.join("new.txt").exists());
    assert_serving(&host).await;
}

#[tokio::test]
async fn an_ungranted_host_is_refused_while_a_granted_one_works() {
    let granted = LocalServer::start("granted");
    let refused = LocalServer::start("refused");
    let ws = Workspace::new();
    ws.config(&format!("[plugins.hostile]\nnetwork = [\"{}\"]\n", granted.url()));
    let host = ws.host().await;
    let out = call(&host, "http_get", json!({"url": granted.url()})).await.unwrap();
    assert_eq!(out.text, "200 granted");
    let err = call(&host, "http_get", json!({"url": refused.url()})).await.unwrap_err();
    match &err {
        CallError::Denied { kind, target, reason, .. } => {
            assert_eq!(kind.to_string(), "network");
            assert_eq!(target, &refused.url(), "the error names the host");
            assert!(reason.contains("network grant"), "{reason}");
        }
        e => panic!("expected a network denial, got {e}"),
    }
    assert_eq!(refused.hits(), 0);
    assert_serving(&host).await;
}

#[tokio::test]
async fn environment_variables_are_visible_only_when_granted() {
    // SAFETY: set before any host of this test starts; other tests read different names.
    unsafe {
        std::env::set_var("PLUGBOARD_E2E_SECRET", "s3cr3t");
        std::env::set_var("PLUGBOARD_E2E_VISIBLE", "shown");
    }
    let ws = Workspace::new();
    ws.config("[plugins.hostile]\nenv = [\"PLUGBOARD_E2E_VISIBLE\"]\n");
    let host = ws.host().await;
    assert_eq!(call(&host, "env_var", json!({"name": "PLUGBOARD_E2E_SECRET"})).await.unwrap().text, "absent");
    assert_eq!(call(&host, "env_var", json!({"name": "HOME"})).await.unwrap().text, "absent");
    assert_eq!(call(&host, "env_var", json!({"name": "PLUGBOARD_E2E_VISIBLE"})).await.unwrap().text, "shown");
}

#[tokio::test]
async fn a_panic_is_reported_with_its_message() {
    let ws = Workspace::new();
    let host = ws.host().await;
    let err = call(&host, "panic", json!({})).await.unwrap_err();
    match &err {
        CallError::Crashed { plugin, message } => {
            assert_eq!(plugin, "hostile");
            assert!(message.contains("panicked on purpose"), "{message}");
        }
        e => panic!("expected a crash, got {e}"),
    }
    assert_serving(&host).await;
}

#[tokio::test]
async fn a_hostile_tool_list_is_refused_at_load_with_the_reason_and_within_the_time_limit() {
    let cases = [
        ("many", "it lists 200000 tools; a plugin may provide at most 128"),
        ("spaces", "the tool name `two words` may hold only lowercase letters"),
        ("control", "the tool name `bell\\u{7}` may hold only"),
        ("long", "a tool name must have 1 to 64 characters (`xxxx"),
        ("spin", "exceeded its time limit of 500 ms"),
    ];
    for (list, reason) in cases {
        let ws = Workspace::new();
        std::fs::copy(plugboard_tests::components::LISTER, ws.plugins.join("lister.wasm")).unwrap();
        ws.config(&format!("[plugins.lister]\nlimits = {{ timeout_ms = 500 }}\nsettings = {{ list = \"{list}\" }}\n")).trust();
        let host = plugboard_tests::start_host(ws.options()).await.unwrap();
        let registry = host.registry();
        let failure = registry.failures().iter().find(|f| f.source.to_string().contains("lister.wasm")).cloned();
        let failure = failure.unwrap_or_else(|| panic!("the `{list}` list was accepted"));
        assert!(failure.reason.contains(reason), "{list}: {}", failure.reason);
        assert!(failure.reason.len() < 400, "{list}: the reason stays short: {}", failure.reason);
        assert_serving(&host).await;
    }
    // The same plugin with a well-formed list loads and serves.
    let ws = Workspace::new();
    std::fs::copy(plugboard_tests::components::LISTER, ws.plugins.join("lister.wasm")).unwrap();
    let host = ws.host().await;
    assert_eq!(call(&host, "fine", json!({})).await.unwrap().text, "fine ran");
}

#[tokio::test]
async fn output_over_the_cap_is_refused() {
    let ws = Workspace::new();
    ws.config("[plugins.hostile]\nlimits = { max_output_bytes = 1000 }\n");
    let host = ws.host().await;
    assert_eq!(call(&host, "big_output", json!({"bytes": 1000})).await.unwrap().text.len(), 1000);
    let err = call(&host, "big_output", json!({"bytes": 1001})).await.unwrap_err();
    assert!(matches!(err, CallError::OutputTooLarge { size: 1001, limit: 1000, .. }), "{err}");
    assert_serving(&host).await;
}

#[tokio::test]
async fn a_disallowed_command_is_refused() {
    let ws = Workspace::new();
    ws.config(&hostile_config("process = [\"echo *\"]"));
    let host = ws.host().await;
    assert!(call(&host, "run", json!({"command": "echo ok"})).await.unwrap().text.contains("ok"));
    let err = call(&host, "run", json!({"command": "touch pwned"})).await.unwrap_err();
    assert!(matches!(&err, CallError::Denied { kind, .. } if kind.to_string() == "process"), "{err}");
    assert!(!ws.dir.join("pwned").exists());
    assert_serving(&host).await;
}

#[tokio::test]
async fn an_allowed_command_cannot_write_outside_the_workspace() {
    let ws = Workspace::new();
    ws.config(&hostile_config("process = [\"touch *\"]"));
    let host = ws.host().await;
    let target = ws.outside.join("escaped.txt");
    let result = call(&host, "run", json!({"command": format!("touch {}", target.display())})).await;
    match host.confinement() {
        ConfinementSupport::Confined(_) => {
            let out = result.expect("the command runs, confined");
            assert!(out.text.contains("Permission denied"), "{}", out.text);
            // Inside the writable grant the same command works.
            call(&host, "run", json!({"command": "touch inside.txt"})).await.unwrap();
            assert!(ws.dir.join("inside.txt").exists());
        }
        ConfinementSupport::Unavailable(_) => {
            // Without kernel confinement the default configuration refuses commands.
            let err = result.unwrap_err();
            assert!(err.to_string().contains("cannot be confined"), "{err}");
        }
    }
    assert!(!target.exists(), "nothing was written outside the workspace");
    assert_serving(&host).await;
}

/// Commands run confined beyond the filesystem: their own PID, network and mount namespaces,
/// Landlock's TCP and signal rules. Where the kernel cannot confine them, each test checks
/// that commands are refused instead.
mod commands {
    use super::*;

    /// A workspace whose `hostile` plugin may run any command line, with the probe command
    /// copied in.
    async fn confined() -> Option<(Workspace, std::sync::Arc<PluginHost>)> {
        confined_with("").await
    }

    /// The same, with `extra` lines in the plugin's table.
    async fn confined_with(extra: &str) -> Option<(Workspace, std::sync::Arc<PluginHost>)> {
        let ws = Workspace::new();
        ws.config(&hostile_config(&format!("process = [\"*\"]\n{extra}")));
        std::fs::copy(env!("CARGO_BIN_EXE_confinement-probe"), ws.dir.join("probe")).unwrap();
        let host = ws.host().await;
        if let ConfinementSupport::Unavailable(reason) = host.confinement() {
            let err = call(&host, "run", json!({"command": "true"})).await.unwrap_err();
            assert!(err.to_string().contains("cannot be confined"), "{err}");
            eprintln!("commands are refused here ({reason}); the confinement layers are not exercised");
            return None;
        }
        Some((ws, host))
    }

    async fn run(host: &PluginHost, command: &str) -> String {
        call(host, "run", json!({ "command": command })).await.unwrap().text
    }

    #[tokio::test]
    async fn a_command_cannot_read_the_servers_environment_other_processes_or_shadow() {
        let Some((_ws, host)) = confined().await else { return };
        let canary = env!("CARGO_MANIFEST_DIR");
        assert!(std::fs::read_to_string(format!("/proc/{}/environ", std::process::id())).unwrap().contains(canary), "the canary is set");
        let out = run(&host, &format!("cat /proc/{}/environ; cat /proc/1/environ; ls /proc", std::process::id())).await;
        assert!(!out.contains(canary), "the server's environment leaked: {out}");
        let pids: Vec<&str> = out.split_whitespace().filter(|w| w.chars().all(|c| c.is_ascii_digit())).collect();
        assert!(pids.len() <= 3, "only the command's own processes are visible: {pids:?}");
        let out = run(&host, "cat /etc/shadow; cat /etc/passwd").await;
        assert!(out.contains("root:x:0:0") && !out.contains("root:$") && out.contains("/etc/shadow"), "{out}");
        assert_serving(&host).await;
    }

    #[tokio::test]
    async fn a_command_has_no_network_not_even_loopback() {
        let Some((ws, host)) = confined().await else { return };
        let server = LocalServer::start("plugboard API");
        let tcp = run(&host, &format!("./probe connect-tcp {}", server.addr)).await;
        assert!(tcp.contains("refused") && tcp.contains("exit=Some(1)"), "{tcp}");
        assert_eq!(server.hits(), 0, "nothing reached the listener");
        let udp = run(&host, &format!("./probe send-udp {}", server.addr)).await;
        assert!(udp.contains("refused"), "{udp}");
        // A unix socket outside the grants cannot be reached either.
        let socket = ws.outside.join("api.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let unix = run(&host, &format!("./probe connect-unix {}", socket.display())).await;
        assert!(unix.contains("refused"), "{unix}");
        assert_serving(&host).await;
    }

    #[tokio::test]
    async fn a_command_reaches_the_hosts_of_its_network_grant_through_the_proxy_and_nothing_else() {
        let (granted, other) = (LocalServer::start("granted host"), LocalServer::start("other host"));
        let grant = format!("network = [\"http://{0}\", \"https://{0}\"]", granted.addr);
        let Some((_ws, host)) = confined_with(&grant).await else { return };
        let out = run(&host, &format!("./probe proxy-get {}/x", granted.url())).await;
        assert!(out.contains("reached HTTP/1.1 200 OK") && out.contains("granted host"), "{out}");
        let out = run(&host, &format!("./probe proxy-connect {}", granted.addr)).await;
        assert!(out.contains("200 Connection Established") && out.contains("granted host"), "{out}");
        assert_eq!(granted.hits(), 2, "both requests went through");
        // Another host (another port here) is refused by the proxy, with the reason.
        let out = run(&host, &format!("./probe proxy-get {}/x", other.url())).await;
        assert!(out.contains("403 Forbidden") && out.contains("not in the plugin's network grant"), "{out}");
        let out = run(&host, &format!("./probe proxy-connect {}", other.addr)).await;
        assert!(out.contains("403 Forbidden"), "{out}");
        // Past the proxy, not even the granted host can be reached.
        let out = run(&host, &format!("./probe connect-tcp {}", granted.addr)).await;
        assert!(out.contains("refused"), "{out}");
        // A datagram may leave the probe, into the namespace's own loopback: it never arrives.
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        run(&host, &format!("./probe send-udp {}", udp.local_addr().unwrap())).await;
        udp.set_read_timeout(Some(std::time::Duration::from_millis(200))).unwrap();
        assert!(udp.recv(&mut [0u8; 16]).is_err(), "a datagram left the command's namespace");
        assert_eq!((granted.hits(), other.hits()), (2, 0), "nothing else reached either host");
        // Connections held open past the cap: the next one is refused, and the host serves on.
        let cap = plugboard::capability::egress::MAX_CONNECTIONS;
        let out = run(&host, &format!("./probe proxy-flood {cap} {}/x", granted.url())).await;
        assert!(out.contains("503 Service Unavailable") && out.contains("at most 64 connections"), "{out}");
        let out = run(&host, &format!("./probe proxy-flood {} {}/x", cap - 1, granted.url())).await;
        assert!(out.contains("200 OK"), "{out}");
        assert_serving(&host).await;
    }

    #[tokio::test]
    async fn a_command_granted_all_of_loopback_cannot_reach_plugboards_own_api_through_the_proxy() {
        let (own_api, dev_server) = (LocalServer::start("plugboard API"), LocalServer::start("a dev server"));
        let _served = plugboard::capability::network::serving(own_api.addr.port());
        let Some((_ws, host)) = confined_with("network = [\"http://127.0.0.1:*\", \"https://127.0.0.1:*\", \"http://localhost:*\"]").await
        else {
            return;
        };
        let out = run(&host, &format!("./probe proxy-get {}/", dev_server.url())).await;
        assert!(out.contains("a dev server"), "{out}");
        let port = own_api.addr.port();
        for probe in [
            format!("proxy-get http://127.0.0.1:{port}/"),
            format!("proxy-get http://localhost:{port}/"),
            format!("proxy-connect 127.0.0.1:{port}"),
        ] {
            let out = run(&host, &format!("./probe {probe}")).await;
            assert!(out.contains("403 Forbidden") && out.contains("Plugboard's own API"), "{probe}: {out}");
        }
        assert_eq!(own_api.hits(), 0, "nothing reached Plugboard's API");
        assert_serving(&host).await;
    }

    #[tokio::test]
    async fn a_command_cannot_signal_the_server_and_leaves_no_process_behind() {
        let Some((ws, host)) = confined().await else { return };
        let out = run(&host, &format!("kill -9 {pid}; kill -9 $PPID; echo after", pid = std::process::id())).await;
        assert!(out.contains("after"), "{out}");
        // A double-forked, detached child is ended with the call.
        let marker = ws.dir.join("outlived");
        let out = run(&host, &format!("setsid sh -c 'sleep 1; touch {}' > /dev/null 2>&1 & echo started", marker.display())).await;
        assert!(out.contains("started"), "{out}");
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        assert!(!marker.exists(), "a process outlived its call");
        assert_serving(&host).await;
    }
}

/// One plugin cannot starve the host: guests yield, the instance pool queues, live output
/// is bounded.
mod starvation {
    use std::os::unix::fs::OpenOptionsExt;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spinning_guests_yield_so_a_call_started_after_them_finishes_before_them() {
        let ws = Workspace::new();
        ws.config(&hostile_config("limits = { timeout_ms = 1500 }"));
        let host = ws.host().await;
        // More spinning guests than worker threads.
        let spins: Vec<_> = (0..6)
            .map(|_| {
                let host = host.clone();
                tokio::spawn(async move {
                    let err = call(&host, "spin", json!({})).await.unwrap_err();
                    assert!(matches!(err, CallError::Timeout { .. }), "{err}");
                    Instant::now()
                })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        // On a worker thread, as every call of the server is (the test's own thread is not one).
        let echo = host.clone();
        let (echo, answered) = tokio::spawn(async move {
            let out = call(&echo, "echo", json!({"text": "answered"})).await.unwrap();
            (out, Instant::now())
        })
        .await
        .unwrap();
        assert_eq!(echo.text, "answered");
        for spin in spins {
            assert!(spin.await.unwrap() > answered, "the echo call waited for a spinning guest to end");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_exhausted_instance_pool_makes_calls_wait_then_fail_as_busy_not_crashed() {
        let ws = Workspace::new();
        ws.config(&format!(
            "[engine]\nmax_instances = 2\n{}[plugins.echo]\nlimits = {{ timeout_ms = 200 }}\n",
            hostile_config("limits = { timeout_ms = 1500 }")
        ));
        let host = ws.host().await;
        if host.engine().allocator != plugboard::runtime::engine::AllocatorKind::Pooling {
            eprintln!("the pooling allocator is not in use here; there is no pool to exhaust");
            return;
        }
        // As many calls at once as the queue holds wait for the two slots and all succeed.
        let queue = 2 * plugboard::runtime::engine::MAX_WAITING_PER_SLOT;
        let calls: Vec<_> = (0..queue + 2)
            .map(|i| {
                let host = host.clone();
                tokio::spawn(async move { call(&host, "echo", json!({"text": format!("{i}")})).await })
            })
            .collect();
        for (i, c) in calls.into_iter().enumerate() {
            assert_eq!(c.await.unwrap().unwrap().text, format!("{i}"));
        }
        // Both slots held by spinning guests: a call waits its time limit, then is busy.
        let spins: Vec<_> = (0..2)
            .map(|_| {
                let host = host.clone();
                tokio::spawn(async move { call(&host, "spin", json!({})).await })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        // A full queue refuses the next caller at once; the others wait their limit.
        let waiting: Vec<_> = (0..queue + 1)
            .map(|_| {
                let host = host.clone();
                tokio::spawn(async move { call(&host, "echo", json!({"text": "x"})).await })
            })
            .collect();
        let mut at_once = 0;
        for w in waiting {
            let err = w.await.unwrap().unwrap_err();
            let CallError::Busy { capacity: 2, waited_ms, .. } = err else { panic!("not busy: {err}") };
            assert!(err.to_string().contains("max_instances"), "{err}");
            at_once += usize::from(waited_ms < 100);
        }
        assert_eq!(at_once, 1, "only the caller past the queue is refused without waiting");
        for spin in spins {
            assert!(matches!(spin.await.unwrap(), Err(CallError::Timeout { .. })));
        }
        assert_serving(&host).await;
    }

    /// Threads of this process (the host runs in it) asleep in `openat` or `openat2` (which
    /// cap-std uses): an open of a FIFO that waits for a writer.
    fn threads_blocked_in_open() -> usize {
        let opens = [libc::SYS_openat, libc::SYS_openat2];
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("syscall")).ok())
            .filter(|syscall| syscall.split(' ').next().and_then(|n| n.parse().ok()).is_some_and(|n: libc::c_long| opens.contains(&n)))
            .count()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn opening_a_fifo_in_a_grant_fails_at_once_and_leaves_no_host_thread_blocked() {
        let ws = Workspace::new();
        ws.config(&hostile_config("limits = { timeout_ms = 1000 }"));
        let fifo = ws.dir.join("pipe");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        ws.file("regular.txt", "plain");
        let host = ws.host().await;
        let calls = (0..16).map(|_| call(&host, "read_raw", json!({"path": "pipe"})));
        let results = futures::future::join_all(calls).await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let blocked = threads_blocked_in_open();
        // Release whatever is still waiting, so a failure cannot also hang the runtime.
        for _ in 0..blocked {
            let _ = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&fifo);
        }
        assert_eq!(blocked, 0, "host threads still wait on the FIFO after the calls ended");
        for result in results {
            let err = result.expect_err("a FIFO is not opened");
            assert!(!matches!(err, CallError::Timeout { .. }), "refused at once, not at the time limit: {err}");
            assert!(err.to_string().to_lowercase().contains("not supported"), "{err}");
        }
        // Regular files still read and write in blocking mode.
        assert_eq!(call(&host, "read_raw", json!({"path": "regular.txt"})).await.unwrap().text, "plain");
        call(&host, "write_raw", json!({"path": "written.txt"})).await.unwrap();
        assert!(ws.dir.join("written.txt").exists());
        assert_serving(&host).await;
    }

    #[tokio::test]
    async fn a_calls_progress_output_is_capped() {
        let ws = Workspace::new();
        ws.config("[plugins.hostile]\nlimits = { max_output_bytes = 100000 }\n");
        let host = ws.host().await;
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = seen.clone();
        let sink: plugboard::runtime::state::ProgressSink = std::sync::Arc::new(move |text: &str| {
            counter.fetch_add(text.len(), std::sync::atomic::Ordering::Relaxed);
        });
        let out =
            host.call_tool("flood_progress", &json!({"bytes": 10_000_000}).to_string(), &Default::default(), Some(sink)).await.unwrap();
        assert!(out.text.starts_with("sent "), "{}", out.text);
        let seen = seen.load(std::sync::atomic::Ordering::Relaxed);
        assert!(seen <= 100_000 + 200, "{seen} bytes of progress passed the cap");
        assert!(seen >= 100_000, "progress up to the cap is passed on ({seen})");
    }
}

/// Filesystem grants cannot move: a plugin with write access cannot turn another plugin's
/// grant into a symlink to somewhere else, and nested grants are refused.
mod grants {
    use super::*;

    #[tokio::test]
    async fn a_grant_swapped_for_a_symlink_is_refused_where_it_is_used_and_at_the_next_load() {
        let ws = Workspace::new();
        ws.file("sub/note.txt", "granted\n");
        ws.config("[plugins.hostile]\nfilesystem = [{ path = \".\", access = \"read-write\" }]\n[plugins.read]\nfilesystem = [\"sub\"]\n");
        let app = ws.app().await;
        let host = app.host();
        assert!(call(host, "read", json!({"path": "sub/note.txt"})).await.unwrap().text.contains("granted"));
        // What a plugin or command with write access to the workspace can do.
        std::fs::remove_dir_all(ws.dir.join("sub")).unwrap();
        std::os::unix::fs::symlink(&ws.outside, ws.dir.join("sub")).unwrap();
        let err = call(host, "read", json!({"path": "sub/secret.txt"})).await.unwrap_err();
        assert!(err.to_string().contains("was replaced by a symlink"), "{err}");
        assert!(!err.to_string().contains("TOP-SECRET"));
        // The next load does not follow the symlink either.
        let rejected = app.reload_config().await;
        assert!(rejected.is_ok(), "nothing changed in the file");
        let next = plugboard_tests::start_host(ws.options()).await.unwrap();
        let registry = next.registry();
        let failure = registry.failures().iter().find(|f| f.source.to_string() == "bundled:read").expect("read is not loaded");
        assert!(failure.reason.contains("through a symlink"), "{}", failure.reason);
    }

    #[tokio::test]
    async fn a_read_only_grant_nested_in_a_read_write_one_is_refused_at_load() {
        let ws = Workspace::new();
        ws.file("ro/keep.txt", "x");
        ws.config("[plugins.hostile]\nfilesystem = [{ path = \".\", access = \"read-write\" }, \"ro\"]\n").trust();
        let host = plugboard_tests::start_host(ws.options()).await.unwrap();
        let registry = host.registry();
        let failure = registry.failures().iter().find(|f| f.source.to_string().contains("hostile")).expect("refused");
        assert!(failure.reason.contains("lies inside") && failure.reason.contains("read-only"), "{}", failure.reason);
    }
}
