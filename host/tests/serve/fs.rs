//! Hostile agents and callers against a real `serve` process: fs (issue 12).
