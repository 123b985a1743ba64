//! `plugboard plugin push | sign | install | keygen`: shipping plugins through OCI
//! registries (see [`crate::oci`]) and pinning what is installed (see
//! `plugboard_provenance`). Installing is an operator's act: nothing here is reachable from
//! a plugin, a model or the HTTP API, and a plugin installed into a workspace still loads
//! only once `plugboard trust` trusts it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use plugboard_provenance::{LockFile, LockedPlugin, Provenance, SigningKey, TrustedKey, digest};

use super::{Cli, PluginCommand, workspace_trust};
use crate::config::Config;
use crate::oci::{PluginRef, Registry};
use crate::runtime::config::ProvenanceSettings;

/// Runs one of the commands.
pub async fn run(cli: &Cli, command: &PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::Push { file, reference, sign } => push(file, reference, sign.as_deref()).await,
        PluginCommand::Sign { reference, key } => sign(reference, key).await,
        PluginCommand::Install { reference, dir, name, locked, keys } => {
            let dir = match dir {
                Some(dir) => dir.clone(),
                None => crate::runtime::discovery::user_plugins_dir().context("no user plugins directory on this system; pass --dir")?,
            };
            let policy = provenance_policy(cli, keys)?;
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            match (reference, locked) {
                (_, true) => install_locked(&dir, &policy).await,
                (Some(reference), false) => install(reference, &dir, name.as_deref(), &policy).await,
                (None, false) => unreachable!("clap requires a reference without --locked"),
            }
        }
        PluginCommand::Keygen { dir, name } => keygen(dir, name),
        _ => unreachable!("only the publishing commands come here"),
    }
}

async fn push(file: &Path, reference: &str, key: Option<&Path>) -> anyhow::Result<ExitCode> {
    let reference = PluginRef::parse(reference)?;
    let key = key.map(SigningKey::read).transpose()?;
    let wasm = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let registry = Registry::for_ref(&reference);
    let pushed = registry.push(&reference, &wasm).await?;
    println!("pushed {reference} ({pushed})");
    if let Some(key) = key {
        registry.sign(&reference, &pushed, &key).await?;
        println!("signed {pushed} with {}", key.fingerprint());
    }
    Ok(ExitCode::SUCCESS)
}

async fn sign(reference: &str, key: &Path) -> anyhow::Result<ExitCode> {
    let reference = PluginRef::parse(reference)?;
    let key = SigningKey::read(key)?;
    let registry = Registry::for_ref(&reference);
    let resolved = registry.resolve(&reference).await?;
    registry.sign(&reference, &resolved.digest, &key).await?;
    println!("signed {} ({}) with {}", reference, resolved.digest, key.fingerprint());
    Ok(ExitCode::SUCCESS)
}

/// Who must have signed what is installed: `[provenance]` of the configuration in force,
/// and the keys given with `--key`, which require a signature by one of them.
fn provenance_policy(cli: &Cli, keys: &[PathBuf]) -> anyhow::Result<ProvenanceSettings> {
    let mut policy = Config::load(cli.config.as_deref(), &workspace_trust(cli)?)?.config.provenance;
    for key in keys {
        policy.keys.push(TrustedKey::read(key)?);
    }
    policy.require_signatures |= !keys.is_empty();
    Ok(policy)
}

/// Checks `entry` for the pulled `wasm` under `policy`: refused when a signature is required
/// and no trusted key signed it.
fn checked(entry: &LockedPlugin, wasm: &[u8], policy: &ProvenanceSettings) -> anyhow::Result<Provenance> {
    let file_digest = digest(wasm);
    let provenance = if policy.require_signatures {
        plugboard_provenance::require_signed(entry, &file_digest, &policy.keys)
    } else {
        plugboard_provenance::check(entry, &file_digest, &policy.keys)
    };
    provenance.context("nothing was installed")
}

async fn install(reference: &str, dir: &Path, name: Option<&str>, policy: &ProvenanceSettings) -> anyhow::Result<ExitCode> {
    let parsed = PluginRef::parse(reference)?;
    let file = format!("{}.wasm", name.unwrap_or(parsed.name()));
    if !plugboard_provenance::lock::is_plugin_file_name(&file) {
        anyhow::bail!("--name: `{file}` is not a plugin file name (no directory, not hidden)");
    }
    let registry = Registry::for_ref(&parsed);
    let pulled = registry.pull(&parsed).await?;
    let signatures = registry.signatures(&parsed, &pulled.digest).await?;
    let entry = LockedPlugin { file, source: reference.to_string(), digest: pulled.digest.clone(), manifest: pulled.manifest, signatures };
    let provenance = checked(&entry, &pulled.wasm, policy)?;
    let mut lock = LockFile::read(dir)?.unwrap_or_default();
    lock.upsert(entry.clone());
    put(dir, &entry.file, &pulled.wasm, Some(&lock))?;
    println!("installed {} into {}: {}", entry.file, dir.display(), super::provenance_text(&provenance));
    Ok(ExitCode::SUCCESS)
}

async fn install_locked(dir: &Path, policy: &ProvenanceSettings) -> anyhow::Result<ExitCode> {
    let lock = LockFile::read(dir)?
        .with_context(|| format!("{} does not exist: there is nothing to install", LockFile::path_in(dir).display()))?;
    for entry in &lock.plugins {
        let reference = PluginRef::parse(&entry.source)?.at_digest(&entry.digest);
        let pulled = Registry::for_ref(&reference).pull(&reference).await?;
        let provenance = checked(entry, &pulled.wasm, policy)?;
        put(dir, &entry.file, &pulled.wasm, None)?;
        println!("installed {} into {}: {}", entry.file, dir.display(), super::provenance_text(&provenance));
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the lock file (when it changed), then the plugin (each replaced at once), so that
/// a server watching `dir` finds the record when it sees the file.
fn put(dir: &Path, file: &str, wasm: &[u8], lock: Option<&LockFile>) -> anyhow::Result<()> {
    if let Some(lock) = lock {
        lock.write(dir)?;
    }
    let temporary = dir.join(format!(".{file}.tmp"));
    std::fs::write(&temporary, wasm).with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, dir.join(file)).with_context(|| format!("cannot write {}", dir.join(file).display()))
}

fn keygen(dir: &Path, name: &str) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let (private, public) = (dir.join(format!("{name}.key")), dir.join(format!("{name}.pub")));
    for path in [&private, &public] {
        if path.exists() {
            anyhow::bail!("{} exists; choose another --name or --dir", path.display());
        }
    }
    let key = SigningKey::generate().map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&private)
        .with_context(|| format!("cannot create {}", private.display()))?;
    file.write_all(key.to_pem().as_bytes()).with_context(|| format!("cannot write {}", private.display()))?;
    std::fs::write(&public, key.public_pem()).with_context(|| format!("cannot write {}", public.display()))?;
    println!("private key {} (keep it secret)", private.display());
    println!("public key  {} ({})", public.display(), key.fingerprint());
    println!(
        "Sign with `plugboard plugin sign oci://… --key {}`; trust with [provenance] trusted_keys = [\"{}\"]",
        private.display(),
        public.display()
    );
    Ok(ExitCode::SUCCESS)
}
