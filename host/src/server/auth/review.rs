//! `--token-review`: Kubernetes service-account tokens checked with the
//! TokenReview API.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::Unavailable;

/// How long a positive TokenReview answer is reused: a revoked token is
/// accepted at most this long after the API server stops accepting it.
pub const REVIEW_CACHE_TTL: Duration = Duration::from_secs(10);
/// Most remembered TokenReview answers: distinct valid tokens past it are
/// reviewed every time instead of growing the cache.
pub const REVIEW_CACHE_ENTRIES: usize = 4096;
/// TokenReview requests in flight at once: a flood of random tokens waits
/// here instead of flooding the API server.
pub const MAX_REVIEWS_IN_FLIGHT: usize = 16;
/// Longest a TokenReview may take before the request gets 503.
pub const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);

/// Kubernetes service-account tokens, checked with the TokenReview API for
/// one audience; positive answers are remembered for [`REVIEW_CACHE_TTL`].
pub struct TokenReviewer {
    client: kube::Client,
    audience: String,
    cache: Mutex<HashMap<[u8; 32], (String, Instant)>>,
    in_flight: tokio::sync::Semaphore,
}

impl TokenReviewer {
    /// Reviews tokens through `client`, accepting only those issued for `audience`.
    pub fn new(client: kube::Client, audience: String) -> Self {
        Self {
            client,
            audience,
            cache: Mutex::default(),
            in_flight: tokio::sync::Semaphore::new(MAX_REVIEWS_IN_FLIGHT),
        }
    }

    pub(super) async fn review(&self, token: &str) -> Result<Option<String>, Unavailable> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(name) = self.cached(&key) {
            return Ok(Some(name));
        }
        let _permit = self.in_flight.acquire().await.expect("never closed");
        let name = tokio::time::timeout(REVIEW_TIMEOUT, self.ask(token))
            .await
            .map_err(|_| {
                Unavailable(format!("TokenReview took longer than {REVIEW_TIMEOUT:?}"))
            })??;
        if let Some(name) = &name {
            self.remember(key, name.clone());
        }
        Ok(name)
    }

    fn cached(&self, key: &[u8; 32]) -> Option<String> {
        let cache = self.cache.lock().expect("review cache lock");
        cache
            .get(key)
            .filter(|(_, at)| at.elapsed() < REVIEW_CACHE_TTL)
            .map(|(name, _)| name.clone())
    }

    fn remember(&self, key: [u8; 32], name: String) {
        let mut cache = self.cache.lock().expect("review cache lock");
        if cache.len() >= REVIEW_CACHE_ENTRIES {
            cache.retain(|_, (_, at)| at.elapsed() < REVIEW_CACHE_TTL);
        }
        if cache.len() < REVIEW_CACHE_ENTRIES {
            cache.insert(key, (name, Instant::now()));
        }
    }

    /// One TokenReview: the user name when the API server says the token is
    /// authenticated for our audience.
    async fn ask(&self, token: &str) -> Result<Option<String>, Unavailable> {
        use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: Some(vec![self.audience.clone()]),
            },
            ..Default::default()
        };
        let api: kube::Api<TokenReview> = kube::Api::all(self.client.clone());
        let answer = api
            .create(&kube::api::PostParams::default(), &review)
            .await
            .map_err(|e| Unavailable(format!("TokenReview: {e}")))?;
        let Some(status) = answer.status else {
            return Ok(None);
        };
        // Audiences are checked here too: an API server that ignored them
        // must not make a token for another audience valid for this host.
        let for_us = status
            .audiences
            .as_ref()
            .is_some_and(|a| a.contains(&self.audience));
        if status.authenticated != Some(true) || !for_us {
            return Ok(None);
        }
        Ok(status
            .user
            .and_then(|u| u.username)
            .filter(|name| !name.is_empty()))
    }
}
