//! Components from OCI registries: pulled by digest in the CNCF Wasm artifact
//! layout, checked against their digests before use, verified against the
//! operator's trust policy (cosign keyed signatures, checked here), held to
//! the signer's grant ceiling, cached content-addressed; and the other side,
//! `agent-host push` and `agent-host sign`.
//!
//! Nothing here trusts what it has not checked: the manifest hashes to the
//! pinned digest, the layer to the manifest's digest and size, a signature to
//! a key the policy lists for this repository, over a payload naming this
//! digest. A component failing any of these is never compiled.

pub mod auth;
pub mod cache;
pub mod client;
pub mod layout;
pub mod policy;
pub mod signature;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use bytes::Bytes;

use crate::audit::{AuditLog, Event};
pub use crate::manifest::reference::{self, Reference};
use crate::manifest::{Agent, LoadedAgent, PulledImage};
use client::Client;
use layout::{Descriptor, Manifest};
use policy::{Mode, TrustPolicy};
use signature::{Candidate, PrivateKey, PublicKey, VerifyError};

/// Largest manifest read (image or signature), bytes.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// Largest signature payload read, bytes (cosign's are a few hundred).
const MAX_PAYLOAD_BYTES: u64 = 64 << 10;
/// Signatures considered per component; more are ignored.
const MAX_SIGNATURES: usize = 32;
/// Attempts per registry request (the first plus retries) on transient failures.
const ATTEMPTS: usize = 3;

// Each variant/field is what its message or wire name says.
#[allow(missing_docs)]
/// Why a registry exchange failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum PullError {
    #[error("registry {registry} is unreachable: {message}")]
    Unreachable { registry: String, message: String },
    #[error("registry {registry} refused access: {message}")]
    Denied { registry: String, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("{what}: content does not match its digest (expected {expected}, got {actual}); refused before use")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{0}")]
    BadArtifact(String),
    #[error("{0}")]
    Protocol(String),
}

impl PullError {
    /// Worth retrying: the registry may answer next time.
    fn transient(&self) -> bool {
        matches!(
            self,
            PullError::Unreachable { .. } | PullError::Unavailable(_) | PullError::Timeout(_)
        )
    }
}

// Each variant/field is what its message or wire name says.
#[allow(missing_docs)]
/// Why a component named by `spec.component.image` is not loaded.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ImageError {
    #[error("spec.component.image: {image}: {message}")]
    Reference { image: String, message: String },
    #[error("spec.component.image: {image}: refused: the host has no trust policy (--trust-policy); components from registries load only under one")]
    NoPolicy { image: String },
    #[error("spec.component.image: {image}: refused: trust policy {message}")]
    Policy { image: String, message: String },
    #[error(
        "spec.component.image: {image}: refused: no rule of trust policy {file} matches {name}"
    )]
    NoRule {
        image: String,
        file: String,
        name: String,
    },
    #[error("spec.component.image: {image}: refused: a tag; pin a digest (REGISTRY/REPOSITORY@sha256:...), trust policy {rule} does not allow tags")]
    Tag { image: String, rule: String },
    #[error("spec.component.image: {image}: {source}")]
    Pull { image: String, source: PullError },
    #[error("spec.component.image: {image}: refused by trust policy {rule}: {source}")]
    Verify {
        image: String,
        rule: String,
        source: VerifyError,
    },
    #[error("spec.component.image: {image}: refused: {message}")]
    Ceiling { image: String, message: String },
}

impl ImageError {
    /// The status condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            ImageError::Pull { .. } => "ImagePullFailed",
            ImageError::Verify { .. } => "SignatureRejected",
            ImageError::Ceiling { .. } => "GrantAboveSignerCeiling",
            _ => "ImageRefused",
        }
    }

    /// Whether the registry, not the component or the policy, is at fault:
    /// pod mode keeps serving the last good component.
    pub fn registry_down(&self) -> bool {
        matches!(self, ImageError::Pull { source, .. } if source.transient())
    }
}

/// Where and how components are pulled.
#[derive(Clone, Debug)]
pub struct OciConfig {
    /// The trust policy file; without one, images are refused.
    pub trust_policy: Option<PathBuf>,
    /// Docker `config.json` with registry credentials.
    pub registry_auth: Option<PathBuf>,
    /// Registries spoken to over plain HTTP.
    pub insecure: Vec<String>,
    /// Blob cache directory.
    pub cache_dir: PathBuf,
    /// Bound on the blob cache, bytes.
    pub cache_max_bytes: u64,
    /// Deadline of one pull, retries included.
    pub pull_timeout: Duration,
    /// Largest component accepted, bytes.
    pub max_component_bytes: u64,
}

/// Resolves image components for loading.
#[derive(Clone, Debug)]
pub struct Puller {
    config: OciConfig,
    client: Client,
    cache: Arc<cache::BlobCache>,
    audit: AuditLog,
}

impl Puller {
    /// Reads the credentials and checks the trust policy once, so a broken
    /// file fails the start, not the first load.
    pub fn new(config: OciConfig) -> Result<Puller, String> {
        let credentials = match &config.registry_auth {
            Some(path) => {
                auth::Credentials::from_file(path).map_err(|e| format!("--registry-auth {e}"))?
            }
            None => auth::Credentials::default(),
        };
        if let Some(path) = &config.trust_policy {
            TrustPolicy::from_file(path).map_err(|e| format!("--trust-policy {e}"))?;
        }
        Ok(Puller {
            client: Client::new(credentials, config.insecure.clone()),
            cache: Arc::new(cache::BlobCache::new(
                config.cache_dir.clone(),
                config.cache_max_bytes,
            )),
            config,
            audit: AuditLog::disabled(),
        })
    }

    /// Where verifications and refusals are recorded.
    pub fn set_audit_log(&mut self, audit: AuditLog) {
        self.audit = audit;
    }

    /// The blob cache.
    pub fn cache(&self) -> &cache::BlobCache {
        &self.cache
    }

    /// For an Agent whose component is an image: pulls, checks, verifies and
    /// holds it to its signer's ceiling, leaving the verified bytes in
    /// `loaded.image`. Refusals are audited. Local-file Agents pass unchanged.
    pub async fn resolve(&self, loaded: &mut LoadedAgent) -> Result<(), ImageError> {
        let Some(image) = loaded.agent.spec.component.image.clone() else {
            return Ok(());
        };
        let agent = loaded.agent.name().to_owned();
        match self.pull_verified(&image, &loaded.agent).await {
            Ok(pulled) => {
                self.audit.record(Event::ComponentVerified {
                    agent,
                    image: pulled.reference.clone(),
                    digest: pulled.layer_digest.clone(),
                    signer: pulled.signer.clone(),
                });
                loaded.component_path = PathBuf::from(&pulled.reference);
                loaded.image = Some(pulled);
                Ok(())
            }
            Err(e) => {
                self.audit.record(Event::ComponentRefused {
                    agent,
                    image,
                    reason: e.reason(),
                    message: e.to_string(),
                });
                Err(e)
            }
        }
    }

    async fn pull_verified(&self, image: &str, agent: &Agent) -> Result<PulledImage, ImageError> {
        let reference = Reference::parse(image).map_err(|message| ImageError::Reference {
            image: image.to_owned(),
            message,
        })?;
        let Some(policy_file) = &self.config.trust_policy else {
            return Err(ImageError::NoPolicy {
                image: image.to_owned(),
            });
        };
        // Read at every load: a changed policy applies to the next load.
        let policy = TrustPolicy::from_file(policy_file).map_err(|message| ImageError::Policy {
            image: image.to_owned(),
            message,
        })?;
        let rule = policy
            .rule_for(&reference)
            .ok_or_else(|| ImageError::NoRule {
                image: image.to_owned(),
                file: policy_file.display().to_string(),
                name: reference.name(),
            })?;
        if reference.digest().is_none() && !rule.allow_tags {
            return Err(ImageError::Tag {
                image: image.to_owned(),
                rule: rule.at.clone(),
            });
        }
        let pull = |source: PullError| ImageError::Pull {
            image: image.to_owned(),
            source,
        };
        let work = async {
            let (manifest_digest, manifest) = self.manifest(&reference).await.map_err(pull)?;
            let pinned = reference.with_digest(&manifest_digest);
            let what = pinned.to_string();
            let layer = layout::wasm_layer(&manifest, &what).map_err(pull)?;
            if layer.size > self.config.max_component_bytes {
                return Err(pull(PullError::TooLarge(format!(
                    "{what}: the component layer is {} bytes; the host accepts at most {}",
                    layer.size, self.config.max_component_bytes
                ))));
            }
            let wasm = self.blob(&pinned, layer).await.map_err(pull)?;
            let signer = match rule.mode {
                Mode::AllowUnsigned => None,
                Mode::Require => Some(
                    self.signer(&pinned, &manifest_digest, rule, &policy)
                        .await
                        .map_err(|e| match e {
                            Signer::Pull(source) => pull(source),
                            Signer::Rejected(source) => ImageError::Verify {
                                image: image.to_owned(),
                                rule: format!("{} ({})", rule.at, rule.pattern),
                                source,
                            },
                        })?,
                ),
            };
            Ok((pinned, manifest_digest, layer.digest.clone(), wasm, signer))
        };
        let (pinned, manifest_digest, layer_digest, wasm, signer) =
            tokio::time::timeout(self.config.pull_timeout, work)
                .await
                .map_err(|_| {
                    pull(PullError::Timeout(format!(
                        "the pull did not finish within --pull-timeout {:?}",
                        self.config.pull_timeout
                    )))
                })??;
        let (ceiling, at, who) = match &signer {
            Some(name) => {
                let key = policy.key(name).expect("a rule's keys are the policy's");
                (
                    key.ceiling.clone(),
                    format!("{}.ceiling", key.at),
                    format!("signed by `{name}`"),
                )
            }
            None => (
                rule.ceiling.clone(),
                format!("{}.ceiling", rule.at),
                format!("accepted unsigned by {}", rule.at),
            ),
        };
        if let Some(c) = &ceiling {
            c.check(&agent.spec.capabilities, &who, &at)
                .map_err(|message| ImageError::Ceiling {
                    image: image.to_owned(),
                    message,
                })?;
        }
        Ok(PulledImage {
            reference: pinned.to_string(),
            manifest_digest,
            layer_digest,
            signer,
            rule: format!("{} ({})", rule.at, rule.pattern),
            ceiling: ceiling
                .map(|c| c.describe())
                .unwrap_or_else(|| vec!["none beyond the manifest".into()]),
            wasm: wasm.into(),
        })
    }

    /// The manifest and its digest: from the cache for a pinned digest, else
    /// the registry (a tag is always asked afresh).
    async fn manifest(&self, reference: &Reference) -> Result<(String, Manifest), PullError> {
        let what = reference.to_string();
        if let Some(digest) = reference.digest() {
            if let Some(bytes) = self.cache.get(digest, MAX_MANIFEST_BYTES) {
                if let Ok(m) = layout::parse_manifest(&bytes, "", &what) {
                    return Ok((digest.to_owned(), m));
                }
            }
        }
        let (bytes, media_type, digest) = retry(|| {
            self.client.get_manifest(
                &reference.registry,
                &reference.repository,
                reference.target_str(),
                MAX_MANIFEST_BYTES,
            )
        })
        .await?;
        let manifest = layout::parse_manifest(&bytes, &media_type, &what)?;
        self.cache.put(&digest, &bytes);
        Ok((digest, manifest))
    }

    async fn blob(&self, reference: &Reference, d: &Descriptor) -> Result<Vec<u8>, PullError> {
        if let Some(bytes) = self.cache.get(&d.digest, d.size) {
            if bytes.len() as u64 == d.size {
                return Ok(bytes);
            }
        }
        let bytes = retry(|| {
            self.client.get_blob(
                &reference.registry,
                &reference.repository,
                &d.digest,
                d.size,
            )
        })
        .await?;
        self.cache.put(&d.digest, &bytes);
        Ok(bytes.to_vec())
    }

    /// The key that signed `digest`: from the signatures seen last time if
    /// they satisfy the current rule, else from a fresh fetch.
    async fn signer(
        &self,
        reference: &Reference,
        digest: &str,
        rule: &policy::Rule,
        policy: &TrustPolicy,
    ) -> Result<String, Signer> {
        let keys: Vec<(String, PublicKey)> = rule
            .keys
            .iter()
            .filter_map(|n| policy.key(n).map(|k| (n.clone(), k.key.clone())))
            .collect();
        let tag = format!(
            "{}/{}:{}",
            reference.registry,
            reference.repository,
            layout::signature_tag(digest)
        );
        if let Some(cached) = self.cache.signatures(&reference.name(), digest) {
            if let Ok(candidates) = self.candidates(reference, &cached).await {
                if let Ok(signer) = signature::verify(&candidates, &keys, digest, &tag) {
                    return Ok(signer);
                }
            }
        }
        let sig_tag = layout::signature_tag(digest);
        let fresh = retry(|| {
            self.client.get_manifest(
                &reference.registry,
                &reference.repository,
                &sig_tag,
                MAX_MANIFEST_BYTES,
            )
        })
        .await;
        let bytes = match fresh {
            Ok((bytes, _, _)) => bytes,
            Err(PullError::NotFound(_)) => {
                return Err(Signer::Rejected(VerifyError::Unsigned { tag }))
            }
            Err(e) => return Err(Signer::Pull(e)),
        };
        let candidates = self
            .candidates(reference, &bytes)
            .await
            .map_err(Signer::Pull)?;
        self.cache.put_signatures(&reference.name(), digest, &bytes);
        signature::verify(&candidates, &keys, digest, &tag).map_err(Signer::Rejected)
    }

    /// The cosign signatures a signature manifest lists, payloads fetched.
    async fn candidates(
        &self,
        reference: &Reference,
        manifest: &[u8],
    ) -> Result<Vec<Candidate>, PullError> {
        let manifest = layout::parse_manifest(manifest, "", "signature manifest")?;
        let mut out = Vec::new();
        for layer in manifest
            .layers
            .iter()
            .filter(|l| l.media_type == layout::COSIGN_LAYER && l.size <= MAX_PAYLOAD_BYTES)
            .take(MAX_SIGNATURES)
        {
            let Some(sig) = layer.annotations.get(layout::COSIGN_SIGNATURE_ANNOTATION) else {
                continue;
            };
            let payload = self.blob(reference, layer).await?;
            out.push(Candidate {
                payload,
                signature_b64: sig.clone(),
            });
        }
        Ok(out)
    }
}

enum Signer {
    Pull(PullError),
    Rejected(VerifyError),
}

async fn retry<T, F, Fut>(f: F) -> Result<T, PullError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, PullError>>,
{
    f.retry(
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(5))
            .with_max_times(ATTEMPTS - 1)
            .with_jitter(),
    )
    .when(PullError::transient)
    .await
}

/// Puts an OCI image manifest of `config` and `layers` under `target`
/// (a tag, or a signature tag) in `reference`'s repository.
async fn put_image_manifest(
    client: &Client,
    reference: &Reference,
    target: &str,
    config: Descriptor,
    layers: Vec<Descriptor>,
) -> Result<String, PullError> {
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(layout::OCI_MANIFEST.into()),
        artifact_type: None,
        config,
        layers,
        annotations: Default::default(),
    };
    let bytes = Bytes::from(layout::to_bytes(&manifest));
    retry(|| {
        client.put_manifest(
            &reference.registry,
            &reference.repository,
            target,
            bytes.clone(),
            layout::OCI_MANIFEST,
        )
    })
    .await
}

/// The component-model layer of a binary: `\0asm`, then version 0x0d, layer 1.
const COMPONENT_HEADER: [u8; 8] = [0, b'a', b's', b'm', 0x0d, 0x00, 0x01, 0x00];

/// `agent-host push`: publishes `wasm` as a CNCF Wasm artifact under
/// `reference` (a tag); returns the manifest digest to pin.
pub async fn push(
    client: &Client,
    wasm: Vec<u8>,
    reference: &Reference,
) -> Result<String, PullError> {
    if !wasm.starts_with(&COMPONENT_HEADER) {
        return Err(PullError::BadArtifact(
            "not a WebAssembly component (a core module or another file); build with --target wasm32-wasip2".into(),
        ));
    }
    let (registry, repository) = (&reference.registry, &reference.repository);
    let wasm = Bytes::from(wasm);
    let layer_digest = retry(|| client.put_blob(registry, repository, wasm.clone())).await?;
    let config = Bytes::from(layout::wasm_config(&layer_digest));
    retry(|| client.put_blob(registry, repository, config.clone())).await?;
    put_image_manifest(
        client,
        reference,
        reference.target_str(),
        Descriptor::of(layout::WASM_CONFIG, &config),
        vec![Descriptor::of(layout::WASM_LAYER, &wasm)],
    )
    .await
}

/// `agent-host sign`: adds a cosign keyed signature of `reference`'s manifest
/// digest (a tag is resolved first) to its `sha256-<hex>.sig` manifest.
/// Returns the signed digest.
pub async fn sign(
    client: &Client,
    reference: &Reference,
    key: &PrivateKey,
) -> Result<String, PullError> {
    let (registry, repository) = (&reference.registry, &reference.repository);
    let (_, _, digest) = retry(|| {
        client.get_manifest(
            registry,
            repository,
            reference.target_str(),
            MAX_MANIFEST_BYTES,
        )
    })
    .await?;
    let payload = Bytes::from(signature::payload(&reference.name(), &digest));
    let sig = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        key.sign(&payload),
    );
    let tag = layout::signature_tag(&digest);
    let mut layers =
        match retry(|| client.get_manifest(registry, repository, &tag, MAX_MANIFEST_BYTES)).await {
            Ok((bytes, media_type, _)) => layout::parse_manifest(&bytes, &media_type, &tag)?.layers,
            Err(PullError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
    retry(|| client.put_blob(registry, repository, payload.clone())).await?;
    let mut layer = Descriptor::of(layout::COSIGN_LAYER, &payload);
    layer
        .annotations
        .insert(layout::COSIGN_SIGNATURE_ANNOTATION.into(), sig);
    layers.push(layer);
    // The config cosign writes: an image config whose layers are the payloads.
    let config = Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "architecture": "", "os": "", "created": "0001-01-01T00:00:00Z",
            "config": {},
            "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>() },
        }))
        .expect("JSON"),
    );
    retry(|| client.put_blob(registry, repository, config.clone())).await?;
    put_image_manifest(
        client,
        reference,
        &tag,
        Descriptor::of(layout::OCI_IMAGE_CONFIG, &config),
        layers,
    )
    .await?;
    Ok(digest)
}
