//! The artifact layouts the host reads and writes: the CNCF Wasm OCI artifact
//! (config `application/vnd.wasm.config.v0+json`, one `application/wasm`
//! layer), the older single-layer `application/vnd.wasm.content.layer.v1+wasm`
//! artifact, and cosign's signature manifests.

// Media types and fields are the OCI image spec's, named as it names them.
#![allow(missing_docs)]

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::PullError;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
pub const WASM_LAYER: &str = "application/wasm";
pub const OLD_WASM_LAYER: &str = "application/vnd.wasm.content.layer.v1+wasm";
pub const COSIGN_LAYER: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const COSIGN_SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
pub const OCI_IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// What the host asks for: single manifests only (an index is refused with a reason).
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json";

/// An image manifest (OCI, or Docker schema 2 which has the same shape).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A blob named by digest.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    pub fn of(media_type: &str, blob: &[u8]) -> Self {
        Self {
            media_type: media_type.to_owned(),
            digest: super::client::sha256(blob),
            size: blob.len() as u64,
            annotations: BTreeMap::new(),
        }
    }
}

/// Parses manifest bytes fetched for `what`.
pub fn parse_manifest(bytes: &[u8], content_type: &str, what: &str) -> Result<Manifest, PullError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let bad = |m: String| PullError::BadArtifact(format!("{what}: {m}"));
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("manifest is not JSON: {e}")))?;
    let media_type = probe.media_type.as_deref().unwrap_or(content_type);
    if probe.manifests.is_some() || media_type.contains("index") || media_type.contains("list") {
        return Err(bad(
            "is an index (several manifests); reference the Wasm artifact's own manifest digest"
                .into(),
        ));
    }
    if !media_type.is_empty() && media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
        return Err(bad(format!(
            "manifest media type {media_type} is not an OCI image manifest"
        )));
    }
    let manifest: Manifest =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not an image manifest: {e}")))?;
    for d in std::iter::once(&manifest.config).chain(&manifest.layers) {
        crate::manifest::reference::check_digest(&d.digest).map_err(bad)?;
    }
    Ok(manifest)
}

/// The one Wasm layer of a component artifact.
pub fn wasm_layer<'a>(manifest: &'a Manifest, what: &str) -> Result<&'a Descriptor, PullError> {
    let wasm: Vec<&Descriptor> = manifest
        .layers
        .iter()
        .filter(|l| l.media_type == WASM_LAYER || l.media_type == OLD_WASM_LAYER)
        .collect();
    match (wasm.as_slice(), manifest.layers.len()) {
        ([layer], 1) => Ok(layer),
        _ => Err(PullError::BadArtifact(format!(
            "{what}: not a Wasm component artifact: expected exactly one layer of type {WASM_LAYER} (or {OLD_WASM_LAYER}), found [{}]",
            manifest.layers.iter().map(|l| l.media_type.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Config blob of a component artifact, as `oci-wasm` writes it, without
/// its timestamp: the same component always pushes to the same digest.
pub fn wasm_config(layer_digest: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [layer_digest],
    }))
    .expect("JSON")
}

/// A manifest's canonical bytes.
pub fn to_bytes(manifest: &Manifest) -> Vec<u8> {
    serde_json::to_vec(manifest).expect("JSON")
}

/// The tag cosign stores the signatures of `digest` under: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replace(':', "-"))
}
