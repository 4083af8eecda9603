//! What every capability is: a unit with four phases, its own state at each,
//! and the reports the host derives from it. [`super::capabilities!`] composes
//! the implementations into the host's grants, store state and reports.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::imports::Binding;
use super::log::GuestLog;
use super::tool_call::ToolCall;
use super::{ConfigureError, HostCalls, Kind};
use crate::audit::CapabilityAudit;
use crate::config::HostConfig;
use crate::manifest::{Agent, Limits};

/// One grantable capability. The phases, in the order the host runs them:
///
/// * [`Capability::host`] once per host: operator settings and backends;
/// * [`Capability::link`] once per engine: host functions on the shared linker,
///   each reaching only this capability's state through [`HasCapability`];
/// * [`Capability::configure`] once per manifest: the declaration compiled into
///   a grant; anything that names something nonexistent fails here, at load;
/// * [`Capability::prepare`] once per invocation, cheap: the grant becomes the
///   state a fresh store holds;
/// * [`Capability::finish`] after `run`: usage recorded, and what must be made
///   durable handed to the runtime, which writes it only if `run` returned ok.
///
/// Absent from the manifest means denied: a grant built from no declaration
/// links imports to nothing or refuses them ([`Capability::bind`]).
pub trait Capability: Sized + Send + 'static {
    /// Its name in reports, metric labels and audit records.
    const KIND: Kind;
    /// The interfaces it provides (`package/name`, no version).
    const INTERFACES: &'static [&'static str];

    /// Host-wide state: operator settings, shared backends.
    type Host: Send + Sync + 'static;
    /// The compiled grant of one agent.
    type Grant: Send + Sync + std::fmt::Debug + 'static;
    /// One invocation's state, held by its store.
    type State: Send + 'static;
    /// What one invocation used; its fields are flattened into the usage report.
    type Usage: Serialize + Default + Clone + std::fmt::Debug + PartialEq + Eq + Send + Sync;

    /// Builds the host-wide state from the operator's configuration.
    fn host(config: &HostConfig) -> Self::Host;

    /// Adds the host functions of [`Capability::INTERFACES`] to `linker`.
    fn link<T: HasCapability<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()>;

    /// Compiles the agent's declaration into a grant.
    fn configure(host: &Self::Host, cx: &ConfigureCx<'_>) -> Result<Self::Grant, ConfigureError>;

    /// Values of the grant that must never be printed (secrets, keys).
    fn secrets(_grant: &Self::Grant) -> Vec<String> {
        Vec::new()
    }

    /// The per-invocation state of a fresh store.
    fn prepare(host: &Self::Host, grant: &Self::Grant, cx: &mut PrepareCx<'_>) -> Self::State;

    /// Records what the invocation used and returns what must be made durable
    /// together with its result.
    fn finish(
        state: Self::State,
        usage: &mut Self::Usage,
        tool_calls: &mut Vec<ToolCall>,
    ) -> impl Future<Output = Option<super::CommitIntent>> + Send;

    /// What `interface` (one of [`Capability::INTERFACES`]) is bound to under `grant`.
    fn bind(interface: &str, grant: &Self::Grant, limits: &Limits) -> Binding;

    /// One line per thing granted, as the agent will see it (status, `check`).
    fn describe(grant: &Self::Grant) -> Vec<String>;

    /// Uses refused in one invocation.
    fn denials(_usage: &Self::Usage) -> u64 {
        0
    }

    /// The `agent-host run` report line, when there is something to say.
    fn report(grant: &Self::Grant, usage: &Self::Usage, limits: &Limits) -> Option<String>;
}

/// What configure sees of the agent being loaded.
pub struct ConfigureCx<'a> {
    /// The manifest.
    pub agent: &'a Agent,
    /// Where referenced secrets are mounted.
    pub secrets_dir: &'a Path,
    /// Resolves relative host paths (the manifest's directory).
    pub base_dir: &'a Path,
    /// Only validating (`agent-host check`): no backend is opened, and a
    /// grant configured so is never prepared.
    pub inspect: bool,
}

impl ConfigureCx<'_> {
    /// `namespace/name` (or `name`): who holds host-wide leases.
    pub fn owner(&self) -> String {
        match &self.agent.metadata.namespace {
            Some(ns) => format!("{ns}/{}", self.agent.name()),
            None => self.agent.name().to_string(),
        }
    }
}

/// What prepare sees of the invocation being set up.
pub struct PrepareCx<'a> {
    /// The WASI context under construction (environment, stdio).
    pub wasi: &'a mut WasiCtxBuilder,
    /// Where this invocation's capability uses are recorded.
    pub audit: &'a CapabilityAudit,
    /// The invocation's bounded log.
    pub log: &'a GuestLog,
    /// Agent name.
    pub agent: &'a Arc<str>,
    /// Invocation id.
    pub invocation: &'a Arc<str>,
    /// When the invocation must end.
    pub deadline: Instant,
    /// The manifest's limits.
    pub limits: &'a Limits,
}

/// The part of every invocation's store that belongs to no one capability:
/// handles, WASI basics, host-call counts, audit and log.
pub struct Core {
    /// Every resource handle the guest holds (bounded by `maxResources`).
    pub table: ResourceTable,
    /// Clocks, random, environment, stdio.
    pub wasi: WasiCtx,
    /// Host calls by capability.
    pub calls: HostCalls,
    /// Calls denied because the interface is linked but not granted, by capability.
    pub ungranted: HostCalls,
    /// Capability records and the denial budget.
    pub audit: CapabilityAudit,
    /// Log records and captured output.
    pub log: GuestLog,
    /// When the invocation must end.
    pub deadline: Instant,
}

impl WasiView for Core {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl Core {
    /// Counts one call to `kind` and hands out the core.
    pub fn count(&mut self, kind: Kind) -> &mut Self {
        self.calls.record(kind);
        self
    }

    /// Denies a call to `kind`'s interface, linked but not granted (`section`:
    /// the manifest section that would grant it): counted, audited and charged
    /// to `spec.limits.maxDenials`. Ok: the message for the guest; Err: the
    /// denial budget is spent and the invocation ends.
    pub fn deny_ungranted(
        &mut self,
        kind: Kind,
        action: &str,
        section: &str,
    ) -> Result<String, crate::audit::DenialLimitExceeded> {
        self.ungranted.record(kind);
        let why = format!("{section} is not granted");
        self.audit.deny(kind, action, "-", &why)?;
        Ok(why)
    }
}

/// What a capability's host functions reach: its own state and the core.
pub struct View<'a, C: Capability> {
    /// The capability's per-invocation state.
    pub state: &'a mut C::State,
    /// The store's core.
    pub core: &'a mut Core,
}

/// A store type whose data holds capability `C`'s state: the only way a
/// capability's host functions reach the store.
pub trait HasCapability<C: Capability>: Send + 'static {
    /// `C`'s state and the core.
    fn capability(&mut self) -> View<'_, C>;
}

/// The store data the runtime defines: a core and every capability's state.
pub trait StoreData: Send + 'static {
    /// The core and the capabilities' states.
    fn parts(&mut self) -> (&mut Core, &mut super::States);
}
