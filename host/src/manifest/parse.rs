//! YAML text to a validated `Agent`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_norway::{Mapping, Value};

use super::{validate, Agent, AgentSpec, AgentStatus, ManifestError};

/// The only `apiVersion` this host reads.
pub const API_VERSION: &str = "agent-host.dev/v1alpha1";
/// The only `kind` this host reads.
pub const KIND: &str = "Agent";

/// The top-level fields of an Agent document.
const TOP_LEVEL_FIELDS: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];

/// The fields of Kubernetes' `ObjectMeta`. Its own deserializer ignores unknown keys,
/// so a typo such as `metadata.namepsace` is caught against this list instead.
const METADATA_FIELDS: [&str; 15] = [
    "annotations",
    "creationTimestamp",
    "deletionGracePeriodSeconds",
    "deletionTimestamp",
    "finalizers",
    "generateName",
    "generation",
    "labels",
    "managedFields",
    "name",
    "namespace",
    "ownerReferences",
    "resourceVersion",
    "selfLink",
    "uid",
];

/// An Agent document without `apiVersion` and `kind`, which are checked (and removed)
/// beforehand because kube's generated `Agent` does not carry them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    metadata: ObjectMeta,
    spec: AgentSpec,
    status: Option<AgentStatus>,
}

impl Agent {
    /// Parses and validates one Agent document from YAML: syntax, field names and types,
    /// `apiVersion`/`kind`, then every rule of [`Agent::validate`]. Does not touch the
    /// filesystem; a relative `spec.component.path` is left as written (see
    /// [`LoadedAgent`](super::LoadedAgent) for resolving it).
    pub fn from_yaml(text: &str) -> Result<Agent, ManifestError> {
        let mut value: Value =
            serde_norway::from_str(text).map_err(|e| ManifestError::from_yaml(&e))?;
        // `<<: *anchor` merge keys let authors share blocks; apply them before type checks.
        value
            .apply_merge()
            .map_err(|e| ManifestError::from_yaml(&e))?;
        let Value::Mapping(mut document) = value else {
            return Err(ManifestError::Document {
                message: format!(
                    "expected an Agent: a mapping with apiVersion: {API_VERSION}, \
                     kind: {KIND}, metadata and spec"
                ),
            });
        };
        check_keys(&document, "", &TOP_LEVEL_FIELDS)?;
        if let Some(Value::Mapping(metadata)) = document.get("metadata") {
            check_keys(metadata, "metadata.", &METADATA_FIELDS)?;
        }
        check_type_field(&mut document, "apiVersion", API_VERSION)?;
        check_type_field(&mut document, "kind", KIND)?;
        let parsed: Document = serde_path_to_error::deserialize(Value::Mapping(document))
            .map_err(|e| ManifestError::from_serde(&e))?;
        let agent = Agent {
            metadata: parsed.metadata,
            spec: parsed.spec,
            status: parsed.status,
        };
        agent.validate()?;
        Ok(agent)
    }

    /// Checks every rule that field types cannot express: `metadata.name`, exactly one
    /// component source, limit bounds, and each capability's rules. [`Agent::from_yaml`]
    /// calls it; call it directly on an `Agent` that came from the Kubernetes API.
    pub fn validate(&self) -> Result<(), ManifestError> {
        validate::validate_metadata(&self.metadata)?;
        validate::validate_spec(&self.spec)
    }

    /// `metadata.name`; never empty on a validated Agent.
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }
}

/// Checks that `key` is present and equal to `expected`, then removes it.
fn check_type_field(
    document: &mut Mapping,
    key: &str,
    expected: &str,
) -> Result<(), ManifestError> {
    let message = match document.remove(key) {
        Some(Value::String(s)) if s == expected => return Ok(()),
        Some(Value::String(s)) => format!("\"{s}\" is not supported; use {expected}"),
        Some(_) => format!("expected a string; use {expected}"),
        None => format!("required; use {expected}"),
    };
    Err(ManifestError::field(key, message))
}

/// Rejects the first key of `map` not in `allowed`, naming it as `{prefix}{key}`.
fn check_keys(map: &Mapping, prefix: &str, allowed: &[&str]) -> Result<(), ManifestError> {
    for key in map.keys() {
        let name = match key {
            Value::String(name) if allowed.contains(&name.as_str()) => continue,
            Value::String(name) => name.clone(),
            other => serde_norway::to_string(other)
                .unwrap_or_default()
                .trim_end()
                .to_owned(),
        };
        return Err(ManifestError::field(
            format!("{prefix}{name}"),
            format!("unknown field; allowed: {}", allowed.join(", ")),
        ));
    }
    Ok(())
}
