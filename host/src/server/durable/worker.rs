//! The worker side of durable invocations: each replica claims its agents'
//! work while it has free slots, runs it under a renewed lease, and ends it
//! with one fenced write of the result and the key-value changes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{encode_result, Durable, Meta, MAX_IDLE_POLL, MIN_IDLE_POLL, STORE_RETRY};
use crate::cap::key_value::KeyValueCommit;
use crate::cap::CommitIntent;
use crate::runtime::{Invocation, InvocationError, PreparedAgent, TaskInput};
use crate::server::api::{finished, record_end};
use crate::server::{Hosted, Shared};
use crate::state_store::{Claim, Completed, InvocationId, Outcome, State, StoreError};

/// Pause before work that found no instance slot is handed back.
const CAPACITY_BACKOFF: Duration = Duration::from_millis(50);

/// How often queue depth (and the store's reachability) is read.
const DEPTH_EVERY: Duration = Duration::from_secs(1);

/// Claims the agent's durable work while it has a free slot, until SIGTERM.
/// The slot is taken only once a claim brought work: a slot held for the
/// claim's round trip would turn away in-memory requests that had room.
/// `claiming` counts the agent's claims in flight, at most its free slots.
pub(crate) async fn claim_loop(
    s: Arc<Shared>,
    d: Arc<Durable>,
    hosted: Arc<Hosted>,
    claiming: Arc<AtomicUsize>,
) {
    let mut idle = MIN_IDLE_POLL;
    loop {
        let Some(agent) = hosted.current() else {
            if pause(&d, STORE_RETRY).await {
                return;
            }
            continue;
        };
        let free = hosted.permits.available_permits();
        let room = claiming.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
            (c < free).then_some(c + 1)
        });
        if room.is_err() {
            if pause(&d, idle).await {
                return;
            }
            idle = (idle * 2).min(MAX_IDLE_POLL);
            continue;
        }
        let claimed = d.store.claim(&agent.scope(), &d.replica, d.lease).await;
        d.observe(&claimed);
        let permit = hosted.permits.clone().try_acquire_owned();
        claiming.fetch_sub(1, Ordering::SeqCst);
        match claimed {
            Ok(Some(claim)) => {
                idle = MIN_IDLE_POLL;
                s.metrics
                    .claimed(&hosted.name, claim.reclaimed, claim.attempt);
                if claim.reclaimed {
                    tracing::warn!(invocation = %claim.id, attempt = claim.attempt, "reclaimed: the previous attempt's lease expired");
                }
                let Ok(permit) = permit else {
                    // A synchronous request took the slot meanwhile: the work
                    // goes back to its place for the next free slot.
                    if let Err(e) = d.store.release(&claim.id, claim.fence).await {
                        tracing::warn!(invocation = %claim.id, error = %e, "release failed: the lease will expire");
                    }
                    continue;
                };
                s.tasks.spawn(run(
                    s.clone(),
                    d.clone(),
                    hosted.clone(),
                    agent,
                    claim,
                    permit.into(),
                    None,
                ));
            }
            Ok(None) => {
                drop(permit);
                if pause(&d, idle).await {
                    return;
                }
                idle = (idle * 2).min(MAX_IDLE_POLL);
            }
            Err(e) => {
                drop(permit);
                tracing::warn!(agent = %hosted.name, error = %e, "claim failed");
                if pause(&d, STORE_RETRY).await {
                    return;
                }
            }
        }
    }
}

/// Sleeps `for_` or until a local submit or end; whether claiming has stopped.
async fn pause(d: &Durable, for_: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(for_) => false,
        () = d.submitted.notified() => false,
        () = d.stop_claiming.cancelled() => true,
    }
}

/// Reads the agent's queue depth into its gauge every second; a failure
/// marks the store unreachable (readiness false) until it answers again.
pub(crate) async fn depth_loop(s: Arc<Shared>, d: Arc<Durable>, hosted: Arc<Hosted>) {
    loop {
        if let Some(agent) = hosted.current() {
            let depth = d.store.depth(&agent.scope()).await;
            d.observe(&depth);
            if let Ok(depth) = depth {
                s.metrics
                    .store_depth(&hosted.name, depth.queued + depth.running);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(DEPTH_EVERY) => {}
            () = d.stop_claiming.cancelled() => return,
        }
    }
}

/// How a local attempt stopped.
enum Stopped {
    Ran(Box<Invocation>, Vec<CommitIntent>),
    /// Cancelled by a caller: the store already says so.
    Cancelled,
    /// A renewal was refused: another attempt owns it now.
    LeaseLost,
    /// The grace period after SIGTERM ended.
    Shutdown,
}

/// Runs a claimed invocation and completes it in the store. `reply`, for a
/// request waiting on this replica, gets the response once it is written
/// (dropped unsent otherwise: the waiter then reads the store).
pub(super) async fn run(
    s: Arc<Shared>,
    d: Arc<Durable>,
    hosted: Arc<Hosted>,
    agent: Arc<PreparedAgent>,
    claim: Claim,
    slot: crate::runtime::Slot,
    reply: Option<Reply>,
) {
    let Claim {
        id,
        input,
        metadata,
        fence,
        ..
    } = claim;
    let stop = CancellationToken::new();
    d.running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id.to_string(), stop.clone());
    let meta: Meta = serde_json::from_slice(&metadata).unwrap_or_default();
    let task = TaskInput {
        id: Some(id.to_string()),
        input: String::from_utf8_lossy(&input).into_owned(),
        metadata: meta.metadata,
    };
    hosted.in_flight_gauge.inc();
    let stopped = tokio::select! {
        (inv, intents) = agent.invoke_for_commit(slot, task) => Stopped::Ran(Box::new(inv), intents),
        () = stop.cancelled() => Stopped::Cancelled,
        () = renew_until_lost(&d, &id, fence) => Stopped::LeaseLost,
        () = s.cancel.cancelled() => Stopped::Shutdown,
    };
    hosted.in_flight_gauge.dec();
    d.running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(id.as_str());
    match stopped {
        // The host had no instance slot free: not the invocation's outcome.
        // Accepted work is handed back for a slot (here or on another
        // replica) instead of failing the caller.
        Stopped::Ran(inv, _) if matches!(inv.result, Err(InvocationError::Capacity { .. })) => {
            tracing::warn!(invocation = %id, "no instance slot free: handed back to the queue");
            tokio::time::sleep(CAPACITY_BACKOFF).await;
            if let Err(e) = d.store.release(&id, fence).await {
                tracing::warn!(invocation = %id, error = %e, "release failed: the lease will expire");
            }
        }
        // The store failed under a key-value call (nothing was committed):
        // not the agent's outcome either; the work runs again once the store
        // answers.
        Stopped::Ran(inv, _)
            if matches!(
                inv.result,
                Err(InvocationError::KeyValue {
                    error: crate::cap::key_value::KeyValueError::Backend(_)
                })
            ) =>
        {
            tracing::warn!(invocation = %id, "the store failed under a key-value call: handed back to the queue");
            tokio::time::sleep(CAPACITY_BACKOFF).await;
            if let Err(e) = d.store.release(&id, fence).await {
                tracing::warn!(invocation = %id, error = %e, "release failed: the lease will expire");
            }
        }
        Stopped::Ran(inv, intents) => {
            let written = complete(&s, &d, &hosted, &id, fence, *inv, intents).await;
            if let (Some(reply), true) = (reply, written) {
                let _ = reply.send(());
            }
        }
        Stopped::Cancelled => tracing::info!(invocation = %id, "cancelled by a caller: stopped"),
        Stopped::LeaseLost => {
            s.metrics.fenced(&hosted.name);
            tracing::warn!(invocation = %id, "lease lost (taken over or cancelled): stopped, nothing committed");
        }
        Stopped::Shutdown => match d.store.release(&id, fence).await {
            Ok(Ok(())) => {
                tracing::info!(invocation = %id, "grace period over: released for another replica")
            }
            Ok(Err(_)) => tracing::warn!(invocation = %id, "grace period over: already fenced"),
            // Its lease expires instead; another replica reclaims it.
            Err(e) => {
                tracing::warn!(invocation = %id, error = %e, "release failed: the lease will expire")
            }
        },
    }
    d.ended.send_modify(|n| *n = n.wrapping_add(1));
    // A slot is free: the claim loop looks at once.
    d.submitted.notify_waiters();
}

/// Renews the lease every third of it; returns once a renewal is refused.
/// Store failures are retried: if the lease expires meanwhile, the commit
/// is fenced.
async fn renew_until_lost(d: &Durable, id: &InvocationId, fence: u64) {
    loop {
        tokio::time::sleep(d.lease / 3).await;
        let renewed = d.store.renew(id, fence, d.lease).await;
        d.observe(&renewed);
        match renewed {
            Ok(Ok(())) => {}
            Ok(Err(_fenced)) => return,
            Err(e) => tracing::warn!(invocation = %id, error = %e, "lease renewal failed"),
        }
    }
}

/// Whether `id` ended with a result and this replica ran its last attempt.
async fn ended_here(d: &Durable, id: &InvocationId) -> bool {
    matches!(
        d.store.get(id).await,
        Ok(Some(r)) if matches!(r.state, State::Succeeded | State::Failed)
            && r.attempts.last().is_some_and(|a| a.replica == d.replica)
    )
}

/// Told when an invocation run here has its result written, for the
/// request waiting on it (dropped unsent when nothing was written).
pub(super) type Reply = tokio::sync::oneshot::Sender<()>;

/// Writes the result and the key-value changes in one fenced step; whether
/// it was written (not when fenced or left for a re-run).
async fn complete(
    s: &Shared,
    d: &Durable,
    hosted: &Hosted,
    id: &InvocationId,
    fence: u64,
    mut inv: Invocation,
    intents: Vec<CommitIntent>,
) -> bool {
    let mut kv = intents.into_iter().find_map(|i| match i {
        CommitIntent::KeyValue(txn) => txn.into_intent(),
    });
    let give_up = Instant::now() + d.lease;
    let mut retried = false;
    loop {
        if kv.is_some() {
            inv.usage.caps.key_value.key_value = Some(KeyValueCommit::Committed);
        }
        let f = finished(&inv);
        let outcome = Outcome {
            state: if inv.result.is_ok() {
                State::Succeeded
            } else {
                State::Failed
            },
            result: encode_result(f.status, &f.body),
        };
        let completed = d.store.complete(id, fence, outcome, kv.clone()).await;
        d.observe(&completed);
        match completed {
            Ok(Completed::Completed) => break,
            // A retry after a lost reply finds its own earlier write.
            Ok(Completed::Fenced) if retried && ended_here(d, id).await => break,
            Ok(Completed::Fenced) => {
                s.metrics.fenced(&hosted.name);
                tracing::warn!(invocation = %id, "result refused: this attempt no longer owns the invocation (fenced); discarded");
                return false;
            }
            Ok(Completed::KeyValueConflict(error)) => {
                inv.usage.caps.key_value.key_value = Some(KeyValueCommit::NotCommitted);
                inv.result = Err(InvocationError::KeyValue { error });
                kv = None;
            }
            // A result the store cannot keep (an output that grew past the
            // store's limit in its JSON envelope) fails the invocation
            // instead of being re-run for ever.
            Err(StoreError::TooLarge { len, limit, .. }) => {
                inv.usage.caps.key_value.key_value =
                    kv.take().map(|_| KeyValueCommit::NotCommitted);
                inv.result = Err(InvocationError::OutputTooLarge {
                    size: len as u64,
                    limit: limit as u64,
                });
            }
            Err(e) if Instant::now() < give_up => {
                tracing::warn!(invocation = %id, error = %e, "completing failed: retrying");
                retried = true;
                tokio::time::sleep(STORE_RETRY).await;
            }
            // The lease expires; another replica re-runs it and commits once.
            Err(e) => {
                tracing::error!(invocation = %id, error = %e, "completing failed until the lease ran out: left for a re-run");
                return false;
            }
        }
    }
    record_end(s, hosted, &inv);
    true
}
