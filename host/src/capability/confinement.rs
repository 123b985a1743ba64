//! Kernel confinement of commands run through the process capability. A command is not
//! WebAssembly, so the sandbox cannot hold it; on Linux, Landlock limits it to the plugin's
//! filesystem grants (read-only where the grant is read-only) plus read access to the
//! system directories a command needs to run.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::filesystem::{Access, DirGrant};

/// Whether the kernel can confine commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfinementSupport {
    /// Landlock is available.
    Landlock,
    /// No confinement is possible here; the reason says why.
    Unavailable(String),
}

impl std::fmt::Display for ConfinementSupport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfinementSupport::Landlock => f.write_str("Landlock (commands are confined to the plugin's filesystem grants)"),
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

/// System directories commands may read and execute from, besides the grants.
pub fn default_system_paths() -> Vec<PathBuf> {
    ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/dev", "/proc", "/sys", "/run", "/nix"]
        .into_iter()
        .map(PathBuf::from)
        .collect()
}

/// Probes the running kernel.
#[cfg(target_os = "linux")]
pub fn probe() -> ConfinementSupport {
    use landlock::{ABI, Access as _, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr};
    let created = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(ABI::V1))
        .and_then(|r| r.create());
    match created {
        Ok(_) => ConfinementSupport::Landlock,
        Err(e) => ConfinementSupport::Unavailable(format!("Landlock is not usable on this kernel ({e})")),
    }
}

/// Probes the running kernel.
#[cfg(not(target_os = "linux"))]
pub fn probe() -> ConfinementSupport {
    ConfinementSupport::Unavailable("Landlock exists only on Linux".into())
}

/// A ready-to-apply confinement for one command.
#[cfg(target_os = "linux")]
pub struct Confinement(std::sync::Mutex<Option<landlock::RulesetCreated>>);

#[cfg(target_os = "linux")]
impl Confinement {
    /// Builds the rules: read and execute beneath `system_paths` (those that exist), and
    /// each grant with its access. Writing is allowed only beneath read-write grants (and
    /// to `/dev/null`).
    pub fn new(grants: &[DirGrant], system_paths: &[PathBuf]) -> Result<Self, String> {
        use landlock::{
            ABI, Access as _, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
        };
        let abi = ABI::V5;
        let err = |e: landlock::RulesetError| format!("cannot build the Landlock rules: {e}");
        let mut ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(AccessFs::from_all(abi))
            .map_err(err)?
            .create()
            .map_err(err)?;
        for path in system_paths.iter().filter(|p| p.exists()) {
            let fd = PathFd::new(path).map_err(|e| format!("cannot open `{}` for the Landlock rules: {e}", path.display()))?;
            ruleset = ruleset.add_rule(PathBeneath::new(fd, AccessFs::from_read(abi))).map_err(err)?;
        }
        if let Ok(fd) = PathFd::new("/dev/null") {
            ruleset = ruleset.add_rule(PathBeneath::new(fd, AccessFs::from_file(abi))).map_err(err)?;
        }
        for grant in grants {
            let access = match grant.access {
                Access::ReadOnly => AccessFs::from_read(abi),
                Access::ReadWrite => AccessFs::from_all(abi),
            };
            let fd = PathFd::new(&grant.path).map_err(|e| format!("cannot open `{}` for the Landlock rules: {e}", grant.path.display()))?;
            ruleset = ruleset.add_rule(PathBeneath::new(fd, access)).map_err(err)?;
        }
        Ok(Confinement(std::sync::Mutex::new(Some(ruleset))))
    }

    /// Applies the rules to the calling thread's process. Meant for the child between fork
    /// and exec; fails when the kernel enforces nothing, so a command never runs unconfined
    /// by accident.
    pub fn apply(&self) -> std::io::Result<()> {
        let ruleset = self.0.lock().ok().and_then(|mut r| r.take());
        let Some(ruleset) = ruleset else {
            return Err(std::io::Error::other("confinement already applied"));
        };
        let status = landlock::RulesetCreatedAttr::no_new_privs(ruleset, true)
            .restrict_self()
            .map_err(|e| std::io::Error::other(format!("Landlock: {e}")))?;
        if status.ruleset == landlock::RulesetStatus::NotEnforced {
            return Err(std::io::Error::other("Landlock enforced nothing"));
        }
        Ok(())
    }
}

/// A ready-to-apply confinement for one command (never available off Linux).
#[cfg(not(target_os = "linux"))]
pub struct Confinement;

#[cfg(not(target_os = "linux"))]
impl Confinement {
    /// Always fails: there is no kernel confinement on this platform.
    pub fn new(_grants: &[DirGrant], _system_paths: &[PathBuf]) -> Result<Self, String> {
        Err("Landlock exists only on Linux".into())
    }

    /// Never called.
    pub fn apply(&self) -> std::io::Result<()> {
        Err(std::io::Error::other("no confinement on this platform"))
    }
}
