//! Reading an Agent manifest from a file for a local run.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Agent, ManifestError};

/// A validated Agent read from a file, with its component located on disk.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedAgent {
    /// The validated manifest.
    pub agent: Agent,
    /// The manifest file, as given.
    pub manifest_path: PathBuf,
    /// Absolute path of the component file, which existed when the manifest was loaded;
    /// for an image, the reference (the bytes are in `image`).
    pub component_path: PathBuf,
    /// For `spec.component.image`: the component pulled and verified
    /// (`oci::Puller::resolve`). An image Agent without it does not load.
    pub image: Option<PulledImage>,
}

/// A component pulled from a registry, checked against its digests, its
/// signature verified under the trust policy.
#[derive(Clone, PartialEq)]
pub struct PulledImage {
    /// `registry/repository@sha256:<manifest digest>`.
    pub reference: String,
    /// The manifest digest, `sha256:<hex>`.
    pub manifest_digest: String,
    /// The Wasm layer's digest, `sha256:<hex>`: the component's own SHA-256.
    pub layer_digest: String,
    /// The trust-policy key whose signature was verified; `None` when the
    /// matching rule allows unsigned components.
    pub signer: Option<String>,
    /// The trust-policy rule that matched, e.g. `rules[0] (registry.example.com/agents/**)`.
    pub rule: String,
    /// The signer's grant ceiling, one line per limit.
    pub ceiling: Vec<String>,
    /// The component, as verified.
    pub wasm: Arc<[u8]>,
}

impl std::fmt::Debug for PulledImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PulledImage")
            .field("reference", &self.reference)
            .field("layer_digest", &self.layer_digest)
            .field("signer", &self.signer)
            .field("bytes", &self.wasm.len())
            .finish()
    }
}

impl LoadedAgent {
    /// Reads a manifest file, validates it, resolves `spec.component.path` relative to the
    /// manifest's directory and checks that the component file exists. Every error names
    /// the file, e.g.
    /// `agent.yaml: spec.component.path: ./x.wasm: no such file (resolved to /abs/x.wasm)`.
    /// For `spec.component.image` the reference is checked and the component
    /// left to `oci::Puller::resolve`.
    pub fn from_file(path: &Path) -> Result<LoadedAgent, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError::Io {
            file: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let agent = Agent::from_yaml(&text).map_err(|e| e.in_file(path))?;
        let component_path = locate_component(&agent, path).map_err(|e| e.in_file(path))?;
        Ok(LoadedAgent {
            agent,
            manifest_path: path.to_path_buf(),
            component_path,
            image: None,
        })
    }
}

impl LoadedAgent {
    /// An Agent read from the Kubernetes API: validated like a file, its
    /// `spec.component.path` must be absolute (a path inside the pod).
    pub fn from_cluster(agent: Agent) -> Result<LoadedAgent, ManifestError> {
        agent.validate()?;
        let api_path = PathBuf::from(format!(
            "/apis/agent-host.dev/v1alpha1/namespaces/{}/agents/{}",
            agent.metadata.namespace.as_deref().unwrap_or("default"),
            agent.name()
        ));
        if let Some(path) = &agent.spec.component.path {
            if !path.is_absolute() {
                return Err(ManifestError::field(
                    "spec.component.path",
                    format!("{}: must be absolute in a cluster (a path inside the pod, e.g. /agents/x.wasm)", path.display()),
                ));
            }
        }
        // Relative host paths resolve under the API path, which does not
        // exist on disk: such a grant fails to load (closed), never widens.
        let component_path = locate_component(&agent, &api_path)?;
        Ok(LoadedAgent {
            agent,
            manifest_path: api_path,
            component_path,
            image: None,
        })
    }
}

fn locate_component(agent: &Agent, manifest_path: &Path) -> Result<PathBuf, ManifestError> {
    let Some(written) = &agent.spec.component.path else {
        // An image: resolved (pulled, verified) before it is loaded.
        let image = agent.spec.component.image.as_deref().unwrap_or_default();
        return Ok(PathBuf::from(image));
    };
    let manifest_dir = manifest_path.parent().unwrap_or(Path::new(""));
    let resolved = std::path::absolute(manifest_dir.join(written)).map_err(|e| {
        ManifestError::field("spec.component.path", format!("{}: {e}", written.display()))
    })?;
    let problem = match std::fs::metadata(&resolved) {
        // Canonical so reports and cache logs show where the bytes really come from.
        Ok(meta) if meta.is_file() => return Ok(resolved.canonicalize().unwrap_or(resolved)),
        Ok(_) => "not a file".to_owned(),
        Err(e) if e.kind() == ErrorKind::NotFound => "no such file".to_owned(),
        Err(e) => e.to_string(),
    };
    Err(ManifestError::field(
        "spec.component.path",
        format!(
            "{}: {problem} (resolved to {})",
            written.display(),
            resolved.display()
        ),
    ))
}
