//! Hostile agents and callers against a real `serve` process: store (issue 12).
