//! Capabilities: one module per thing an agent can be granted, each an
//! implementation of [`Capability`] (its phases: host, link, configure,
//! prepare, finish), composed by the one list at the bottom of this file.
//!
//! Adding a capability: its module under `cap/` implementing [`Capability`],
//! one line in [`capabilities!`]'s invocation below, its declaration type in
//! `manifest/`, its WIT. Everything that enumerates capabilities (grants,
//! store state, import table, status, usage, denials, metrics, the CLI
//! report) iterates that list.
//!
//! Absent from the manifest means denied.

pub mod capability;
pub mod env;
pub mod fs;
pub mod http;
pub mod imports;
pub mod key_value;
pub mod llm;
pub mod log;
pub mod mcp;
pub mod stdio;
pub mod tool_call;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use wasmtime::component::Linker;

pub use capability::{Capability, ConfigureCx, Core, HasCapability, PrepareCx, StoreData, View};
use imports::Binding;
use tool_call::ToolCall;

use crate::config::HostConfig;
use crate::manifest::{Agent, Limits};

/// Per-invocation counters of host calls, by capability.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostCalls {
    counts: [u64; Kind::ALL.len()],
}

impl HostCalls {
    /// Counts one call to `kind`.
    pub fn record(&mut self, kind: Kind) {
        self.counts[kind as usize] += 1;
    }

    /// Calls made to `kind` so far.
    pub fn get(&self, kind: Kind) -> u64 {
        self.counts[kind as usize]
    }

    /// Capabilities with at least one call, by name.
    pub fn to_map(&self) -> BTreeMap<&'static str, u64> {
        Kind::ALL
            .iter()
            .filter(|c| self.get(**c) > 0)
            .map(|c| (c.as_str(), self.get(*c)))
            .collect()
    }

    /// No call counted.
    pub fn is_empty(&self) -> bool {
        self.counts.iter().all(|n| *n == 0)
    }
}

/// As [`HostCalls::to_map`]: the capabilities with a count, by name.
impl serde::Serialize for HostCalls {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_map().serialize(serializer)
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

/// What a capability's finish step hands the runtime to make durable with the
/// invocation's result; written only if `run` returned ok.
pub enum CommitIntent {
    /// The invocation's key-value writes.
    KeyValue(key_value::Transaction),
}

/// The usage of a capability that reports none of its own.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct NoUsage {}

impl From<Kind> for &'static str {
    fn from(kind: Kind) -> &'static str {
        kind.as_str()
    }
}

/// Composes the capabilities listed in its invocation: the [`Kind`] enum
/// (core kinds first), and [`HostStates`], [`Grants`], [`States`] and
/// [`CapabilityUsage`] with one field per capability, and what iterates them.
macro_rules! capabilities {
    (
        core { $($core:ident = $core_name:literal, $core_doc:literal;)* }
        granted { $($kind:ident = $name:literal, $field:ident: $ty:ty;)* }
    ) => {
        /// Everything a host call can touch: the always-linked WASI basics and
        /// the grantable capabilities. Used to count calls and denials.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Kind {
            $(#[doc = $core_doc] $core,)*
            $(#[doc = concat!("`", stringify!($field), "`: see [`", stringify!($ty), "`].")] $kind,)*
        }

        impl Kind {
            /// Every kind, in report order.
            pub const ALL: [Kind; [$(Kind::$core,)* $(Kind::$kind,)*].len()] =
                [$(Kind::$core,)* $(Kind::$kind,)*];

            /// The grantable capabilities: the list.
            pub const GRANTABLE: [Kind; [$(Kind::$kind,)*].len()] = [$(Kind::$kind,)*];

            /// Stable name, used in reports, logs, audit records and metric labels
            /// (spelled as the manifest spells the capability).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Kind::$core => $core_name,)*
                    $(Kind::$kind => $name,)*
                }
            }

            /// The grantable capability providing `interface` (`package/name`).
            pub fn providing(interface: &str) -> Option<Kind> {
                $(if <$ty as Capability>::INTERFACES.contains(&interface) {
                    return Some(Kind::$kind);
                })*
                None
            }

            /// The interfaces a grantable capability provides (none for core kinds).
            pub fn interfaces(self) -> &'static [&'static str] {
                match self {
                    $(Kind::$kind => <$ty as Capability>::INTERFACES,)*
                    _ => &[],
                }
            }
        }

        /// Host-wide state of every capability, built once per host.
        pub struct HostStates {
            $(#[doc = concat!("`", $name, "`.")] pub $field: <$ty as Capability>::Host,)*
        }

        impl HostStates {
            /// Each capability's host-wide state for `config`.
            pub fn new(config: &HostConfig) -> Self {
                Self { $($field: <$ty as Capability>::host(config),)* }
            }
        }

        /// Every capability grant of one agent, compiled once at load.
        #[derive(Debug)]
        pub struct Grants {
            $(#[doc = concat!("`", $name, "`.")] pub $field: <$ty as Capability>::Grant,)*
            /// Everything redacted from what the host prints for this agent.
            secrets: crate::redact::SecretSet,
        }

        impl Grants {
            /// Compiles every capability's declaration in `agent`. `secrets_dir` is
            /// where referenced secrets are mounted; `base_dir` resolves relative
            /// host paths (the manifest's directory); `inspect` validates only.
            pub fn configure(
                host: &HostStates,
                agent: &Agent,
                secrets_dir: &Path,
                base_dir: &Path,
                inspect: bool,
            ) -> Result<Self, ConfigureError> {
                let cx = ConfigureCx { agent, secrets_dir, base_dir, inspect };
                $(let $field = <$ty as Capability>::configure(&host.$field, &cx)?;)*
                let secrets = crate::redact::SecretSet(crate::redact::secret_set(
                    std::iter::empty()$(.chain(<$ty as Capability>::secrets(&$field)))*,
                ));
                Ok(Self { $($field,)* secrets })
            }

            /// What `interface` (`package/name`, no version) is bound to, when a
            /// capability of the list provides it.
            pub fn bind(&self, interface: &str, limits: &Limits) -> Option<Binding> {
                $(if <$ty as Capability>::INTERFACES.contains(&interface) {
                    return Some(<$ty as Capability>::bind(interface, &self.$field, limits));
                })*
                None
            }

            /// One line per thing granted, prefixed by the capability's name.
            pub fn describe(&self) -> Vec<String> {
                let mut lines = Vec::new();
                $(lines.extend(
                    <$ty as Capability>::describe(&self.$field)
                        .into_iter()
                        .map(|line| format!("{}: {line}", $name)),
                );)*
                lines
            }

            /// The `agent-host run` report: one line per capability with something to say.
            pub fn report(&self, usage: &CapabilityUsage, limits: &Limits) -> Vec<(Kind, String)> {
                let mut lines = Vec::new();
                $(if let Some(line) = <$ty as Capability>::report(&self.$field, &usage.$field, limits) {
                    lines.push((Kind::$kind, line));
                })*
                lines
            }

            /// The agent's redaction set (see [`crate::redact::secret_set`]).
            pub fn secrets(&self) -> &Arc<[String]> {
                &self.secrets.0
            }
        }

        /// Every capability's state in one invocation's store.
        pub struct States {
            $(#[doc = concat!("`", $name, "`.")] pub $field: <$ty as Capability>::State,)*
        }

        impl States {
            /// Phase *prepare* of every capability.
            pub fn prepare(host: &HostStates, grants: &Grants, cx: &mut PrepareCx<'_>) -> Self {
                Self { $($field: <$ty as Capability>::prepare(&host.$field, &grants.$field, cx),)* }
            }

            /// Phase *finish* of every capability: usage recorded, intents returned.
            pub async fn finish(
                self,
                usage: &mut CapabilityUsage,
                tool_calls: &mut Vec<ToolCall>,
            ) -> Vec<CommitIntent> {
                let mut intents = Vec::new();
                $(intents.extend(
                    <$ty as Capability>::finish(self.$field, &mut usage.$field, tool_calls).await,
                );)*
                intents
            }
        }

        /// The per-capability part of an invocation's usage; each capability's
        /// fields are flattened into the report (`httpRequests`, `llmTokens`, ...).
        #[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
        pub struct CapabilityUsage {
            $(#[doc = concat!("`", $name, "`.")] #[serde(flatten)] pub $field: <$ty as Capability>::Usage,)*
        }

        impl CapabilityUsage {
            /// Uses refused, by capability (only those with refusals).
            pub fn denials(&self) -> impl Iterator<Item = (Kind, u64)> {
                [$((Kind::$kind, <$ty as Capability>::denials(&self.$field)),)*]
                    .into_iter()
                    .filter(|(_, n)| *n > 0)
            }
        }

        $(impl<T: StoreData> HasCapability<$ty> for T {
            fn capability(&mut self) -> View<'_, $ty> {
                let (core, states) = self.parts();
                View { state: &mut states.$field, core }
            }
        })*

        /// Phase *link* of every capability.
        pub fn link<T: StoreData>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
            $(<$ty as Capability>::link(linker)?;)*
            Ok(())
        }
    };
}

capabilities! {
    core {
        Clocks = "clocks", "`wasi:clocks`.";
        Random = "random", "`wasi:random`.";
        Io = "io", "`wasi:io`: streams and polling on resources granted elsewhere.";
        Exit = "exit", "`wasi:cli/exit`.";
        Sockets = "sockets", "`wasi:sockets`: never granted; linked so that components importing it load, every call denied.";
    }
    granted {
        Env = "env", env: env::Env;
        Filesystem = "filesystem", filesystem: fs::Filesystem;
        Stdio = "stdio", stdio: stdio::Stdio;
        Http = "http", http: http::Http;
        Log = "log", log: log::Log;
        KeyValue = "keyValue", key_value: key_value::KeyValue;
        Llm = "llm", llm: llm::Llm;
        Mcp = "mcp", mcp: mcp::Mcp;
    }
}
