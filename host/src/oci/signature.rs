//! cosign's keyed signatures, made and checked in the host: ECDSA P-256 with
//! SHA-256 (ASN.1 DER, base64 in the layer annotation) over the simple-signing
//! payload, which names the signed manifest digest. Keys are PEM: public keys
//! as SubjectPublicKeyInfo (what `cosign public-key` prints), private keys as
//! unencrypted PKCS#8. Crypto is ring's, already in the build for TLS.

use std::path::Path;

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, UnparsedPublicKey};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};
use serde::{Deserialize, Serialize};

/// The DER prefix of every P-256 SubjectPublicKeyInfo: SEQUENCE, AlgorithmIdentifier
/// (id-ecPublicKey, prime256v1), BIT STRING of the 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const COSIGN_TYPE: &str = "cosign container image signature";
/// Largest key file read, bytes.
const MAX_KEY_FILE_BYTES: u64 = 64 << 10;

/// A public key the trust policy lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    /// The uncompressed P-256 point.
    point: Vec<u8>,
}

impl PublicKey {
    /// Parses a PEM `PUBLIC KEY` holding an ECDSA P-256 key.
    pub fn from_pem(pem: &[u8]) -> Result<PublicKey, String> {
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem)
            .map_err(|e| format!("not a PEM public key (-----BEGIN PUBLIC KEY-----): {e}"))?;
        let der: &[u8] = spki.as_ref();
        match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
            Some(point) if point.len() == 65 && point[0] == 4 => Ok(PublicKey { point: point.to_vec() }),
            _ => Err("not an ECDSA P-256 public key (cosign's default); other algorithms are not accepted".into()),
        }
    }

    /// PEM `PUBLIC KEY` of this key.
    pub fn to_pem(&self) -> String {
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.point);
        pem_block("PUBLIC KEY", &der)
    }

    /// Whether `sig` (DER) is this key's signature of `message`.
    pub fn verifies(&self, message: &[u8], sig: &[u8]) -> bool {
        UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(message, sig)
            .is_ok()
    }
}

/// A private key for `agent-host sign`.
pub struct PrivateKey {
    pair: EcdsaKeyPair,
}

impl PrivateKey {
    /// Reads a PEM PKCS#8 ECDSA P-256 private key file.
    pub fn from_file(path: &Path) -> Result<PrivateKey, String> {
        let pem = read_key_file(path)?;
        let err = |m: String| format!("{}: {m}", path.display());
        let der = match PrivateKeyDer::from_pem_slice(&pem) {
            Ok(PrivateKeyDer::Pkcs8(der)) => der,
            Ok(_) => return Err(err(
                "not PKCS#8 (-----BEGIN PRIVATE KEY-----); convert with `openssl pkcs8 -topk8 -nocrypt -in KEY`".into(),
            )),
            Err(e) => return Err(err(format!("not a PEM private key: {e}"))),
        };
        let pair = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            der.secret_pkcs8_der(),
            &SystemRandom::new(),
        )
        .map_err(|e| err(format!("not an ECDSA P-256 PKCS#8 key: {e}")))?;
        Ok(PrivateKey { pair })
    }

    /// A new key: PKCS#8 PEM of the private key, and the public key.
    pub fn generate() -> (String, PublicKey) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .expect("the system RNG works");
        let pair = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .expect("ring reads the key it made");
        let public = PublicKey {
            point: pair.public_key().as_ref().to_vec(),
        };
        (pem_block("PRIVATE KEY", pkcs8.as_ref()), public)
    }

    /// Its public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            point: self.pair.public_key().as_ref().to_vec(),
        }
    }

    /// DER signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair
            .sign(&SystemRandom::new(), message)
            .expect("signing with a valid key does not fail")
            .as_ref()
            .to_vec()
    }
}

/// Reads a key file of at most [`MAX_KEY_FILE_BYTES`].
pub fn read_key_file(path: &Path) -> Result<Vec<u8>, String> {
    crate::config::read_bounded(path, MAX_KEY_FILE_BYTES).map_err(|e| match e {
        crate::config::FileReadError::Io(e) => format!("{}: {e}", path.display()),
        too_large => format!("{}: {too_large}; not a key file", path.display()),
    })
}

fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

// Each variant/field is what its message or wire name says.
#[allow(missing_docs)]
/// cosign's simple-signing payload.
#[derive(Debug, Serialize, Deserialize)]
pub struct Payload {
    pub critical: Critical,
    #[serde(default)]
    pub optional: Option<serde_json::Value>,
}

// Each variant/field is what its message or wire name says.
#[allow(missing_docs)]
#[derive(Debug, Serialize, Deserialize)]
pub struct Critical {
    pub identity: Identity,
    pub image: Image,
    #[serde(rename = "type")]
    pub kind: String,
}

// Each variant/field is what its message or wire name says.
#[allow(missing_docs)]
#[derive(Debug, Serialize, Deserialize)]
pub struct Identity {
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

// Each variant/field is what its message or wire name says.
#[allow(missing_docs)]
#[derive(Debug, Serialize, Deserialize)]
pub struct Image {
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

/// The payload signing `repository` (`registry/repo`) at `digest`.
pub fn payload(repository: &str, digest: &str) -> Vec<u8> {
    serde_json::to_vec(&Payload {
        critical: Critical {
            identity: Identity {
                docker_reference: repository.to_owned(),
            },
            image: Image {
                docker_manifest_digest: digest.to_owned(),
            },
            kind: COSIGN_TYPE.to_owned(),
        },
        optional: None,
    })
    .expect("JSON")
}

/// One signature found in a signature manifest.
pub struct Candidate {
    /// The payload blob (digest already checked).
    pub payload: Vec<u8>,
    /// The annotation's base64 signature.
    pub signature_b64: String,
}

// Each variant/field is what its message or wire name says.
#[allow(missing_docs)]
/// Why no signature was accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("unsigned: no signature under {tag}")]
    Unsigned { tag: String },
    #[error(
        "signature does not match the digest: a signature by `{key}` signs {signed}, not {digest}"
    )]
    WrongDigest {
        key: String,
        signed: String,
        digest: String,
    },
    #[error("signed by an untrusted key: none of the {count} signature(s) under {tag} verifies with a key this rule trusts ({keys})")]
    UntrustedKey {
        count: usize,
        tag: String,
        keys: String,
    },
}

/// The name of the first of `keys` (in their order, so the result does not
/// depend on the order signatures were added) with a valid signature over a
/// payload naming `digest`.
pub fn verify(
    candidates: &[Candidate],
    keys: &[(String, PublicKey)],
    digest: &str,
    tag: &str,
) -> Result<String, VerifyError> {
    let mut wrong = None;
    let decoded: Vec<(&Candidate, Vec<u8>)> = candidates
        .iter()
        .filter_map(|c| {
            let sig = base64::engine::general_purpose::STANDARD
                .decode(c.signature_b64.trim())
                .ok()?;
            Some((c, sig))
        })
        .collect();
    for (name, key) in keys {
        for (c, sig) in &decoded {
            let sig = sig.as_slice();
            if !key.verifies(&c.payload, sig) {
                continue;
            }
            match serde_json::from_slice::<Payload>(&c.payload) {
                Ok(p)
                    if p.critical.kind == COSIGN_TYPE
                        && p.critical.image.docker_manifest_digest == digest =>
                {
                    return Ok(name.clone())
                }
                Ok(p) => {
                    wrong.get_or_insert(VerifyError::WrongDigest {
                        key: name.clone(),
                        signed: p.critical.image.docker_manifest_digest,
                        digest: digest.to_owned(),
                    });
                }
                Err(_) => {
                    wrong.get_or_insert(VerifyError::WrongDigest {
                        key: name.clone(),
                        signed: "an unreadable payload".into(),
                        digest: digest.to_owned(),
                    });
                }
            }
        }
    }
    Err(wrong.unwrap_or_else(|| {
        if candidates.is_empty() {
            VerifyError::Unsigned {
                tag: tag.to_owned(),
            }
        } else {
            VerifyError::UntrustedKey {
                count: candidates.len(),
                tag: tag.to_owned(),
                keys: keys
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn signed(key: &PrivateKey, digest: &str) -> Candidate {
        let payload = payload("r.example.com/a", digest);
        let sig = key.sign(&payload);
        Candidate {
            payload,
            signature_b64: base64::engine::general_purpose::STANDARD.encode(sig),
        }
    }

    fn key() -> PrivateKey {
        let (pem, public) = PrivateKey::generate();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, pem).unwrap();
        let key = PrivateKey::from_file(&path).unwrap();
        assert_eq!(key.public_key(), public);
        assert_eq!(
            PublicKey::from_pem(public.to_pem().as_bytes()).unwrap(),
            public
        );
        key
    }

    #[test]
    fn a_trusted_signature_of_the_digest_verifies_and_others_say_why_not() {
        let (a, b) = (key(), key());
        let trusted = vec![("platform".to_owned(), a.public_key())];
        assert_eq!(
            verify(&[signed(&a, D)], &trusted, D, "t").unwrap(),
            "platform"
        );
        let other = D.replace("0123", "4567");
        assert!(matches!(
            verify(&[signed(&a, &other)], &trusted, D, "t"),
            Err(VerifyError::WrongDigest { .. })
        ));
        assert!(matches!(
            verify(&[signed(&b, D)], &trusted, D, "t"),
            Err(VerifyError::UntrustedKey { .. })
        ));
        assert!(matches!(
            verify(&[], &trusted, D, "t"),
            Err(VerifyError::Unsigned { .. })
        ));
        // A payload changed after signing does not verify.
        let mut tampered = signed(&a, D);
        tampered.payload.push(b' ');
        assert!(matches!(
            verify(&[tampered], &trusted, D, "t"),
            Err(VerifyError::UntrustedKey { .. })
        ));
    }

    #[test]
    fn only_p256_public_keys_are_accepted() {
        let err = PublicKey::from_pem(b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n").unwrap_err();
        assert!(err.contains("P-256"), "{err}");
        assert!(PublicKey::from_pem(b"junk")
            .unwrap_err()
            .contains("not a PEM public key"));
    }
}
