//! Where an installed plugin came from, and who vouches for it.
//!
//! `plugboard plugin install` pulls a plugin from an OCI registry into a plugins directory
//! and records it in that directory's lock file ([`lock`], `plugboard.lock`): the reference
//! it came from, the digest of its manifest, the manifest itself, and the signatures found
//! for it. The record holds everything a check needs, so checking works offline:
//! [`check`] ties the plugin's bytes to the manifest (its one `application/wasm` layer,
//! the layout `wkg` and wasm-pkg-tools use, see [`artifact`]), the manifest to its digest,
//! and the digest to a signature by a key the operator trusts ([`signature`]).
//!
//! Signatures are cosign's key-based ones: ECDSA P-256 over a "simple signing" payload that
//! names the manifest digest, stored in the registry under the tag `sha256-<hex>.sig`.
//! `cosign verify --key` accepts what `plugboard plugin sign` pushes, and Plugboard accepts
//! what `cosign sign --key` pushes.
//!
//! This crate decides nothing: the plugin runtime refuses what [`check`] does not vouch for
//! when `[provenance] require_signatures` is set, and the CLI refuses to install it.

pub mod artifact;
pub mod lock;
pub mod signature;

use std::path::PathBuf;

pub use artifact::{WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE};
pub use lock::{LOCK_FILE_NAME, LockFile, LockedPlugin, SignatureRecord};
pub use signature::{SigningKey, TrustedKey};

/// What is known of an installed plugin whose bytes match its record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Provenance {
    /// The reference it was installed from (`oci://registry/repository:tag`).
    pub source: String,
    /// The digest of its manifest (`sha256:…`): what the signatures sign.
    pub digest: String,
    /// The trusted key that signed it, if any.
    pub signer: Option<Signer>,
    /// How many signatures the record holds (trusted or not).
    pub signatures: usize,
}

impl Provenance {
    /// Who vouches for it, in words: the trusted key that signed it, or why none does.
    pub fn signed_by(&self) -> String {
        match (&self.signer, self.signatures) {
            (Some(signer), _) => signer.to_string(),
            (None, 0) => "nobody (unsigned)".to_string(),
            (None, n) => format!("no trusted key ({n} signature(s) by keys not in [provenance] trusted_keys)"),
        }
    }
}

/// A trusted key that signed a plugin.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Signer {
    /// The key's name: its file's name without `.pub`.
    pub name: String,
    /// Its fingerprint, `sha256:` and the hex SHA-256 of its public key (DER).
    pub fingerprint: String,
}

impl std::fmt::Display for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.fingerprint)
    }
}

/// Why a plugin's provenance cannot be established or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvenanceError {
    /// The file was not installed from a registry (its directory's lock file does not name it).
    #[error("{file} was not installed from a registry: {lock} has no entry for it; install it with `plugboard plugin install oci://…`")]
    NotInstalled {
        /// The plugin file's name.
        file: String,
        /// The lock file looked in.
        lock: PathBuf,
    },
    /// The file is not the one installed.
    #[error(
        "{file} changed since it was installed from {from}: its sha256 is {actual}, the installed layer's is {expected}; install it again"
    )]
    Changed {
        /// The plugin file's name.
        file: String,
        /// Where it was installed from.
        from: String,
        /// The layer digest the manifest names.
        expected: String,
        /// The digest of the file now.
        actual: String,
    },
    /// The record's manifest is not the one its digest names, or not a wasm artifact.
    #[error("the record of {file} in the lock file is not valid: {message}")]
    Record {
        /// The plugin file's name.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// Signatures are required and none is by a trusted key.
    #[error("{file} (from {from}, {digest}) {}; sign it with `plugboard plugin sign` and trust the key in [provenance] trusted_keys", if *.signatures == 0 { "is not signed".to_string() } else { format!("has {} signature(s), none by a trusted key", .signatures) })]
    Unsigned {
        /// The plugin file's name.
        file: String,
        /// Where it was installed from.
        from: String,
        /// Its manifest digest.
        digest: String,
        /// How many signatures it has.
        signatures: usize,
    },
    /// A lock file or key file could not be read or parsed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// `sha256:` and the hex SHA-256 of `bytes`: an OCI digest.
pub fn digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Checks the plugin file `entry.file`, whose digest is `file_digest` (see [`digest`]), against its record: the record's manifest
/// has the digest the record names and one `application/wasm` layer whose digest is the
/// file's, and finds the first trusted key among `keys` that signed that digest. Offline.
pub fn check(entry: &LockedPlugin, file_digest: &str, keys: &[TrustedKey]) -> Result<Provenance, ProvenanceError> {
    let record = |message: String| ProvenanceError::Record { file: entry.file.clone(), message };
    if digest(entry.manifest.as_bytes()) != entry.digest {
        return Err(record(format!("its manifest does not have the digest {}", entry.digest)));
    }
    let layer = artifact::wasm_layer(entry.manifest.as_bytes()).map_err(record)?;
    if file_digest != layer.digest {
        return Err(ProvenanceError::Changed {
            file: entry.file.clone(),
            from: entry.source.clone(),
            expected: layer.digest,
            actual: file_digest.to_string(),
        });
    }
    let signer = entry.signatures.iter().find_map(|s| signature::signer_of(s, &entry.digest, keys));
    Ok(Provenance { source: entry.source.clone(), digest: entry.digest.clone(), signer, signatures: entry.signatures.len() })
}

/// [`check`], then refuses a plugin that no trusted key signed.
pub fn require_signed(entry: &LockedPlugin, file_digest: &str, keys: &[TrustedKey]) -> Result<Provenance, ProvenanceError> {
    let provenance = check(entry, file_digest, keys)?;
    if provenance.signer.is_none() {
        return Err(ProvenanceError::Unsigned {
            file: entry.file.clone(),
            from: entry.source.clone(),
            digest: entry.digest.clone(),
            signatures: provenance.signatures,
        });
    }
    Ok(provenance)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WASM: &[u8] = b"\0asm\x0d\0\x01\0 a component";

    fn installed(bytes: &[u8], signers: &[&SigningKey]) -> LockedPlugin {
        let manifest = artifact::manifest(&digest(b"{}"), 2, &digest(bytes), bytes.len());
        let manifest_digest = digest(manifest.as_bytes());
        let signatures = signers.iter().map(|k| k.sign("127.0.0.1:5000/greet", &manifest_digest)).collect();
        LockedPlugin {
            file: "greet.wasm".into(),
            source: "oci://127.0.0.1:5000/greet:1.0.0".into(),
            digest: manifest_digest,
            manifest,
            signatures,
        }
    }

    #[test]
    fn a_plugin_signed_by_a_trusted_key_names_its_signer() {
        let key = SigningKey::generate().unwrap();
        let trusted = TrustedKey::from_pem("alice", &key.public_pem()).unwrap();
        let entry = installed(WASM, &[&key]);
        let provenance = require_signed(&entry, &digest(WASM), std::slice::from_ref(&trusted)).unwrap();
        assert_eq!(provenance.signer.unwrap().name, "alice");
        assert_eq!(provenance.digest, entry.digest);
    }

    #[test]
    fn a_signature_by_another_key_or_none_at_all_is_refused_when_required() {
        let (alice, mallory) = (SigningKey::generate().unwrap(), SigningKey::generate().unwrap());
        let trusted = [TrustedKey::from_pem("alice", &alice.public_pem()).unwrap()];
        let err = require_signed(&installed(WASM, &[&mallory]), &digest(WASM), &trusted).unwrap_err();
        assert!(err.to_string().contains("1 signature(s), none by a trusted key"), "{err}");
        let err = require_signed(&installed(WASM, &[]), &digest(WASM), &trusted).unwrap_err();
        assert!(err.to_string().contains("is not signed"), "{err}");
        assert!(check(&installed(WASM, &[&mallory]), &digest(WASM), &trusted).unwrap().signer.is_none());
    }

    #[test]
    fn a_file_changed_after_install_is_not_the_one_signed() {
        let key = SigningKey::generate().unwrap();
        let trusted = [TrustedKey::from_pem("alice", &key.public_pem()).unwrap()];
        let entry = installed(WASM, &[&key]);
        let err = check(&entry, &digest(b"\0asm\x0d\0\x01\0 another component"), &trusted).unwrap_err();
        assert!(matches!(err, ProvenanceError::Changed { .. }), "{err}");
    }

    #[test]
    fn a_record_whose_manifest_was_edited_is_refused() {
        let key = SigningKey::generate().unwrap();
        let trusted = [TrustedKey::from_pem("alice", &key.public_pem()).unwrap()];
        let other: &[u8] = b"\0asm\x0d\0\x01\0 evil";
        let mut entry = installed(WASM, &[&key]);
        // Point the signed record at other bytes: the manifest no longer has its digest.
        entry.manifest = artifact::manifest(&digest(b"{}"), 2, &digest(other), other.len());
        let err = check(&entry, &digest(other), &trusted).unwrap_err();
        assert!(err.to_string().contains("does not have the digest"), "{err}");
        // A signature over another digest does not vouch for this one.
        let mut entry = installed(other, &[]);
        entry.signatures = installed(WASM, &[&key]).signatures;
        assert!(check(&entry, &digest(other), &trusted).unwrap().signer.is_none());
    }
}
