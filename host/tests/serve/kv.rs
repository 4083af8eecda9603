//! Hostile agents and callers against a real `serve` process: kv (issue 12).
