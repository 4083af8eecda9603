//! `idempotencyKey: true` on an HTTP rule: the host adds
//! `Idempotency-Key: <invocation id>-<n>` to the rule's requests, n being the
//! request's 1-based place among every outgoing request of the invocation
//! (allowed or refused, in the order the guest sends them). A durable
//! invocation may run more than once (a crash, a lease taken over); the
//! same guest code on the same input sends the same requests in the same
//! order, so each re-sent request carries the key of its first sending and
//! a server that deduplicates on the header applies it once.

use http::{HeaderName, HeaderValue};

/// The header set on requests of rules with `idempotencyKey: true`.
pub static HEADER: HeaderName = HeaderName::from_static("idempotency-key");

/// Numbers the outgoing requests of one invocation.
#[derive(Debug, Default)]
pub struct Sequence(u32);

impl Sequence {
    /// The next request's number, from 1.
    pub fn advance(&mut self) -> u32 {
        self.0 = self.0.saturating_add(1);
        self.0
    }
}

/// The key of request `n` of `invocation`; `None` when the id cannot be a
/// header value (an id given to `run --id` with control characters): the
/// request is then refused rather than sent without its key.
pub fn key(invocation: &str, n: u32) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("{invocation}-{n}")).ok()
}

/// Sets the key on `request`, replacing every value the guest gave it.
pub fn set<B>(request: &mut http::Request<B>, key: HeaderValue) {
    request.headers_mut().insert(HEADER.clone(), key);
}
