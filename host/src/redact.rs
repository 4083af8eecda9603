//! The one way the host makes guest-influenced text safe to print: secret
//! values are replaced by [`REDACTED`] (whole, and line by line for multi-line
//! secrets such as PEM keys), then the text is clipped to a bounded size.
//! Every host-emitted string that can carry guest text (log lines, WARN lines,
//! span fields, audit records, errors) goes through [`redact`] or [`clean`],
//! always before any escaping, so an escaped form can never hide a secret.

use std::borrow::Cow;
use std::sync::Arc;

/// What a secret value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Shortest line of a multi-line secret redacted on its own. A PEM key printed
/// line by line must lose every line, but a one- to three-character line
/// (`}` of a JSON key file) carries no secret and would blank every log.
pub const MIN_SECRET_LINE: usize = 4;

/// Longest guest-influenced field (a URL, a path, a reason) the host writes to
/// its audit log, WARN lines and spans: a guest cannot make one record
/// megabytes long (a refused open with an 8 MiB path).
pub const MAX_FIELD_BYTES: usize = 4096;

/// A redaction set whose `Debug` shows only its size, so a struct holding it
/// can derive `Debug` without printing a secret.
#[derive(Clone, Default)]
pub struct SecretSet(pub Arc<[String]>);

impl std::fmt::Debug for SecretSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretSet({} values)", self.0.len())
    }
}

/// The redaction set of an agent: every secret value, plus each line of a
/// multi-line value, longest first (so a whole secret is replaced before its
/// lines). Empty values are dropped: they would match everywhere.
pub fn secret_set<I, S>(values: I) -> Arc<[String]>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut set: Vec<String> = Vec::new();
    for value in values {
        let value = value.as_ref();
        if value.is_empty() {
            continue;
        }
        set.push(value.to_string());
        if value.contains('\n') {
            set.extend(
                value
                    .lines()
                    .map(|l| l.trim_end_matches('\r'))
                    .filter(|l| l.trim().len() >= MIN_SECRET_LINE)
                    .map(str::to_string),
            );
        }
    }
    set.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    set.dedup();
    set.into()
}

/// Replaces every occurrence of a secret value in `text` with [`REDACTED`].
pub fn redact<'a>(text: &'a str, secrets: &[String]) -> Cow<'a, str> {
    let mut out = Cow::Borrowed(text);
    for secret in secrets {
        if !secret.is_empty() && out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
        }
    }
    out
}

/// Cuts `text` to at most `max` bytes on a char boundary, marking the cut with
/// the number of bytes left out.
pub fn clip(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let kept = prefix(text, max);
    Cow::Owned(format!("{kept}…[cut {} bytes]", text.len() - kept.len()))
}

/// [`redact`], then [`clip`] to [`MAX_FIELD_BYTES`]: redaction first, so the
/// cut never leaves the start of a secret behind.
/// Only the head that can be kept (plus room for a secret across the cut) is
/// scanned, so a multi-megabyte path costs the host no more than a short one.
pub fn clean(text: &str, secrets: &[String]) -> String {
    let longest = secrets.iter().map(String::len).max().unwrap_or(0);
    let head = prefix(text, MAX_FIELD_BYTES.saturating_add(longest));
    let redacted = redact(head, secrets);
    let kept = prefix(&redacted, MAX_FIELD_BYTES);
    let cut = redacted.len() - kept.len() + (text.len() - head.len());
    if cut == 0 {
        kept.to_string()
    } else {
        format!("{kept}…[cut {cut} bytes]")
    }
}

/// The longest prefix of `text` of at most `max` bytes ending on a char boundary.
fn prefix(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Where to cut `bytes` (a line being forwarded in pieces) at or before `at`
/// so that no secret straddles the cut: the cut moves back before the longest
/// suffix of `bytes[..at]` that begins a secret, and the held-back bytes go
/// with the next piece. Falls back to `at` when a secret is longer than the
/// piece itself. Linear in the secrets' length whatever the bytes (KMP), so a
/// guest cannot make each cut cost quadratic time.
pub fn safe_cut(bytes: &[u8], at: usize, secrets: &[String]) -> usize {
    let at = at.min(bytes.len());
    let mut cut = at;
    for secret in secrets
        .iter()
        .map(String::as_bytes)
        .filter(|s| !s.is_empty())
    {
        let window = &bytes[at.saturating_sub(secret.len())..at];
        cut = cut.min(at - overlap(window, secret));
    }
    if cut == 0 {
        at
    } else {
        cut
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `pattern`
/// (Knuth–Morris–Pratt).
fn overlap(text: &[u8], pattern: &[u8]) -> usize {
    let mut border = vec![0usize; pattern.len()];
    let mut k = 0;
    for i in 1..pattern.len() {
        while k > 0 && pattern[i] != pattern[k] {
            k = border[k - 1];
        }
        if pattern[i] == pattern[k] {
            k += 1;
        }
        border[i] = k;
    }
    let mut state = 0;
    for &b in text {
        if state == pattern.len() {
            state = border[state - 1];
        }
        while state > 0 && b != pattern[state] {
            state = border[state - 1];
        }
        if b == pattern[state] {
            state += 1;
        }
    }
    if state == pattern.len() {
        border[state - 1]
    } else {
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_replaces_every_occurrence_of_every_secret() {
        let secrets = secret_set(["tok-123", "hunter2"]);
        assert_eq!(
            redact("a tok-123 b hunter2 tok-123", &secrets),
            "a [REDACTED] b [REDACTED] [REDACTED]"
        );
        assert!(matches!(redact("clean", &secrets), Cow::Borrowed(_)));
    }

    #[test]
    fn each_line_of_a_multi_line_secret_is_redacted_on_its_own() {
        let pem = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\r\nAQEFAASCBKcwggSjAgEAAoIB\n}\n-----END KEY-----";
        let secrets = secret_set([pem]);
        assert_eq!(redact(pem, &secrets), REDACTED, "whole first");
        assert_eq!(
            redact("line: AQEFAASCBKcwggSjAgEAAoIB", &secrets),
            "line: [REDACTED]"
        );
        assert_eq!(redact("MIIEvQIBADANBgkqhkiG9w0B", &secrets), REDACTED);
        assert_eq!(redact("{ ok }", &secrets), "{ ok }", "short lines are kept");
    }

    #[test]
    fn clip_marks_the_cut_on_a_char_boundary() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("ééé", 3), "é…[cut 4 bytes]");
        let long = "x".repeat(10 * MAX_FIELD_BYTES);
        assert!(clean(&long, &[]).len() < MAX_FIELD_BYTES + 32);
    }

    #[test]
    fn clean_scans_only_the_head_it_keeps() {
        let secrets = secret_set(["tail-secret"]);
        let text = format!("{}tail-secret", "x".repeat(8 << 20));
        let cleaned = clean(&text, &secrets);
        assert!(cleaned.len() < MAX_FIELD_BYTES + 32);
        assert!(cleaned.ends_with(&format!("[cut {} bytes]", text.len() - MAX_FIELD_BYTES)));
    }

    #[test]
    fn clean_redacts_before_it_cuts() {
        let secrets = secret_set(["s3cr3t-value"]);
        let text = format!("{}s3cr3t-value", "x".repeat(MAX_FIELD_BYTES - 4));
        let cleaned = clean(&text, &secrets);
        assert!(!cleaned.contains("s3cr"), "{cleaned}");
    }

    #[test]
    fn a_cut_never_splits_a_secret() {
        let secrets = secret_set(["SECRET"]);
        let line = b"0123456SECRET789";
        assert_eq!(safe_cut(line, 10, &secrets), 7, "moved before the secret");
        assert_eq!(safe_cut(line, 7, &secrets), 7, "already before it");
        assert_eq!(safe_cut(line, 14, &secrets), 14, "after it");
        assert_eq!(
            safe_cut(b"0123456SEC", 10, &secrets),
            7,
            "a partial prefix too"
        );
        assert_eq!(
            safe_cut(b"SECRETSECRET", 3, &secrets),
            3,
            "secret longer than the piece"
        );
        assert_eq!(
            safe_cut(b"xxSESESEC", 9, &secrets),
            6,
            "the longest overlap"
        );
        assert_eq!(
            safe_cut(b"xxSECRET", 8, &secrets),
            8,
            "a whole one before the cut"
        );
        let periodic = secret_set(["aaab"]);
        assert_eq!(
            safe_cut(b"aaaaaaa", 7, &periodic),
            4,
            "earliest possible start"
        );
    }
}
