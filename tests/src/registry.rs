//! A real OCI registry on loopback for the tests: the CNCF distribution registry as Debian
//! packages it (`docker-registry`; `.ci/run` installs it), storing in a directory of its own
//! and stopped on drop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why the registry tests are ignored in a plain `cargo test`.
pub const NEEDS: &str = "needs an OCI registry: Debian's docker-registry (.ci/run installs it)";

/// A running registry.
pub struct TestRegistry {
    child: Child,
    dir: PathBuf,
    /// `127.0.0.1:PORT`.
    pub address: String,
}

impl TestRegistry {
    /// Starts one on a free port; panics, saying how to install it, when there is none.
    pub fn start() -> TestRegistry {
        let binary = ["docker-registry", "registry"]
            .into_iter()
            .find(|b| Command::new(b).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok())
            .unwrap_or_else(|| panic!("{NEEDS}: `apt-get install docker-registry`"));
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let dir = std::env::temp_dir().join(format!("plugboard-registry-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("the registry's directory");
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        );
        std::fs::write(dir.join("config.yml"), config).expect("the registry's configuration");
        let child = Command::new(binary)
            .args(["serve", &dir.join("config.yml").display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the registry starts");
        let registry = TestRegistry { child, dir, address: format!("127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !registry.answers() {
            assert!(Instant::now() < deadline, "the registry did not answer on {} within 20 s", registry.address);
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    /// `oci://127.0.0.1:PORT/<path>`.
    pub fn reference(&self, path: &str) -> String {
        format!("oci://{}/{path}", self.address)
    }

    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(&self.address) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        if stream.write_all(b"GET /v2/ HTTP/1.0\r\nHost: registry\r\n\r\n").is_err() {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
