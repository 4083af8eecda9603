//! Structured, levelled log records sent to the host's log stream.
//!
//! The host tags every record with the agent's name and the invocation id, and
//! bounds the number and size of records per invocation (records past the
//! bound are dropped and counted). Plain `println!`/`eprintln!` output is
//! captured too, but without levels or fields.

use crate::bindings::agent_host::agent::log as wit;

/// Severity of a record, lowest first (generated from WIT `log.level`).
pub use wit::Level;

/// Emits one record at `level` with structured key/value `fields`.
///
/// ```no_run
/// use agent_host_guest::log;
/// log::record(log::Level::Warn, "retrying", &[("attempt", "2"), ("service", "checkout")]);
/// ```
pub fn record(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    wit::log(level, message, &fields);
}

/// Emits a [`Level::Debug`] record without fields.
pub fn debug(message: &str) {
    record(Level::Debug, message, &[]);
}

/// Emits a [`Level::Info`] record without fields.
pub fn info(message: &str) {
    record(Level::Info, message, &[]);
}

/// Emits a [`Level::Warn`] record without fields.
pub fn warn(message: &str) {
    record(Level::Warn, message, &[]);
}

/// Emits a [`Level::Error`] record without fields.
pub fn error(message: &str) {
    record(Level::Error, message, &[]);
}
