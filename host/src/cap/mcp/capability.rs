//! The `mcp` capability: remote MCP tools called by the host on the agent's
//! behalf, under the grant's tool lists and budgets; credentials never enter
//! the guest.

use std::sync::Arc;

use serde::Serialize;
use wasmtime::component::Linker;

use super::host::{HasMcp, McpSession, McpView};
use super::McpGrant;
use crate::cap::imports::Binding;
use crate::cap::tool_call::ToolCall;
use crate::cap::{
    Capability, CommitIntent, ConfigureCx, ConfigureError, HasCapability, Kind, PrepareCx,
};
use crate::config::HostConfig;
use crate::manifest::Limits;

/// The `mcp` capability.
pub struct Mcp;

/// What one invocation did with MCP tools.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct McpUsage {
    /// Tool calls sent.
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub mcp_calls: u32,
    /// Lists and calls refused (not granted, over budget, invalid arguments).
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub mcp_denied: u32,
    /// Bytes the servers sent.
    #[serde(skip_serializing_if = "is_zero")]
    pub mcp_response_bytes: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

impl Capability for Mcp {
    const KIND: Kind = Kind::Mcp;
    const INTERFACES: &'static [&'static str] = &["agent-host:agent/tools"];
    type Host = ();
    type Grant = Option<Arc<McpGrant>>;
    type State = Option<McpSession>;
    type Usage = McpUsage;

    fn host(_: &HostConfig) {}

    fn link<T: HasCapability<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        crate::bindings::agent_host::agent::tools::add_to_linker::<T, HasMcp>(linker, |s| {
            let v = s.capability();
            v.core.calls.record(Kind::Mcp);
            McpView(v.state.as_mut(), v.core)
        })
    }

    fn configure(_: &(), cx: &ConfigureCx<'_>) -> Result<Self::Grant, ConfigureError> {
        Ok(McpGrant::configure(&cx.agent.spec.capabilities.mcp, cx.secrets_dir)?.map(Arc::new))
    }

    fn secrets(grant: &Self::Grant) -> Vec<String> {
        grant
            .as_ref()
            .map(|g| g.secrets().to_vec())
            .unwrap_or_default()
    }

    fn prepare(_: &(), grant: &Self::Grant, cx: &mut PrepareCx<'_>) -> Self::State {
        grant
            .as_ref()
            .map(|g| McpSession::new(g.clone(), cx.deadline, cx.audit.clone()))
    }

    async fn finish(
        state: Self::State,
        usage: &mut McpUsage,
        tool_calls: &mut Vec<ToolCall>,
    ) -> Option<CommitIntent> {
        let mut session = state?;
        usage.mcp_calls = session.calls;
        usage.mcp_denied = session.denied;
        usage.mcp_response_bytes = session.response_bytes();
        tool_calls.append(&mut session.records);
        session.close();
        None
    }

    fn bind(_: &str, grant: &Self::Grant, _: &Limits) -> Binding {
        match grant {
            None => Binding::denied(
                Kind::Mcp,
                "MCP tools are not granted; declare spec.capabilities.mcp",
            ),
            Some(g) => Binding::granted(Kind::Mcp, g.describe().join("; ")),
        }
    }

    fn describe(grant: &Self::Grant) -> Vec<String> {
        grant.iter().flat_map(|g| g.describe()).collect()
    }

    fn denials(usage: &McpUsage) -> u64 {
        u64::from(usage.mcp_denied)
    }

    fn report(grant: &Self::Grant, usage: &McpUsage, _: &Limits) -> Option<String> {
        grant.as_ref()?;
        Some(format!(
            "{} calls, {} bytes received, {} denied",
            usage.mcp_calls, usage.mcp_response_bytes, usage.mcp_denied
        ))
    }
}
