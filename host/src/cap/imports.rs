//! Link-time check: every import of a component is bound to a capability the
//! manifest grants, bound to something inert, linked with every call denied
//! (a known interface the manifest does not grant, `wasi:sockets` included),
//! or refused (an interface or version the host does not provide), before any
//! instance exists. `agent-host check` prints this table.
//!
//! Denying at call rather than refusing at load is what lets interpreter
//! components run: componentize-py and ComponentizeJS import a fixed set of
//! interfaces whatever the agent's code uses. A denied call fails with the
//! interface's own denial error, is audited and counts as a denial
//! (`spec.limits.maxDenials`), so nothing ungranted becomes invisible.

use std::fmt;

use super::{Grants, Kind};
use crate::manifest::Limits;

/// What one import of a component is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportBinding {
    /// The import's full name, e.g. `wasi:http/outgoing-handler@0.2.0`.
    pub import: String,
    /// The decision.
    pub binding: Binding,
}

/// The decision for one import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    /// Linked; `detail` says what the manifest grants through it.
    Granted {
        /// The capability.
        capability: Kind,
        /// What is reachable through it.
        detail: String,
    },
    /// Linked, but grants nothing by itself (clocks, random, empty environment...).
    Inert {
        /// What it does.
        detail: String,
    },
    /// Linked to an implementation whose every call is denied with the
    /// interface's own error (counted and audited): the manifest does not
    /// grant `capability`.
    Denied {
        /// The capability (`sockets` is never granted).
        capability: Kind,
        /// What would grant it.
        reason: String,
    },
    /// Not linked: the host does not provide the interface or version; the
    /// component is refused at load.
    Refused {
        /// Why, and what would allow it.
        reason: String,
    },
}

impl fmt::Display for ImportBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.binding {
            Binding::Granted { capability, detail } => {
                write!(
                    f,
                    "{:<42} granted ({}): {detail}",
                    self.import,
                    capability.as_str()
                )
            }
            Binding::Inert { detail } => {
                write!(f, "{:<42} linked, grants nothing: {detail}", self.import)
            }
            Binding::Denied { reason, .. } => {
                write!(
                    f,
                    "{:<42} not granted: every call denied ({reason})",
                    self.import
                )
            }
            Binding::Refused { reason } => write!(f, "{:<42} REFUSED: {reason}", self.import),
        }
    }
}

/// Binds every import in `imports` against the agent's grants.
pub fn bind_imports<'a>(
    imports: impl IntoIterator<Item = &'a str>,
    grants: &Grants,
    limits: &Limits,
) -> Vec<ImportBinding> {
    imports
        .into_iter()
        .map(|import| ImportBinding {
            import: import.to_string(),
            binding: bind(import, grants, limits),
        })
        .collect()
}

/// What one import is bound to: a grantable capability's decision for the
/// interfaces it provides, the core's for the WASI basics and sockets,
/// refused otherwise.
fn bind(import: &str, grants: &Grants, limits: &Limits) -> Binding {
    let interface = import.split('@').next().unwrap_or(import);
    if let Some(binding) = grants.bind(interface, limits) {
        return binding;
    }
    let (package, name) = interface.split_once('/').unwrap_or((interface, ""));
    match (package, name) {
        ("wasi:cli", "exit") => Binding::inert("ends the invocation"),
        ("wasi:clocks", _) => Binding::inert("reads clocks"),
        ("wasi:random", _) => Binding::inert("random bytes"),
        ("wasi:io", _) => Binding::inert("streams and polling on resources granted elsewhere"),
        ("agent-host:agent", "types") => Binding::inert("type definitions only"),
        ("wasi:sockets", _) => Binding::denied(
            Kind::Sockets,
            "raw sockets are never granted; use wasi:http with spec.capabilities.http",
        ),
        _ => Binding::refused(
            "not provided by agent-host; the agent world is defined in wit/world.wit",
        ),
    }
}

impl Binding {
    /// Linked to `capability`, reaching `detail`.
    pub fn granted(capability: Kind, detail: impl Into<String>) -> Self {
        Binding::Granted {
            capability,
            detail: detail.into(),
        }
    }

    /// Linked, reaching nothing by itself.
    pub fn inert(detail: impl Into<String>) -> Self {
        Binding::Inert {
            detail: detail.into(),
        }
    }

    /// Linked, every call denied: `capability` is not granted.
    pub fn denied(capability: Kind, reason: impl Into<String>) -> Self {
        Binding::Denied {
            capability,
            reason: reason.into(),
        }
    }

    /// Not linked: the component is refused.
    pub fn refused(reason: impl Into<String>) -> Self {
        Binding::Refused {
            reason: reason.into(),
        }
    }
}
