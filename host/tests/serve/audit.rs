//! Hostile agents and callers against a real `serve` process: audit (issue 12).
