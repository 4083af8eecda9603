//! Capabilities: one module per thing an agent can be granted.
//!
//! Each capability goes through three phases:
//! * **link** (once per engine): its host functions are added to the shared linker
//!   ([`crate::runtime::linker`]);
//! * **configure** (once per agent): its part of the manifest is compiled into a
//!   grant, and anything that names something nonexistent fails here, at load;
//! * **prepare** (per invocation, cheap): the grant becomes per-invocation state.
//!
//! Absent from the manifest means denied.

pub mod env;
pub mod fs;
pub mod http;
pub mod imports;
pub mod kv;
pub mod llm;
pub mod log;
pub mod stdio;
pub mod tool_call;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::manifest::Agent;

/// What a host call touches. Used to count calls and denials per invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// `wasi:cli/environment`: declared variables only.
    Env,
    /// `wasi:filesystem`: declared preopens only.
    Filesystem,
    /// `wasi:cli/stdin|stdout|stderr|terminal-*`: captured and bounded.
    Stdio,
    /// `wasi:clocks`.
    Clocks,
    /// `wasi:random`.
    Random,
    /// `wasi:io`: streams and polling on resources granted elsewhere.
    Io,
    /// `wasi:cli/exit`.
    Exit,
    /// `wasi:http`: declared URLs and methods only.
    Http,
    /// `agent-host:agent/log`.
    Log,
    /// `wasi:keyvalue`: the agent's own buckets, transactional per invocation.
    KeyValue,
    /// `agent-host:agent/llm`: the granted model, within the token budgets.
    Llm,
}

impl Capability {
    /// Every capability, in report order.
    pub const ALL: [Capability; 11] = [
        Capability::Env,
        Capability::Filesystem,
        Capability::Stdio,
        Capability::Clocks,
        Capability::Random,
        Capability::Io,
        Capability::Exit,
        Capability::Http,
        Capability::Log,
        Capability::KeyValue,
        Capability::Llm,
    ];

    /// Stable lower-case name, used in reports, logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Env => "env",
            Capability::Filesystem => "filesystem",
            Capability::Stdio => "stdio",
            Capability::Clocks => "clocks",
            Capability::Random => "random",
            Capability::Io => "io",
            Capability::Exit => "exit",
            Capability::Http => "http",
            Capability::Log => "log",
            Capability::KeyValue => "keyvalue",
            Capability::Llm => "llm",
        }
    }
}

/// Per-invocation counters of host calls, by capability.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostCalls {
    counts: [u64; Capability::ALL.len()],
}

impl HostCalls {
    /// Counts one call to `cap`.
    pub fn record(&mut self, cap: Capability) {
        self.counts[cap as usize] += 1;
    }

    /// Calls made to `cap` so far.
    pub fn get(&self, cap: Capability) -> u64 {
        self.counts[cap as usize]
    }

    /// Capabilities with at least one call, by name.
    pub fn to_map(&self) -> BTreeMap<&'static str, u64> {
        Capability::ALL
            .iter()
            .filter(|c| self.get(**c) > 0)
            .map(|c| (c.as_str(), self.get(*c)))
            .collect()
    }
}

/// A grant that could not be compiled from the manifest (phase *configure*).
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigureError {
    /// Manifest field path, e.g. `spec.capabilities.filesystem[0].hostPath`.
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl ConfigureError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Every capability grant of one agent, compiled once at load.
#[derive(Debug)]
pub struct Grants {
    /// Environment variables (values resolved, secrets included).
    pub env: env::EnvGrant,
    /// Filesystem preopens.
    pub fs: fs::FsGrant,
    /// Outgoing HTTP rules, shared with every invocation's policy.
    pub http: Arc<http::HttpGrant>,
    /// Key-value state: quota and buckets (absent: denied).
    pub kv: Option<kv::KvGrant>,
    /// Model access: endpoint, key, budgets (absent: denied).
    pub llm: Option<Arc<llm::LlmGrant>>,
    /// Everything redacted from what the host prints for this agent: secret
    /// env values and the model API key, multi-line ones line by line too.
    secrets: crate::redact::SecretSet,
}

impl Grants {
    /// Compiles the grants of `agent`. `secrets_dir` is where referenced secrets are
    /// mounted; `base_dir` resolves relative host paths (the manifest's directory).
    pub fn configure(
        agent: &Agent,
        secrets_dir: &Path,
        base_dir: &Path,
    ) -> Result<Self, ConfigureError> {
        let caps = &agent.spec.capabilities;
        let env = env::EnvGrant::configure(&caps.env, secrets_dir)?;
        let fs = fs::FsGrant::configure(&caps.filesystem, base_dir)?;
        let llm = caps
            .llm
            .as_ref()
            .map(|g| llm::LlmGrant::configure(g, secrets_dir).map(Arc::new))
            .transpose()?;
        let api_key = llm.as_ref().and_then(|l| l.endpoint.api_key.clone());
        let secrets = crate::redact::SecretSet(crate::redact::secret_set(
            env.secrets().iter().cloned().chain(api_key),
        ));
        Ok(Self {
            env,
            fs,
            http: Arc::new(http::HttpGrant::configure(&caps.http)),
            kv: caps.key_value.as_ref().map(|g| kv::KvGrant {
                scope: kv::Scope {
                    namespace: agent.metadata.namespace.clone().unwrap_or_default(),
                    agent: agent.name().to_string(),
                },
                buckets: g.buckets.clone(),
                max_bytes: g.max_bytes.bytes(),
            }),
            llm,
            secrets,
        })
    }

    /// The agent's redaction set (see [`crate::redact::secret_set`]).
    pub fn secrets(&self) -> &Arc<[String]> {
        &self.secrets.0
    }
}
