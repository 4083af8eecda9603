//! Reading an Agent manifest from a file for a local run.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::{Agent, ManifestError};

/// A validated Agent read from a file, with its component located on disk.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedAgent {
    /// The validated manifest.
    pub agent: Agent,
    /// The manifest file, as given.
    pub manifest_path: PathBuf,
    /// Absolute path of the component file, which existed when the manifest was loaded.
    pub component_path: PathBuf,
}

impl LoadedAgent {
    /// Reads a manifest file, validates it, resolves `spec.component.path` relative to the
    /// manifest's directory and checks that the component file exists. Every error names
    /// the file, e.g.
    /// `agent.yaml: spec.component.path: ./x.wasm: no such file (resolved to /abs/x.wasm)`.
    /// `spec.component.image` is rejected: pulling images is not supported for local runs.
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
        })
    }
}

fn locate_component(agent: &Agent, manifest_path: &Path) -> Result<PathBuf, ManifestError> {
    let Some(written) = &agent.spec.component.path else {
        return Err(ManifestError::field(
            "spec.component.image",
            "not supported for local runs yet; use spec.component.path",
        ));
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
