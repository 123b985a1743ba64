//! cosign's key-based signatures: ECDSA P-256 (SHA-256) over a "simple signing" payload
//! that names the manifest digest, kept in the registry as the manifest tagged
//! `sha256-<hex>.sig`, one layer per signature with the signature in an annotation.
//!
//! Keys are PEM files: a private key in PKCS#8 (`plugboard plugin keygen` writes one;
//! `cosign import-key-pair` reads it) or SEC1 (`openssl ecparam -name prime256v1 -genkey`),
//! a public key as SubjectPublicKeyInfo (`cosign.pub`, `openssl ec -pubout`).

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use serde::Deserialize;

use crate::{ProvenanceError, SignatureRecord, Signer};

/// The media type of a signature layer (its blob is the payload).
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation of a signature layer that holds the signature, base64.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// The tag cosign keeps the signatures of `digest` under: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// The payload that signs `digest` for `reference` (`registry/repository`, without tag).
pub fn payload(reference: &str, digest: &str) -> Vec<u8> {
    serde_json::json!({
        "critical": {
            "identity": { "docker-reference": reference },
            "image": { "docker-manifest-digest": digest },
            "type": "cosign container image signature",
        },
        "optional": null,
    })
    .to_string()
    .into_bytes()
}

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Image {
    // cosign's own spec writes it capitalized in an example; Go's decoder accepts either.
    #[serde(rename = "docker-manifest-digest", alias = "Docker-manifest-digest")]
    digest: String,
}

/// A private key to sign with.
pub struct SigningKey(p256::ecdsa::SigningKey);

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Result<SigningKey, String> {
        loop {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a new key: {e}"))?;
            // Fewer than 1 in 2^32 draws is not a valid scalar; draw again.
            if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&bytes) {
                return Ok(SigningKey(key));
            }
        }
    }

    /// Reads a PEM private key (PKCS#8 or SEC1, P-256).
    pub fn read(path: &Path) -> Result<SigningKey, ProvenanceError> {
        let failed = |message: String| ProvenanceError::File { path: path.to_path_buf(), message };
        let pem = std::fs::read_to_string(path).map_err(|e| failed(format!("cannot read the key: {e}")))?;
        if pem.contains("ENCRYPTED") {
            return Err(failed(
                "an encrypted key (cosign's own format) cannot be read here; sign with `cosign sign --key`, or use a key from `plugboard plugin keygen`".into(),
            ));
        }
        p256::ecdsa::SigningKey::from_pkcs8_pem(&pem)
            .or_else(|_| p256::SecretKey::from_sec1_pem(&pem).map(Into::into))
            .map(SigningKey)
            .map_err(|_| failed("not a P-256 private key in PEM (PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`)".into()))
    }

    /// The key as PKCS#8 PEM.
    pub fn to_pem(&self) -> String {
        self.0.to_pkcs8_pem(LineEnding::LF).expect("a P-256 key encodes").to_string()
    }

    /// Its public key as PEM (SubjectPublicKeyInfo), as `cosign.pub` is.
    pub fn public_pem(&self) -> String {
        self.0.verifying_key().to_public_key_pem(LineEnding::LF).expect("a P-256 key encodes")
    }

    /// Its public key's fingerprint.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.0.verifying_key())
    }

    /// Signs `digest` for `reference` (`registry/repository`).
    pub fn sign(&self, reference: &str, digest: &str) -> SignatureRecord {
        let payload = payload(reference, digest);
        let signature: p256::ecdsa::Signature = self.0.sign(&payload);
        SignatureRecord { payload: BASE64.encode(&payload), signature: BASE64.encode(signature.to_der().as_bytes()) }
    }
}

/// A public key the operator trusts, with its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    /// Its name: the file's name without `.pub`.
    pub name: String,
    key: p256::ecdsa::VerifyingKey,
}

impl TrustedKey {
    /// A key from its PEM text.
    pub fn from_pem(name: &str, pem: &str) -> Result<TrustedKey, String> {
        let key = p256::ecdsa::VerifyingKey::from_public_key_pem(pem)
            .map_err(|_| "not a P-256 public key in PEM (`PUBLIC KEY`, as cosign.pub is)".to_string())?;
        Ok(TrustedKey { name: name.to_string(), key })
    }

    /// Reads a PEM public key file; its name is the file's without `.pub`.
    pub fn read(path: &Path) -> Result<TrustedKey, ProvenanceError> {
        let failed = |message: String| ProvenanceError::File { path: path.to_path_buf(), message };
        let pem = std::fs::read_to_string(path).map_err(|e| failed(format!("cannot read the key: {e}")))?;
        let name = path.file_stem().map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned());
        Self::from_pem(&name, &pem).map_err(failed)
    }

    /// Its fingerprint.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.key)
    }

    fn signer(&self) -> Signer {
        Signer { name: self.name.clone(), fingerprint: self.fingerprint() }
    }
}

fn fingerprint(key: &p256::ecdsa::VerifyingKey) -> String {
    let der = key.to_public_key_der().expect("a P-256 key encodes");
    crate::digest(der.as_bytes())
}

/// The first of `keys` whose signature `record` is, when its payload signs `digest`.
pub fn signer_of(record: &SignatureRecord, digest: &str, keys: &[TrustedKey]) -> Option<Signer> {
    let payload = BASE64.decode(&record.payload).ok()?;
    let signature = BASE64.decode(&record.signature).ok()?;
    let signature = p256::ecdsa::Signature::from_der(&signature).ok()?;
    let signed: Payload = serde_json::from_slice(&payload).ok()?;
    if signed.critical.image.digest != digest || signed.critical.kind != "cosign container image signature" {
        return None;
    }
    keys.iter().find(|k| k.key.verify(&payload, &signature).is_ok()).map(TrustedKey::signer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_written_as_pem_reads_back_and_signs_what_its_public_key_verifies() {
        let dir = std::env::temp_dir().join(format!("plugboard-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = SigningKey::generate().unwrap();
        std::fs::write(dir.join("k.key"), key.to_pem()).unwrap();
        std::fs::write(dir.join("alice.pub"), key.public_pem()).unwrap();
        let again = SigningKey::read(&dir.join("k.key")).unwrap();
        let trusted = TrustedKey::read(&dir.join("alice.pub")).unwrap();
        assert_eq!(trusted.name, "alice");
        assert_eq!(trusted.fingerprint(), key.fingerprint());
        let record = again.sign("r/greet", "sha256:aa");
        assert_eq!(signer_of(&record, "sha256:aa", std::slice::from_ref(&trusted)).unwrap().name, "alice");
        assert!(signer_of(&record, "sha256:bb", &[trusted]).is_none());
        std::fs::write(dir.join("bad.pub"), "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").unwrap();
        let err = TrustedKey::read(&dir.join("bad.pub")).unwrap_err();
        assert!(err.to_string().contains("bad.pub") && err.to_string().contains("not a P-256 public key"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_payload_is_cosigns_simple_signing_format() {
        let payload: serde_json::Value = serde_json::from_slice(&payload("127.0.0.1:5000/greet", "sha256:ab")).unwrap();
        assert_eq!(payload["critical"]["image"]["docker-manifest-digest"], "sha256:ab");
        assert_eq!(payload["critical"]["identity"]["docker-reference"], "127.0.0.1:5000/greet");
        assert_eq!(payload["critical"]["type"], "cosign container image signature");
        assert_eq!(signature_tag("sha256:ab"), "sha256-ab.sig");
    }
}
