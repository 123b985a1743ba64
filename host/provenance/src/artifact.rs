//! The OCI layout of a wasm component, as `wkg` and wasm-pkg-tools (the `oci-wasm` crate)
//! write it: an image manifest whose config is `application/vnd.wasm.config.v0+json` and
//! whose one layer is the component, `application/wasm`.

use serde::{Deserialize, Serialize};

/// The media type of an OCI image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The media type of the config of a wasm artifact.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The media type of the layer that holds the component.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";

/// One blob a manifest names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What it holds.
    pub media_type: String,
    /// `sha256:…` of its bytes.
    pub digest: String,
    /// Its length in bytes.
    pub size: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// The manifest of a wasm artifact: the config blob's digest and size, and the component's.
pub fn manifest(config_digest: &str, config_size: usize, wasm_digest: &str, wasm_size: usize) -> String {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": Descriptor { media_type: WASM_CONFIG_MEDIA_TYPE.into(), digest: config_digest.into(), size: config_size as u64 },
        "layers": [Descriptor { media_type: WASM_LAYER_MEDIA_TYPE.into(), digest: wasm_digest.into(), size: wasm_size as u64 }],
    })
    .to_string()
}

/// The component's layer of a wasm artifact's manifest; an error says why `manifest` is
/// not one (another config type, no wasm layer, or several).
pub fn wasm_layer(manifest: &[u8]) -> Result<Descriptor, String> {
    let manifest: Manifest = serde_json::from_slice(manifest).map_err(|e| format!("its manifest is not an OCI image manifest: {e}"))?;
    if manifest.config.media_type != WASM_CONFIG_MEDIA_TYPE {
        return Err(format!(
            "it is not a wasm artifact: its config is `{}`, not `{WASM_CONFIG_MEDIA_TYPE}` (push it with `plugboard plugin push` or `wkg oci push`)",
            manifest.config.media_type
        ));
    }
    let mut wasm = manifest.layers.into_iter().filter(|l| l.media_type == WASM_LAYER_MEDIA_TYPE);
    match (wasm.next(), wasm.next()) {
        (Some(layer), None) => Ok(layer),
        (None, _) => Err(format!("it has no `{WASM_LAYER_MEDIA_TYPE}` layer")),
        (Some(_), Some(_)) => Err(format!("it has several `{WASM_LAYER_MEDIA_TYPE}` layers; a plugin is one component")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layer_of_a_manifest_written_here_is_found_and_other_artifacts_are_named() {
        let layer = wasm_layer(manifest("sha256:c", 2, "sha256:w", 10).as_bytes()).unwrap();
        assert_eq!((layer.digest.as_str(), layer.size), ("sha256:w", 10));
        let image = r#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:c","size":2},"layers":[]}"#;
        let err = wasm_layer(image.as_bytes()).unwrap_err();
        assert!(err.contains("application/vnd.oci.image.config.v1+json"), "{err}");
    }
}
