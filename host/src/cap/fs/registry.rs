//! Every mount the host currently serves, so that no writable mount contains
//! another mount's directory, across agents and within one.
//!
//! A guest can rename anything inside a read-write mount. If that mount
//! contains another mount's directory (the same agent's `data/config`, or
//! another agent's), the guest could replace that directory with content of
//! its choosing or, before mounts were held open, with a symlink to anywhere.
//! So a mount is refused at load when a writable mount strictly contains it,
//! or when it is writable and strictly contains another. Identical
//! directories do not conflict: a preopen's root cannot be renamed through
//! itself, so an agent reloading the same mounts (a spec update in pod mode,
//! while the outgoing spec is still registered) never blocks itself.
//!
//! An agent registers its mounts when it is prepared and leaves the registry
//! when its [`MountLease`] (held by the prepared agent) is dropped, i.e. when
//! the last invocation of that spec has finished.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::Mount;
use crate::cap::ConfigureError;

/// The mounts of every agent the host currently serves (owned by the Runtime).
#[derive(Debug, Default)]
pub struct MountRegistry {
    entries: Mutex<Vec<Entry>>,
    next_lease: std::sync::atomic::AtomicU64,
}

#[derive(Clone, Debug)]
struct Entry {
    lease: u64,
    agent: String,
    index: usize,
    host_path: PathBuf,
    writable: bool,
}

impl Entry {
    /// Whether `self` is writable and strictly contains `other`'s directory.
    fn writably_contains(&self, other: &Entry) -> bool {
        self.writable
            && other.host_path != self.host_path
            && other.host_path.starts_with(&self.host_path)
    }

    fn describe(&self) -> String {
        format!(
            "{} (agent {}, spec.capabilities.filesystem[{}], {})",
            self.host_path.display(),
            self.agent,
            self.index,
            if self.writable {
                "read-write"
            } else {
                "read-only"
            }
        )
    }
}

/// An agent's place in the [`MountRegistry`]; its mounts leave it on drop.
#[derive(Debug)]
pub struct MountLease {
    registry: Arc<MountRegistry>,
    id: u64,
}

impl Drop for MountLease {
    fn drop(&mut self) {
        let mut entries = self.registry.lock();
        entries.retain(|e| e.lease != self.id);
    }
}

impl MountRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `agent`'s mounts, or refuses (registering nothing) the first
    /// one that a writable mount contains or that, writable, contains another:
    /// among `mounts` themselves and against every registered mount.
    pub fn register(
        self: &Arc<Self>,
        agent: &str,
        mounts: &[Mount],
    ) -> Result<MountLease, ConfigureError> {
        let id = self
            .next_lease
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let new: Vec<Entry> = mounts
            .iter()
            .enumerate()
            .map(|(index, m)| Entry {
                lease: id,
                agent: agent.to_string(),
                index,
                host_path: m.host_path.clone(),
                writable: !m.read_only,
            })
            .collect();
        let mut entries = self.lock();
        for mount in &new {
            let others = new
                .iter()
                .filter(|o| o.index != mount.index)
                .chain(entries.iter());
            for other in others {
                let message = if other.writably_contains(mount) {
                    format!(
                        "{} is inside the writable mount {}; a writable mount must not contain \
                         another mount's directory (the guest could swap it), so mount disjoint \
                         directories",
                        mount.host_path.display(),
                        other.describe()
                    )
                } else if mount.writably_contains(other) {
                    format!(
                        "{} is writable and contains the mount {}; a writable mount must not \
                         contain another mount's directory (the guest could swap it), so mount \
                         disjoint directories or make this one read-only",
                        mount.host_path.display(),
                        other.describe()
                    )
                } else {
                    continue;
                };
                let field = format!("spec.capabilities.filesystem[{}].hostPath", mount.index);
                return Err(ConfigureError::new(field, message));
            }
        }
        entries.extend(new);
        Ok(MountLease {
            registry: self.clone(),
            id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(path: &str, read_only: bool) -> Mount {
        Mount {
            host_path: PathBuf::from(path),
            guest_path: "/g".into(),
            read_only,
        }
    }

    #[test]
    fn a_writable_mount_containing_another_of_the_same_agent_is_refused() {
        let registry = Arc::new(MountRegistry::default());
        let err = registry
            .register(
                "ns/a",
                &[mount("/srv/data", false), mount("/srv/data/config", true)],
            )
            .unwrap_err();
        assert_eq!(err.field, "spec.capabilities.filesystem[0].hostPath");
        assert!(
            err.message
                .contains("/srv/data/config (agent ns/a, spec.capabilities.filesystem[1]"),
            "{}",
            err.message
        );
        assert!(registry.lock().is_empty(), "nothing registered on refusal");
    }

    #[test]
    fn nested_mounts_of_two_agents_conflict_when_the_outer_one_is_writable() {
        let registry = Arc::new(MountRegistry::default());
        let _a = registry
            .register("ns/a", &[mount("/srv/data/b", true)])
            .unwrap();
        let err = registry
            .register("ns/b", &[mount("/srv/data", false)])
            .unwrap_err();
        assert_eq!(err.field, "spec.capabilities.filesystem[0].hostPath");
        assert!(err.message.contains("agent ns/a"), "{}", err.message);
        let _w = registry
            .register("ns/w", &[mount("/srv/w", false)])
            .unwrap();
        let err = registry
            .register("ns/c", &[mount("/srv/w/x", true)])
            .unwrap_err();
        assert!(
            err.message
                .contains("/srv/w/x is inside the writable mount /srv/w (agent ns/w"),
            "{}",
            err.message
        );
        // Read-only nesting cannot swap anything.
        let _c = registry
            .register("ns/c", &[mount("/srv", true), mount("/srv/data/b/c", true)])
            .unwrap();
    }

    #[test]
    fn identical_and_sibling_mounts_do_not_conflict_and_a_dropped_lease_leaves() {
        let registry = Arc::new(MountRegistry::default());
        let old = registry
            .register("ns/a", &[mount("/srv/data", false)])
            .unwrap();
        // The same agent's next spec, loaded while the outgoing one still serves.
        let new = registry
            .register(
                "ns/a",
                &[mount("/srv/data", false), mount("/srv/data", true)],
            )
            .unwrap();
        let _sibling = registry
            .register("ns/b", &[mount("/srv/data2", false)])
            .unwrap();
        assert!(registry
            .register("ns/c", &[mount("/srv/data/x", true)])
            .is_err());
        drop(old);
        assert!(
            registry
                .register("ns/c", &[mount("/srv/data/x", true)])
                .is_err(),
            "new still holds it"
        );
        drop(new);
        let _c = registry
            .register("ns/c", &[mount("/srv/data/x", true)])
            .unwrap();
    }
}
