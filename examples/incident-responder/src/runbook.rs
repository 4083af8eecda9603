//! Reading the alert's runbook from the read-only `/runbooks` mount.

use std::{fs, io};

use agent_host_guest::{log, AgentError};

/// Where the manifest mounts the runbooks directory.
const RUNBOOKS: &str = "/runbooks";

/// A runbook that was found.
pub struct Runbook {
    /// The file actually read.
    pub path: String,
    /// Its first non-empty line without the Markdown heading marks.
    pub title: String,
}

/// Reads `/runbooks/<alert>.md`, falling back to `/runbooks/default.md`.
pub fn read(alert: &str) -> Result<Runbook, AgentError> {
    if fs::metadata(RUNBOOKS).is_err() {
        return Err(AgentError::CapabilityDenied(format!(
            "{RUNBOOKS} is not mounted: declare it in spec.capabilities.filesystem"
        )));
    }
    let specific = format!("{RUNBOOKS}/{alert}.md");
    let (path, text) = match fs::read_to_string(&specific) {
        Ok(text) => (specific, text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            log::warn(&format!("no runbook {specific}, using the default one"));
            let default = format!("{RUNBOOKS}/default.md");
            let text = fs::read_to_string(&default).map_err(|e| unreadable(&default, e))?;
            (default, text)
        }
        Err(e) => return Err(unreadable(&specific, e)),
    };
    let title = text
        .lines()
        .map(|l| l.trim_start_matches('#').trim())
        .find(|l| !l.is_empty())
        .unwrap_or_default()
        .to_owned();
    Ok(Runbook { path, title })
}

fn unreadable(path: &str, e: io::Error) -> AgentError {
    AgentError::Upstream(format!("cannot read runbook {path}: {e}"))
}
