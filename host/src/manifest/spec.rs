//! The `Agent` resource: its spec, component source and status. The same types are the
//! local manifest and the custom resource definition.

use std::path::PathBuf;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Capabilities, Limits};

/// What an agent runs, what it may reach and how much it may use.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "agent-host.dev",
    version = "v1alpha1",
    kind = "Agent",
    namespaced,
    status = "AgentStatus",
    derive = "PartialEq",
    shortname = "agt",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Digest","type":"string","jsonPath":".status.componentDigest","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    doc = "An AI agent run as a WebAssembly component with exactly the capabilities and limits its spec grants."
)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentSpec {
    /// Where the agent's WebAssembly component comes from.
    pub component: ComponentSource,
    /// What the agent may reach; everything absent is denied.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Per-invocation budgets; each one left out keeps its default.
    #[serde(default)]
    pub limits: Limits,
    /// Caller names allowed to invoke the agent (a `--caller-tokens` file
    /// name, or a TokenReview user such as
    /// `system:serviceaccount:ns:name`); absent = any authenticated caller.
    /// A host that authenticates nobody refuses an agent that sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callers: Option<Vec<String>>,
    /// How the agent is described as an MCP tool (`/mcp`, `agent-host mcp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<super::ToolSpec>,
}

/// The component to run: exactly one of a local file or an OCI image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.path) != has(self.image)",
    "message": "exactly one of component.path or component.image must be set"
}]))]
pub struct ComponentSource {
    /// A `.wasm` component file; relative paths are resolved against the manifest's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// An OCI image reference, e.g. `registry.example.com/agents/x@sha256:...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// What the host last reported about the agent. Written by the host, not by authors, so
/// unknown fields are tolerated: an older host must be able to read a newer one's status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard Kubernetes conditions: `Ready`, `ComponentLoaded`, `CapabilitiesGranted`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// SHA-256 of the loaded component, `sha256:<hex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_digest: Option<String>,
    /// The image serving, pinned: `registry/repository@sha256:<manifest digest>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_image: Option<String>,
    /// The trust-policy key whose signature the serving component carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// Each import of the component and what it is bound to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<String>,
    /// The grants in effect, one line per rule (e.g. `http: GET https://api/v1/`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub effective_grants: Vec<String>,
}
