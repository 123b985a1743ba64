//! Kernel confinement of commands run through the process capability. A command is not
//! WebAssembly, so the sandbox cannot hold it; on Linux each command runs inside layers that
//! each close what the others leave open:
//!
//! 1. **Namespaces** (`unshare`): its own PID namespace with a fresh `/proc`, so no other
//!    process (the server included) is visible, no signal reaches one, and the whole tree
//!    ends when the command's shell does, `setsid` children included; its own network
//!    namespace (no interface but a loopback that is down: no network at all), or, when its
//!    plugin may reach some hosts, one whose loopback holds only the host's proxy for those
//!    hosts (`egress`); its own mount, IPC and UTS namespaces. Without root, a user
//!    namespace maps the caller's ids.
//! 2. **Landlock**: files only beneath the plugin's filesystem grants (read-only where the
//!    grant is) and read access to the system directories a program needs, with secrets
//!    such as `/etc/shadow` carved out ([`HIDDEN_SYSTEM_PATHS`]); no TCP bind, and no TCP
//!    connect but to the proxy's port (ABI 4); no signals and no abstract unix sockets
//!    outside the command (ABI 6).
//! 3. **seccomp**: no unix domain sockets (`socket(AF_UNIX)`), which neither the network
//!    namespace nor Landlock stops from reaching a socket file such as a container
//!    runtime's or a database's, and no `io_uring`, whose operations bypass the filter.
//!
//! The shell is the namespace's PID 1; the process the host spawned waits for it and exits
//! with its status, and a kill of that process (time limit, cancel) kills PID 1 through
//! `PR_SET_PDEATHSIG`, which ends the namespace. Where either layer is missing, commands
//! are refused unless `[sandbox] unconfined_commands = "allow"`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::filesystem::{Access, DirGrant};

/// Whether the kernel can confine commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfinementSupport {
    /// Every layer is there.
    Confined(Layers),
    /// No confinement is possible here; the reason says why.
    Unavailable(String),
}

/// What the kernel gives a confined command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layers {
    /// The Landlock ABI version (TCP rules from 4, signal and socket scopes from 6).
    pub landlock_abi: i32,
}

impl std::fmt::Display for ConfinementSupport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfinementSupport::Confined(layers) => {
                write!(f, "namespaces (PID with its own /proc, network, mount, IPC) and Landlock ABI {}", layers.landlock_abi)?;
                if layers.landlock_abi < 6 {
                    f.write_str(" (without signal scoping, which needs ABI 6: the PID namespace still hides other processes)")?;
                }
                Ok(())
            }
            ConfinementSupport::Unavailable(reason) => write!(f, "unavailable: {reason}"),
        }
    }
}

/// What to do with commands when confinement is unavailable (`[sandbox] unconfined_commands`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnconfinedCommands {
    /// Refuse to run commands (the default).
    #[default]
    Refuse,
    /// Run them without kernel confinement.
    Allow,
}

/// System directories commands may read and execute from, besides the grants. `/proc` is
/// the command's own (its PID namespace); `/sys`, `/run` and the rest of `/dev` are not
/// readable.
pub fn default_system_paths() -> Vec<PathBuf> {
    ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/proc", "/nix"]
        .into_iter()
        .map(PathBuf::from)
        .collect()
}

/// Paths beneath the system directories that commands never read: password hashes, sudo
/// rules, host keys and private TLS keys.
pub const HIDDEN_SYSTEM_PATHS: &[&str] = &[
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssh",
    "/etc/ssl/private",
    "/etc/security/opasswd",
];

/// Devices a command may read and write.
const DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"];

/// Probes the running kernel: Landlock's ABI, then a real confined `/bin/sh -c :`.
#[cfg(target_os = "linux")]
pub fn probe() -> ConfinementSupport {
    // SAFETY: with a null attribute and the VERSION flag, the syscall only returns the ABI.
    let abi = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, std::ptr::null::<u8>(), 0usize, 1u32) } as i32;
    if abi < 1 {
        return ConfinementSupport::Unavailable(format!("Landlock is not usable on this kernel ({})", std::io::Error::last_os_error()));
    }
    let confinement = match Confinement::new(&[], &default_system_paths(), None) {
        Ok(c) => c,
        Err(e) => return ConfinementSupport::Unavailable(e),
    };
    let mut command = std::process::Command::new("/bin/sh");
    command.args(["-c", ":"]).stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    // SAFETY: see `Confinement::enter`.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, move || confinement.enter());
    }
    match command.output() {
        Ok(out) if out.status.success() => ConfinementSupport::Confined(Layers { landlock_abi: abi }),
        Ok(out) => ConfinementSupport::Unavailable(format!(
            "a confined test command failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => ConfinementSupport::Unavailable(format!("namespaces are not usable here ({e})")),
    }
}

/// Probes the running kernel.
#[cfg(not(target_os = "linux"))]
pub fn probe() -> ConfinementSupport {
    ConfinementSupport::Unavailable("command confinement exists only on Linux".into())
}

/// A network namespace a command joins instead of an empty one of its own: the host's
/// proxy listens on its loopback, at `proxy_port`.
#[derive(Debug, Clone, Copy)]
pub struct JoinedNetwork {
    /// The namespace's descriptor, open until the command has started.
    pub namespace: std::os::fd::RawFd,
    /// The one port a command may connect to.
    pub proxy_port: u16,
}

/// A ready-to-apply confinement for one command.
#[cfg(target_os = "linux")]
pub struct Confinement {
    ruleset: std::sync::Mutex<Option<landlock::RulesetCreated>>,
    seccomp: seccompiler::BpfProgram,
    network: Option<JoinedNetwork>,
}

#[cfg(target_os = "linux")]
impl Confinement {
    /// Builds the Landlock rules: read and execute beneath `system_paths` (those that
    /// exist, without [`HIDDEN_SYSTEM_PATHS`]), read and write of a few devices, and each
    /// grant with its access. No TCP but a connect to the proxy of `network`, no signals or
    /// abstract sockets outside.
    pub fn new(grants: &[DirGrant], system_paths: &[PathBuf], network: Option<JoinedNetwork>) -> Result<Self, String> {
        use landlock::{
            ABI, Access as _, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, PathBeneath, PathFd, Ruleset, RulesetAttr,
            RulesetCreatedAttr, Scope,
        };
        let abi = ABI::V6;
        let err = |e: landlock::RulesetError| format!("cannot build the Landlock rules: {e}");
        let open = |path: &Path| PathFd::new(path).map_err(|e| format!("cannot open `{}` for the Landlock rules: {e}", path.display()));
        let mut ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(AccessFs::from_all(abi))
            .map_err(err)?
            .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
            .map_err(err)?
            .scope(Scope::Signal | Scope::AbstractUnixSocket)
            .map_err(err)?
            .create()
            .map_err(err)?;
        let hidden: Vec<&Path> = HIDDEN_SYSTEM_PATHS.iter().map(Path::new).collect();
        for path in system_paths.iter().filter(|p| p.exists()) {
            for visible in readable_beneath(path, &hidden) {
                ruleset = ruleset.add_rule(PathBeneath::new(open(&visible)?, AccessFs::from_read(abi))).map_err(err)?;
            }
        }
        for device in DEVICES.iter().map(Path::new).filter(|d| d.exists()) {
            ruleset = ruleset.add_rule(PathBeneath::new(open(device)?, AccessFs::from_file(abi))).map_err(err)?;
        }
        for grant in grants {
            grant.still_in_place()?;
            let access = match grant.access {
                Access::ReadOnly => AccessFs::from_read(abi),
                Access::ReadWrite => AccessFs::from_all(abi),
            };
            ruleset = ruleset.add_rule(PathBeneath::new(open(&grant.path)?, access)).map_err(err)?;
        }
        if let Some(network) = network {
            ruleset = ruleset.add_rule(NetPort::new(network.proxy_port, AccessNet::ConnectTcp)).map_err(err)?;
        }
        Ok(Confinement { ruleset: std::sync::Mutex::new(Some(ruleset)), seccomp: seccomp_filter()?, network })
    }

    /// Enters the confinement. Meant for the child between fork and exec (`pre_exec`): it
    /// unshares the namespaces, forks the command's PID 1 (this process stays behind to
    /// wait for it and exit with its status), mounts a fresh `/proc` and applies Landlock.
    /// Fails when the kernel enforces nothing, so a command never runs unconfined by
    /// accident.
    ///
    /// Only async-signal-safe calls are made: raw syscalls, and a lock that no other thread
    /// of the child can hold.
    pub fn enter(&self) -> std::io::Result<()> {
        let ruleset = self.ruleset.lock().ok().and_then(|mut r| r.take());
        let Some(ruleset) = ruleset else {
            return Err(std::io::Error::other("confinement already applied"));
        };
        unshare_namespaces(self.network)?;
        become_pid_one()?;
        mount_own_proc()?;
        let status = landlock::RulesetCreatedAttr::no_new_privs(ruleset, true)
            .restrict_self()
            .map_err(|e| std::io::Error::other(format!("Landlock: {e}")))?;
        if status.ruleset == landlock::RulesetStatus::NotEnforced {
            return Err(std::io::Error::other("Landlock enforced nothing"));
        }
        seccompiler::apply_filter(&self.seccomp).map_err(|e| std::io::Error::other(format!("seccomp: {e}")))
    }
}

/// The seccomp filter: `socket(AF_UNIX, ...)` and `io_uring_setup` fail with `EACCES`;
/// everything else is allowed (the other layers confine it).
#[cfg(target_os = "linux")]
fn seccomp_filter() -> Result<seccompiler::BpfProgram, String> {
    use seccompiler::{SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule};
    let err = |e: seccompiler::BackendError| format!("cannot build the seccomp filter: {e}");
    let arch = std::env::consts::ARCH.try_into().map_err(|e| format!("seccomp does not support this architecture: {e}"))?;
    let unix_domain = SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, libc::AF_UNIX as u64).map_err(err)?;
    let rules = [(libc::SYS_socket, vec![SeccompRule::new(vec![unix_domain]).map_err(err)?]), (libc::SYS_io_uring_setup, vec![])];
    let filter = SeccompFilter::new(rules.into_iter().collect(), SeccompAction::Allow, SeccompAction::Errno(libc::EACCES as u32), arch)
        .map_err(err)?;
    filter.try_into().map_err(err)
}

/// The paths to allow beneath `root` so that everything there is readable except `hidden`:
/// `root` itself when nothing hidden lies beneath it, else its entries, expanded the same
/// way.
fn readable_beneath(root: &Path, hidden: &[&Path]) -> Vec<PathBuf> {
    if hidden.contains(&root) {
        return Vec::new();
    }
    if !hidden.iter().any(|h| h.starts_with(root)) {
        return vec![root.to_path_buf()];
    }
    let Ok(entries) = std::fs::read_dir(root) else { return Vec::new() };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        // A symlink is followed by the rule: allow it only when it stays out of `hidden`.
        let target = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if hidden.iter().any(|h| target.starts_with(h)) {
            continue;
        }
        out.extend(readable_beneath(&path, hidden));
    }
    out
}

#[cfg(target_os = "linux")]
fn check(result: libc::c_int) -> std::io::Result<()> {
    if result == -1 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}

#[cfg(target_os = "linux")]
fn unshare_namespaces(network: Option<JoinedNetwork>) -> std::io::Result<()> {
    // SAFETY: plain syscalls on the calling (single-threaded, forked) process.
    unsafe {
        let (uid, gid) = (libc::geteuid(), libc::getegid());
        let mut flags = libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
        match network {
            Some(network) => check(libc::setns(network.namespace, libc::CLONE_NEWNET))
                .map_err(|e| std::io::Error::new(e.kind(), format!("setns (the proxy's network namespace): {e}")))?,
            None => flags |= libc::CLONE_NEWNET,
        }
        if uid != 0 {
            flags |= libc::CLONE_NEWUSER;
        }
        check(libc::unshare(flags)).map_err(|e| std::io::Error::new(e.kind(), format!("unshare (namespaces): {e}")))?;
        if uid != 0 {
            write_file(c"/proc/self/setgroups", b"deny")?;
            write_file(c"/proc/self/uid_map", format_id_map(uid).as_bytes())?;
            write_file(c"/proc/self/gid_map", format_id_map(gid).as_bytes())?;
        }
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn format_id_map(id: u32) -> String {
    format!("{id} {id} 1")
}

#[cfg(target_os = "linux")]
fn write_file(path: &std::ffi::CStr, bytes: &[u8]) -> std::io::Result<()> {
    // SAFETY: open, write and close on a NUL-terminated path and a live buffer.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let written = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        libc::close(fd);
        if written < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
    }
}

/// Forks: the child returns as PID 1 of the new PID namespace; this process closes every
/// descriptor (so the spawner sees the exec of the child, and EOF when it ends), waits for
/// it and exits with its status, never returning.
#[cfg(target_os = "linux")]
fn become_pid_one() -> std::io::Result<()> {
    // SAFETY: fork in a single-threaded child; the parent branch only makes async-signal-
    // safe calls and ends in `_exit`.
    unsafe {
        let pid = libc::fork();
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if pid == 0 {
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0))?;
            return Ok(());
        }
        libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
        let mut status = 0;
        loop {
            let r = libc::waitpid(pid, &mut status, 0);
            if r == pid || (r == -1 && *libc::__errno_location() != libc::EINTR) {
                break;
            }
        }
        if libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
        }
        if libc::WIFSIGNALED(status) {
            let signal = libc::WTERMSIG(status);
            libc::signal(signal, libc::SIG_DFL);
            libc::kill(libc::getpid(), signal);
        }
        libc::_exit(128)
    }
}

#[cfg(target_os = "linux")]
fn mount_own_proc() -> std::io::Result<()> {
    // SAFETY: mount syscalls with NUL-terminated strings, in the command's own mount namespace.
    unsafe {
        check(libc::mount(std::ptr::null(), c"/".as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()))
            .map_err(|e| std::io::Error::new(e.kind(), format!("making the mounts private: {e}")))?;
        let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        check(libc::mount(c"proc".as_ptr(), c"/proc".as_ptr(), c"proc".as_ptr(), flags, std::ptr::null()))
            .map_err(|e| std::io::Error::new(e.kind(), format!("mounting the command's own /proc: {e}")))?;
    }
    Ok(())
}

/// A ready-to-apply confinement for one command (never available off Linux).
#[cfg(not(target_os = "linux"))]
pub struct Confinement;

#[cfg(not(target_os = "linux"))]
impl Confinement {
    /// Always fails: there is no kernel confinement on this platform.
    pub fn new(_grants: &[DirGrant], _system_paths: &[PathBuf], _network: Option<JoinedNetwork>) -> Result<Self, String> {
        Err("command confinement exists only on Linux".into())
    }

    /// Never called.
    pub fn enter(&self) -> std::io::Result<()> {
        Err(std::io::Error::other("no confinement on this platform"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_paths_are_carved_out_of_a_readable_directory() {
        let root = std::env::temp_dir().join(format!("plugboard-carve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("etc/ssl/private")).unwrap();
        std::fs::create_dir_all(root.join("etc/ssl/certs")).unwrap();
        std::fs::write(root.join("etc/shadow"), "hash").unwrap();
        std::fs::write(root.join("etc/passwd"), "user").unwrap();
        let (shadow, private) = (root.join("etc/shadow"), root.join("etc/ssl/private"));
        let hidden = [shadow.as_path(), private.as_path()];
        let mut allowed = readable_beneath(&root.join("etc"), &hidden);
        allowed.sort();
        assert_eq!(allowed, [root.join("etc/passwd"), root.join("etc/ssl/certs")]);
        assert_eq!(readable_beneath(&root.join("etc/ssl/certs"), &hidden), [root.join("etc/ssl/certs")], "nothing hidden beneath");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
