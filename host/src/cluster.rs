//! Pod mode: the host follows its own `Agent` resource through the Kubernetes
//! API (`agent-host serve --agent NAME`).
//!
//! * A watcher on that one object (field selector by name) applies every spec
//!   change to the next invocation: the new component is compiled and the new
//!   grants configured before they replace the old; invocations already running
//!   finish under what they started with.
//! * Fail closed: a deleted, missing or invalid resource withdraws the agent
//!   (503, readiness false); it never falls back to an older, broader spec. An
//!   unreachable API server changes nothing: the last good spec keeps serving
//!   while the watcher retries with backoff.
//! * Components from registries are pulled and verified on spec change (a
//!   new digest is a rollout). A pull or verification that fails while a
//!   component is serving keeps that component serving: the status and a
//!   Warning event say why, and the pull is retried.
//! * Status (`observedGeneration`, conditions, digest, imports, effective
//!   grants) is merge-patched only when it changes; capability denials and
//!   budget breaches become at most one Warning event per kind per interval.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt as _;
use kube::{Api, Client, Resource as _};
use tokio_util::sync::CancellationToken;

use crate::cap::imports::Binding;
use crate::manifest::{Agent, AgentStatus, LoadedAgent};
use crate::oci::{ImageError, Puller};
use crate::runtime::{LoadError, PreparedAgent, Runtime};
use crate::server::AgentHandle;

/// How the host follows its resource.
#[derive(Clone, Debug)]
pub struct FollowConfig {
    /// Namespace of the Agent (the pod's own).
    pub namespace: String,
    /// Name of the Agent.
    pub name: String,
    /// Events are aggregated over this interval.
    pub event_interval: Duration,
    /// Reported as the event source instance (the pod name).
    pub instance: Option<String>,
}

/// How often a failed pull is tried again while the spec stays the same.
const PULL_RETRY: Duration = Duration::from_secs(10);

/// Follows the Agent until `stop` is cancelled.
pub async fn follow(
    client: Client,
    config: FollowConfig,
    runtime: Arc<Runtime>,
    puller: Puller,
    handle: AgentHandle,
    stop: CancellationToken,
) {
    let api: Api<Agent> = Api::namespaced(client.clone(), &config.namespace);
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: "agent-host".into(),
            instance: config.instance.clone(),
        },
    );
    let mut follower = Follower {
        api: api.clone(),
        name: config.name.clone(),
        runtime,
        puller,
        handle,
        applied: None,
        status: None,
        last_object: None,
        retry: None,
        failed_image: None,
        recorder,
    };
    let selector = format!("metadata.name={}", config.name);
    let mut stream = watcher::watcher(api, watcher::Config::default().fields(&selector))
        .default_backoff()
        .boxed();
    let mut seen_in_init = false;
    let mut tick = tokio::time::interval(config.event_interval);
    tick.tick().await;
    loop {
        let retry_at = follower.retry.as_ref().map(|(_, at)| *at);
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => follower.publish_activity().await,
            () = async { tokio::time::sleep_until(retry_at.expect("guarded")).await }, if retry_at.is_some() => {
                if let Some((agent, _)) = follower.retry.take() {
                    follower.failed_image = None;
                    follower.apply(agent).await;
                }
            }
            event = stream.next() => match event {
                None => break,
                Some(Ok(Event::Init)) => seen_in_init = false,
                Some(Ok(Event::InitApply(agent) | Event::Apply(agent))) => {
                    seen_in_init = true;
                    follower.apply(agent).await;
                }
                Some(Ok(Event::InitDone)) => {
                    if !seen_in_init {
                        follower.withdraw("the Agent resource does not exist");
                    }
                }
                Some(Ok(Event::Delete(_))) => follower.withdraw("the Agent resource was deleted"),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, agent = %config.name, "watching the Agent failed; serving the last good spec and retrying");
                }
            },
        }
    }
}

struct Follower {
    api: Api<Agent>,
    name: String,
    runtime: Arc<Runtime>,
    puller: Puller,
    handle: AgentHandle,
    /// A spec whose component could not be pulled, tried again on a timer.
    retry: Option<(Agent, tokio::time::Instant)>,
    /// Generation and spec whose component was last refused: our own status
    /// patches come back as modifications and must not pull it again.
    failed_image: Option<(Option<i64>, crate::manifest::AgentSpec)>,
    recorder: Recorder,
    /// Generation and spec now serving.
    applied: Option<(Option<i64>, crate::manifest::AgentSpec)>,
    /// Status last written.
    status: Option<AgentStatus>,
    last_object: Option<Agent>,
}

impl Follower {
    async fn apply(&mut self, agent: Agent) {
        let generation = agent.metadata.generation;
        if let Some((g, spec)) = &self.applied {
            // Our own status patches come back as modifications: nothing to do.
            if *g == generation && *spec == agent.spec {
                return;
            }
        }
        if let Some((g, spec)) = &self.failed_image {
            if *g == generation && *spec == agent.spec {
                return;
            }
        }
        self.failed_image = None;
        self.last_object = Some(agent.clone());
        self.retry = None;
        let mut loaded = match LoadedAgent::from_cluster(agent.clone()) {
            Ok(loaded) => loaded,
            Err(e) => {
                self.fail(&agent, "InvalidSpec", &e.to_string(), false)
                    .await;
                return;
            }
        };
        if let Err(e) = self.puller.resolve(&mut loaded).await {
            self.failed_image = Some((generation, agent.spec.clone()));
            self.image_failed(&agent, &e).await;
            return;
        }
        let runtime = self.runtime.clone();
        // Compiling is CPU work: off the async workers.
        let prepared =
            tokio::task::spawn_blocking(move || runtime.prepare(&loaded).map(|p| (p, loaded)))
                .await;
        match prepared {
            Ok(Ok((prepared, loaded))) => {
                let status = ready_status(&agent, &loaded, &prepared);
                tracing::info!(agent = %self.name, generation, digest = %prepared.digest, "serving the Agent's spec");
                self.handle.serve(prepared);
                self.applied = Some((generation, agent.spec.clone()));
                self.write_status(status).await;
            }
            Ok(Err(e)) => {
                let (reason, capabilities) = match &e {
                    LoadError::Configure { .. } => ("GrantFailed", true),
                    LoadError::UngrantedImports { .. } => ("UngrantedImports", true),
                    LoadError::Manifest(_) | LoadError::CallersUnenforceable { .. } => {
                        ("InvalidSpec", false)
                    }
                    _ => ("ComponentLoadFailed", false),
                };
                self.fail(&agent, reason, &e.to_string(), capabilities)
                    .await;
            }
            Err(join) => {
                self.fail(&agent, "HostError", &join.to_string(), false)
                    .await
            }
        }
    }

    /// A component that could not be pulled or verified: the one serving (if
    /// any) keeps serving, the status and an event say why, and a registry
    /// that was unreachable is tried again.
    async fn image_failed(&mut self, agent: &Agent, error: &ImageError) {
        let message = error.to_string();
        if error.registry_down() {
            self.retry = Some((agent.clone(), tokio::time::Instant::now() + PULL_RETRY));
        }
        let Some(serving) = self.status.clone().filter(|_| self.applied.is_some()) else {
            self.fail(agent, error.reason(), &message, false).await;
            return;
        };
        tracing::warn!(agent = %self.name, error = %message, "the new component was not loaded; the last good one keeps serving");
        let generation = agent.metadata.generation;
        let kept = format!(
            "{message}; still serving {}",
            serving
                .component_image
                .as_deref()
                .or(serving.component_digest.as_deref())
                .unwrap_or("the last good component")
        );
        let mut status = serving;
        status.observed_generation = generation;
        status.conditions = vec![
            condition("Ready", true, "ServingPrevious", &kept, generation),
            condition(
                "ComponentLoaded",
                false,
                error.reason(),
                &message,
                generation,
            ),
            condition(
                "CapabilitiesGranted",
                true,
                "Granted",
                "the serving component's grants are unchanged",
                generation,
            ),
        ];
        self.write_status(status).await;
        if let Some(object) = &self.last_object {
            let event = KubeEvent {
                type_: EventType::Warning,
                reason: error.reason().into(),
                note: Some(kept.chars().take(1024).collect()),
                action: "Pull".into(),
                secondary: None,
            };
            if let Err(e) = self.recorder.publish(&event, &object.object_ref(&())).await {
                tracing::warn!(agent = %self.name, error = %e, "could not publish an event");
            }
        }
    }

    fn withdraw(&mut self, reason: &str) {
        tracing::warn!(agent = %self.name, reason, "withdrawing the agent: it takes no work");
        self.handle.withdraw(reason);
        self.applied = None;
    }

    /// A spec that cannot be served withdraws the agent: nothing runs under a
    /// spec that is not the resource's current one.
    async fn fail(&mut self, agent: &Agent, reason: &str, message: &str, capabilities: bool) {
        self.withdraw(message);
        let generation = agent.metadata.generation;
        let component = if capabilities {
            condition(
                "ComponentLoaded",
                true,
                "Loaded",
                "the component compiled",
                generation,
            )
        } else {
            condition("ComponentLoaded", false, reason, message, generation)
        };
        let granted = if capabilities {
            condition("CapabilitiesGranted", false, reason, message, generation)
        } else {
            condition(
                "CapabilitiesGranted",
                false,
                "NotLoaded",
                "the spec was not loaded",
                generation,
            )
        };
        let status = AgentStatus {
            observed_generation: generation,
            conditions: vec![
                condition("Ready", false, reason, message, generation),
                component,
                granted,
            ],
            ..AgentStatus::default()
        };
        self.write_status(status).await;
    }

    /// Merge-patches the status when it differs from the last one written,
    /// keeping each condition's transition time while its status holds.
    async fn write_status(&mut self, mut status: AgentStatus) {
        if let Some(old) = &self.status {
            for c in &mut status.conditions {
                if let Some(prev) = old.conditions.iter().find(|p| p.type_ == c.type_) {
                    if prev.status == c.status {
                        c.last_transition_time = prev.last_transition_time.clone();
                    }
                }
            }
            if *old == status {
                return;
            }
        }
        let patch = serde_json::json!({ "status": status });
        match self
            .api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => self.status = Some(status),
            Err(e) => {
                tracing::warn!(agent = %self.name, error = %e, "could not write the Agent's status")
            }
        }
    }

    /// One Warning event per kind (denials, breaches) per interval, whatever
    /// the agent does: a hostile agent cannot flood the API server.
    async fn publish_activity(&self) {
        let recorder = &self.recorder;
        let activity = self.handle.take_activity();
        let Some(agent) = &self.last_object else {
            return;
        };
        let reference = agent.object_ref(&());
        let mut events = Vec::new();
        if let Some((total, by)) = summarise(&activity.denials) {
            events.push((
                "CapabilityDenied",
                format!("{total} capability uses denied ({by})"),
            ));
        }
        if let Some((total, by)) = summarise(&activity.breaches) {
            events.push((
                "BudgetExceeded",
                format!("{total} invocations ended on a limit ({by})"),
            ));
        }
        for (reason, note) in events {
            let event = KubeEvent {
                type_: EventType::Warning,
                reason: reason.into(),
                note: Some(note),
                action: "Invoke".into(),
                secondary: None,
            };
            if let Err(e) = recorder.publish(&event, &reference).await {
                tracing::warn!(agent = %self.name, error = %e, reason, "could not publish an event");
            }
        }
    }
}

/// Total and `kind: n, ...` of a tally; `None` when it is empty.
fn summarise<K: std::fmt::Display>(
    counts: &std::collections::BTreeMap<K, u64>,
) -> Option<(u64, String)> {
    if counts.is_empty() {
        return None;
    }
    let by: Vec<String> = counts.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    Some((counts.values().sum(), by.join(", ")))
}

fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        // The API caps messages at 32768 bytes.
        message: message.chars().take(4096).collect(),
        observed_generation: generation,
        last_transition_time: Time(jiff::Timestamp::now()),
    }
}

fn ready_status(agent: &Agent, loaded: &LoadedAgent, prepared: &PreparedAgent) -> AgentStatus {
    let generation = agent.metadata.generation;
    let imports = prepared
        .imports
        .iter()
        .map(|b| match &b.binding {
            Binding::Refused { reason } => format!("{}: refused ({reason})", b.import),
            other => format!("{}: {}", b.import, binding_name(other)),
        })
        .collect();
    AgentStatus {
        observed_generation: generation,
        conditions: vec![
            condition(
                "Ready",
                true,
                "Serving",
                "the agent takes invocations",
                generation,
            ),
            condition(
                "ComponentLoaded",
                true,
                "Loaded",
                &match &loaded.image {
                    Some(image) => format!(
                        "compiled {} (signer {})",
                        image.reference,
                        image.signer.as_deref().unwrap_or("none: unsigned allowed")
                    ),
                    None => format!("compiled {}", loaded.component_path.display()),
                },
                generation,
            ),
            condition(
                "CapabilitiesGranted",
                true,
                "Granted",
                "every import is bound to a grant, to nothing, or denied at every call",
                generation,
            ),
        ],
        component_digest: Some(format!("sha256:{}", prepared.digest)),
        component_image: loaded.image.as_ref().map(|i| i.reference.clone()),
        signer: loaded.image.as_ref().and_then(|i| i.signer.clone()),
        imports,
        effective_grants: prepared.grants().describe(),
    }
}

fn binding_name(b: &Binding) -> String {
    match b {
        Binding::Granted { capability, detail } => {
            format!("granted ({}: {detail})", capability.as_str())
        }
        Binding::Inert { detail } => format!("inert ({detail})"),
        Binding::Denied { reason, .. } => format!("not granted: every call denied ({reason})"),
        Binding::Refused { reason } => format!("refused ({reason})"),
    }
}
