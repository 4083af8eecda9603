//! The `Agent` manifest (`apiVersion: agent-host.dev/v1alpha1`, `kind: Agent`): what an
//! agent runs, what it may reach and how much it may use.
//!
//! One set of types serves both sources: [`Agent::from_yaml`] / [`LoadedAgent::from_file`]
//! for local runs, and kube's generated [`Agent`] (with [`Agent::validate`]) for the
//! cluster; `Agent::crd()` (from `kube::CustomResourceExt`) derives the CRD from them.
//! Anything the manifest does not grant is denied. Unknown fields are errors, and every
//! error names the field path and says what is allowed.

mod capabilities;
mod duration;
mod error;
mod limits;
mod load;
mod parse;
mod quantity;
mod spec;
mod url_prefix;
mod validate;

#[cfg(test)]
mod tests;

pub use capabilities::{
    Capabilities, EnvVar, EnvVarSource, FsMount, HttpMethod, HttpRule, KeyValueGrant, LlmGrant,
    LlmProvider, SecretKeyRef,
};
pub use duration::KubeDuration;
pub use error::ManifestError;
pub use limits::*;
pub use load::LoadedAgent;
pub use parse::{API_VERSION, KIND};
pub use quantity::Quantity;
pub use spec::{Agent, AgentSpec, AgentStatus, ComponentSource};
pub use url_prefix::UrlPrefix;
