//! Plugins in OCI registries: push a component as a wasm artifact (the layout `wkg` and
//! wasm-pkg-tools use, see `plugboard_provenance::artifact`), pull one by tag or digest, and
//! read and write its cosign signatures (see `plugboard_provenance::signature`). The
//! registry protocol is the `oci-client` crate's; this module only chooses what to send.
//!
//! A registry on a loopback address is spoken to over plain HTTP (as Docker does); any other
//! over HTTPS. Credentials, when the registry needs them, come from
//! `PLUGBOARD_REGISTRY_USERNAME` and `PLUGBOARD_REGISTRY_PASSWORD`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use plugboard_provenance::artifact::{self, MANIFEST_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE};
use plugboard_provenance::signature::{SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE, signature_tag};
use plugboard_provenance::{SignatureRecord, SigningKey, digest};

/// The scheme of a plugin reference: `oci://registry/repository:tag` or `…@sha256:…`.
pub const SCHEME: &str = "oci://";

/// The largest component pulled: a manifest may declare no more, and a registry that sends
/// more than its manifest declared is cut off there.
pub const MAX_PLUGIN_BYTES: u64 = 256 << 20;

/// The largest signature payload read (cosign's are a few hundred bytes).
const MAX_PAYLOAD_BYTES: usize = 64 << 10;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The reference is not one.
    #[error(
        "`{reference}` is not a plugin reference: {message} (write oci://registry/repository:tag or oci://registry/repository@sha256:…)"
    )]
    Reference {
        /// As given.
        reference: String,
        /// Why.
        message: String,
    },
    /// The registry refused or failed.
    #[error("{action} {reference}: {message}")]
    Registry {
        /// What was being done.
        action: &'static str,
        /// The reference.
        reference: String,
        /// The registry's answer.
        message: String,
    },
    /// What the registry served is not what was asked for, or not a plugin.
    #[error("{reference}: {message}")]
    Artifact {
        /// The reference.
        reference: String,
        /// What is wrong.
        message: String,
    },
}

/// A plugin reference, parsed.
#[derive(Debug, Clone)]
pub struct PluginRef {
    reference: Reference,
}

impl PluginRef {
    /// Parses `oci://registry/repository[:tag][@digest]`.
    pub fn parse(text: &str) -> Result<PluginRef, OciError> {
        let invalid = |message: String| OciError::Reference { reference: text.to_string(), message };
        let rest = text.strip_prefix(SCHEME).ok_or_else(|| invalid(format!("it does not start with {SCHEME}")))?;
        if !rest.split('/').next().is_some_and(|host| host.contains(['.', ':']) || host == "localhost") || !rest.contains('/') {
            return Err(invalid("it names no registry host".into()));
        }
        let reference: Reference = rest.parse().map_err(|e: oci_client::ParseError| invalid(e.to_string()))?;
        Ok(PluginRef { reference })
    }

    /// `registry/repository`, the identity a signature names.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.reference.registry(), self.reference.repository())
    }

    /// The last part of the repository: the default file name of the plugin.
    pub fn name(&self) -> &str {
        self.reference.repository().rsplit('/').next().unwrap_or_default()
    }

    /// The digest it names, if any.
    pub fn digest(&self) -> Option<&str> {
        self.reference.digest()
    }

    /// The same repository at `digest`.
    pub fn at_digest(&self, digest: &str) -> PluginRef {
        let reference = Reference::with_digest(self.reference.registry().into(), self.reference.repository().into(), digest.into());
        PluginRef { reference }
    }

    fn at_tag(&self, tag: &str) -> Reference {
        Reference::with_tag(self.reference.registry().into(), self.reference.repository().into(), tag.into())
    }
}

impl std::fmt::Display for PluginRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{SCHEME}{}", self.reference.whole())
    }
}

/// A pulled plugin.
pub struct Pulled {
    /// The manifest, as served.
    pub manifest: String,
    /// Its digest.
    pub digest: String,
    /// The component.
    pub wasm: Vec<u8>,
}

/// A plugin's manifest, checked to be a wasm artifact.
pub struct Resolved {
    /// The manifest, as served.
    pub manifest: String,
    /// Its digest.
    pub digest: String,
    /// The component's layer.
    pub layer: artifact::Descriptor,
}

/// A client for the registry of one reference.
pub struct Registry {
    client: Client,
    auth: RegistryAuth,
}

impl Registry {
    /// A client for `reference`'s registry: plain HTTP on loopback, HTTPS elsewhere.
    pub fn for_ref(reference: &PluginRef) -> Registry {
        plugboard_runtime::capability::network::install_tls_provider();
        let registry = reference.reference.registry().to_string();
        let host = registry.rsplit_once(':').map_or(registry.as_str(), |(host, _)| host);
        let loopback = host == "localhost" || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        let protocol = if loopback { ClientProtocol::HttpsExcept(vec![registry.clone()]) } else { ClientProtocol::Https };
        let client = Client::new(ClientConfig {
            protocol,
            connect_timeout: Some(std::time::Duration::from_secs(30)),
            read_timeout: Some(std::time::Duration::from_secs(60)),
            ..Default::default()
        });
        let auth = match (std::env::var("PLUGBOARD_REGISTRY_USERNAME"), std::env::var("PLUGBOARD_REGISTRY_PASSWORD")) {
            (Ok(user), Ok(password)) => RegistryAuth::Basic(user, password),
            _ => RegistryAuth::Anonymous,
        };
        Registry { client, auth }
    }

    /// Pushes `wasm` as a wasm artifact to `reference` (a tag); returns the manifest digest.
    pub async fn push(&self, reference: &PluginRef, wasm: &[u8]) -> Result<String, OciError> {
        let image = &reference.reference;
        let failed =
            |e: OciDistributionError| OciError::Registry { action: "pushing to", reference: reference.to_string(), message: e.to_string() };
        self.client.store_auth_if_needed(image.resolve_registry(), &self.auth).await;
        let config = wasm_config(wasm).map_err(|message| OciError::Artifact { reference: reference.to_string(), message })?;
        let (wasm_digest, config_digest) = (digest(wasm), digest(&config));
        self.client.push_blob(image, wasm.to_vec(), &wasm_digest).await.map_err(failed)?;
        self.client.push_blob(image, config.clone(), &config_digest).await.map_err(failed)?;
        let manifest = artifact::manifest(&config_digest, config.len(), &wasm_digest, wasm.len());
        self.push_manifest(image, manifest.clone().into_bytes()).await.map_err(failed)?;
        Ok(digest(manifest.as_bytes()))
    }

    /// Pulls the plugin at `reference`: its manifest must be a wasm artifact, have the digest
    /// the reference names (if any), and its layer the digest the manifest names.
    pub async fn pull(&self, reference: &PluginRef) -> Result<Pulled, OciError> {
        let image = &reference.reference;
        let failed =
            |e: OciDistributionError| OciError::Registry { action: "pulling", reference: reference.to_string(), message: e.to_string() };
        let artifact = |message: String| OciError::Artifact { reference: reference.to_string(), message };
        let Resolved { manifest, digest: manifest_digest, layer } = self.resolve(reference).await?;
        if layer.size > MAX_PLUGIN_BYTES {
            return Err(artifact(format!("its component is {} bytes, more than the {MAX_PLUGIN_BYTES} a plugin may be", layer.size)));
        }
        let mut wasm = Bounded::new(layer.size as usize);
        let descriptor = OciDescriptor {
            media_type: WASM_LAYER_MEDIA_TYPE.into(),
            digest: layer.digest.clone(),
            size: layer.size as i64,
            ..Default::default()
        };
        self.client.pull_blob(image, &descriptor, &mut wasm).await.map_err(failed)?;
        let wasm = wasm.bytes;
        if digest(&wasm) != layer.digest {
            return Err(artifact(format!("its layer is not the one its manifest names ({})", layer.digest)));
        }
        Ok(Pulled { manifest, digest: manifest_digest, wasm })
    }

    /// The manifest at `reference`, without the component: it must be a wasm artifact and
    /// have the digest the reference names (if any).
    pub async fn resolve(&self, reference: &PluginRef) -> Result<Resolved, OciError> {
        let failed =
            |e: OciDistributionError| OciError::Registry { action: "pulling", reference: reference.to_string(), message: e.to_string() };
        let artifact = |message: String| OciError::Artifact { reference: reference.to_string(), message };
        let (bytes, _) = self.client.pull_manifest_raw(&reference.reference, &self.auth, &[MANIFEST_MEDIA_TYPE]).await.map_err(failed)?;
        let manifest_digest = digest(&bytes);
        if let Some(asked) = reference.digest()
            && asked != manifest_digest
        {
            return Err(artifact(format!("the registry served a manifest whose digest is {manifest_digest}")));
        }
        let layer = artifact::wasm_layer(&bytes).map_err(artifact)?;
        let manifest = String::from_utf8(bytes.to_vec()).map_err(|_| artifact("its manifest is not UTF-8".into()))?;
        Ok(Resolved { manifest, digest: manifest_digest, layer })
    }

    /// Signs `digest` in `reference`'s repository with `key`, adding the signature to those
    /// already there (as `cosign sign --key` does).
    pub async fn sign(&self, reference: &PluginRef, digest_: &str, key: &SigningKey) -> Result<(), OciError> {
        let failed =
            |e: OciDistributionError| OciError::Registry { action: "signing", reference: reference.to_string(), message: e.to_string() };
        let mut layers = self.signatures(reference, digest_).await?;
        layers.push(key.sign(&reference.repository(), digest_));
        let image = reference.at_tag(&signature_tag(digest_));
        let mut descriptors = Vec::new();
        for record in &layers {
            let payload = BASE64
                .decode(&record.payload)
                .map_err(|e| OciError::Artifact { reference: reference.to_string(), message: e.to_string() })?;
            let payload_digest = digest(&payload);
            self.client.push_blob(&image, payload.clone(), &payload_digest).await.map_err(failed)?;
            descriptors.push(serde_json::json!({
                "mediaType": SIMPLE_SIGNING_MEDIA_TYPE,
                "digest": payload_digest,
                "size": payload.len(),
                "annotations": { SIGNATURE_ANNOTATION: record.signature },
            }));
        }
        let diff_ids: Vec<&serde_json::Value> = descriptors.iter().map(|d| &d["digest"]).collect();
        let config = serde_json::json!({
            "architecture": "", "os": "", "config": {}, "created": "0001-01-01T00:00:00Z",
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        })
        .to_string()
        .into_bytes();
        let config_digest = digest(&config);
        self.client.push_blob(&image, config.clone(), &config_digest).await.map_err(failed)?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len() },
            "layers": descriptors,
        });
        self.push_manifest(&image, manifest.to_string().into_bytes()).await.map_err(failed)
    }

    /// The cosign signatures of `digest` in `reference`'s repository (none when there is no
    /// signature manifest).
    pub async fn signatures(&self, reference: &PluginRef, digest_: &str) -> Result<Vec<SignatureRecord>, OciError> {
        let image = reference.at_tag(&signature_tag(digest_));
        let failed = |e: OciDistributionError| OciError::Registry {
            action: "reading the signatures of",
            reference: reference.to_string(),
            message: e.to_string(),
        };
        let bytes = match self.client.pull_manifest_raw(&image, &self.auth, &[MANIFEST_MEDIA_TYPE]).await {
            Ok((bytes, _)) => bytes,
            Err(e) if not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(failed(e)),
        };
        let manifest: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| OciError::Artifact {
            reference: reference.to_string(),
            message: format!("its signature manifest is not JSON: {e}"),
        })?;
        let mut records = Vec::new();
        for layer in manifest["layers"].as_array().into_iter().flatten() {
            let (Some(SIMPLE_SIGNING_MEDIA_TYPE), Some(payload_digest), Some(signature)) =
                (layer["mediaType"].as_str(), layer["digest"].as_str(), layer["annotations"][SIGNATURE_ANNOTATION].as_str())
            else {
                continue;
            };
            let descriptor =
                OciDescriptor { media_type: SIMPLE_SIGNING_MEDIA_TYPE.into(), digest: payload_digest.into(), ..Default::default() };
            let mut payload = Bounded::new(MAX_PAYLOAD_BYTES);
            self.client.pull_blob(&image, &descriptor, &mut payload).await.map_err(failed)?;
            let payload = payload.bytes;
            if digest(&payload) != payload_digest {
                continue;
            }
            records.push(SignatureRecord { payload: BASE64.encode(&payload), signature: signature.to_string() });
        }
        Ok(records)
    }

    async fn push_manifest(&self, image: &Reference, manifest: Vec<u8>) -> Result<(), OciDistributionError> {
        let content_type = http::HeaderValue::from_static(MANIFEST_MEDIA_TYPE);
        self.client.push_manifest_raw(image, manifest, content_type).await.map(drop)
    }
}

/// A blob being pulled, refused past `limit` bytes: a registry may send without end.
struct Bounded {
    bytes: Vec<u8>,
    limit: usize,
}

impl Bounded {
    fn new(limit: usize) -> Bounded {
        Bounded { bytes: Vec::new(), limit }
    }
}

impl tokio::io::AsyncWrite for Bounded {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.bytes.len() + buf.len() > self.limit {
            let limit = self.limit;
            return std::task::Poll::Ready(Err(std::io::Error::other(format!("the registry sent more than the {limit} bytes declared"))));
        }
        self.bytes.extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

fn not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| e.code == OciErrorCode::ManifestUnknown),
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        _ => false,
    }
}

/// The config blob of a wasm artifact (`application/vnd.wasm.config.v0+json`, as
/// `oci-wasm`'s `WasmConfig` writes it): the component's imports and exports.
fn wasm_config(wasm: &[u8]) -> Result<Vec<u8>, String> {
    let (imports, exports) = component_names(wasm)?;
    Ok(serde_json::json!({
        "created": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "author": null,
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [digest(wasm)],
        "component": { "exports": exports, "imports": imports, "target": null },
    })
    .to_string()
    .into_bytes())
}

/// The names a component imports and exports at its top level.
fn component_names(wasm: &[u8]) -> Result<(Vec<String>, Vec<String>), String> {
    use wasmparser::{Encoding, Parser, Payload};
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(|e| format!("not a wasm component: {e}"))? {
            Payload::Version { encoding, .. } => {
                if depth == 0 && encoding != Encoding::Component {
                    return Err("it is a core wasm module, not a component (build it for wasm32-wasip2)".into());
                }
                depth += 1;
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(section) if depth == 1 => {
                for import in section {
                    imports.push(import.map_err(|e| e.to_string())?.name.0.to_string());
                }
            }
            Payload::ComponentExportSection(section) if depth == 1 => {
                for export in section {
                    exports.push(export.map_err(|e| e.to_string())?.name.0.to_string());
                }
            }
            _ => {}
        }
    }
    Ok((imports, exports))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_blob_longer_than_declared_is_cut_off() {
        use tokio::io::AsyncWriteExt as _;
        let mut blob = Bounded::new(8);
        blob.write_all(b"12345678").await.unwrap();
        let err = blob.write_all(b"9").await.unwrap_err();
        assert!(err.to_string().contains("more than the 8 bytes"), "{err}");
        assert_eq!(blob.bytes, b"12345678");
    }

    #[test]
    fn references_name_a_registry_and_say_what_is_wrong() {
        let r = PluginRef::parse("oci://127.0.0.1:5000/team/echo:1.0").unwrap();
        assert_eq!((r.repository().as_str(), r.name()), ("127.0.0.1:5000/team/echo", "echo"));
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(r.at_digest(&digest).to_string(), format!("oci://127.0.0.1:5000/team/echo@{digest}"));
        for (bad, says) in
            [("127.0.0.1:5000/echo:1", "does not start with oci://"), ("oci://echo:1", "names no registry host"), ("oci://r.io/Echo:1", "")]
        {
            let err = PluginRef::parse(bad).unwrap_err().to_string();
            assert!(err.contains(says) && err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn a_core_module_is_not_pushed_as_a_component() {
        let err = wasm_config(b"\0asm\x01\0\0\0").unwrap_err();
        assert!(err.contains("core wasm module"), "{err}");
    }
}
