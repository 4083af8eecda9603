//! `wasi:cli/environment`: the guest sees exactly the variables its manifest
//! declares (`spec.capabilities.env`), nothing of the host's own environment.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use wasmtime::component::Linker;
use wasmtime_wasi::cli::{WasiCli, WasiCliView as _};
use wasmtime_wasi::WasiCtxBuilder;

use super::imports::Binding;
use super::{Capability, ConfigureCx, ConfigureError, HasCapability, Kind, PrepareCx};
use crate::config::HostConfig;
use crate::manifest::{EnvVar, Limits};

/// The `env` capability: `wasi:cli/environment` with the declared variables.
pub struct Env;

impl Capability for Env {
    const KIND: Kind = Kind::Env;
    const INTERFACES: &'static [&'static str] = &["wasi:cli/environment"];
    type Host = ();
    type Grant = EnvGrant;
    type State = ();
    type Usage = super::NoUsage;

    fn host(_: &HostConfig) {}

    fn link<T: HasCapability<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wasmtime_wasi::p2::bindings::cli::environment::add_to_linker::<T, WasiCli>(linker, |s| {
            s.capability().core.count(Kind::Env).cli()
        })
    }

    fn configure(_: &(), cx: &ConfigureCx<'_>) -> Result<EnvGrant, ConfigureError> {
        EnvGrant::configure(&cx.agent.spec.capabilities.env, cx.secrets_dir)
    }

    fn secrets(grant: &EnvGrant) -> Vec<String> {
        grant.secrets.to_vec()
    }

    fn prepare(_: &(), grant: &EnvGrant, cx: &mut PrepareCx<'_>) {
        grant.prepare(cx.wasi);
    }

    async fn finish(
        (): (),
        _: &mut super::NoUsage,
        _: &mut Vec<super::tool_call::ToolCall>,
    ) -> Option<super::CommitIntent> {
        None
    }

    fn bind(_: &str, grant: &EnvGrant, _: &Limits) -> Binding {
        if grant.is_empty() {
            return Binding::inert("empty environment, no arguments");
        }
        Binding::granted(
            Kind::Env,
            format!(
                "{} declared variable(s): {}",
                grant.len(),
                grant.names().collect::<Vec<_>>().join(", ")
            ),
        )
    }

    fn describe(grant: &EnvGrant) -> Vec<String> {
        grant
            .vars
            .iter()
            .zip(&grant.from_secret)
            .map(|((name, _), secret)| {
                format!("{name} ({})", if *secret { "secret" } else { "value" })
            })
            .collect()
    }

    fn report(grant: &EnvGrant, _: &super::NoUsage, _: &Limits) -> Option<String> {
        (!grant.is_empty()).then(|| format!("{} variable(s) declared", grant.len()))
    }
}

/// The resolved environment of one agent.
pub struct EnvGrant {
    vars: Vec<(String, String)>,
    /// Per variable, whether its value came from a secret.
    from_secret: Vec<bool>,
    secrets: Arc<[String]>,
}

impl EnvGrant {
    /// Resolves literal values and secret references. A secret is read from
    /// `<secrets_dir>/<secret name>/<key>` (a mounted Kubernetes secret volume);
    /// a missing secret fails the load rather than yielding an empty variable.
    pub fn configure(decls: &[EnvVar], secrets_dir: &Path) -> Result<Self, ConfigureError> {
        let mut vars = Vec::with_capacity(decls.len());
        let mut secrets = Vec::new();
        let from_secret = decls
            .iter()
            .map(|d| d.value.is_none() && d.value_from.is_some())
            .collect();
        for (i, decl) in decls.iter().enumerate() {
            let value = match (&decl.value, &decl.value_from) {
                (Some(value), _) => value.clone(),
                (None, Some(from)) => {
                    let value = read_secret(
                        secrets_dir,
                        &from.secret_key_ref,
                        format!("spec.capabilities.env[{i}].valueFrom.secretKeyRef"),
                    )?;
                    secrets.push(value.clone());
                    value
                }
                (None, None) => String::new(),
            };
            vars.push((decl.name.clone(), value));
        }
        secrets.retain(|s| !s.is_empty());
        Ok(Self {
            vars,
            from_secret,
            secrets: secrets.into(),
        })
    }

    /// Number of declared variables.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// True when no variable is declared.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// Declared variable names, in manifest order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.vars.iter().map(|(k, _)| k.as_str())
    }

    /// Values that came from secrets: never to be printed. The agent's
    /// redaction set is [`super::Grants::secrets`] (these plus the model key).
    pub fn secrets(&self) -> &Arc<[String]> {
        &self.secrets
    }

    /// Phase *prepare*: installs exactly the declared variables.
    pub fn prepare(&self, wasi: &mut WasiCtxBuilder) {
        wasi.envs(&self.vars);
    }
}

// Values are deliberately left out: they may be secrets.
impl fmt::Debug for EnvGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvGrant")
            .field("names", &self.names().collect::<Vec<_>>())
            .finish()
    }
}

/// Largest secret value read, bytes: a Kubernetes Secret holds at most 1 MiB.
pub const MAX_SECRET_BYTES: u64 = 1 << 20;

/// Reads a mounted secret, `<secrets_dir>/<name>/<key>` (at most
/// [`MAX_SECRET_BYTES`], UTF-8), without its trailing newline; a missing,
/// oversized or non-text secret fails the load (`field` names the manifest path).
pub(crate) fn read_secret(
    secrets_dir: &Path,
    r: &crate::manifest::SecretKeyRef,
    field: String,
) -> Result<String, ConfigureError> {
    let path = secrets_dir.join(&r.name).join(&r.key);
    let fail = |why: String| {
        ConfigureError::new(
            field.clone(),
            format!(
                "secret {}/{} cannot be read from {}: {why}; mount it there or set --secrets-dir",
                r.name,
                r.key,
                path.display()
            ),
        )
    };
    let bytes =
        crate::config::read_bounded(&path, MAX_SECRET_BYTES).map_err(|e| fail(e.to_string()))?;
    let value = String::from_utf8(bytes).map_err(|_| fail("not UTF-8 text".into()))?;
    Ok(value.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{EnvVarSource, SecretKeyRef};

    fn literal(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }

    fn secret(name: &str, secret: &str, key: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: SecretKeyRef {
                    name: secret.into(),
                    key: key.into(),
                },
            }),
        }
    }

    #[test]
    fn resolves_secret_from_mounted_file_and_keeps_it_out_of_debug() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tickets")).unwrap();
        std::fs::write(dir.path().join("tickets/token"), "s3cr3t\n").unwrap();
        let grant = EnvGrant::configure(
            &[
                literal("CLUSTER", "prod"),
                secret("TOKEN", "tickets", "token"),
            ],
            dir.path(),
        )
        .unwrap();
        assert_eq!(&grant.secrets()[..], ["s3cr3t"]);
        let debug = format!("{grant:?}");
        assert!(
            debug.contains("TOKEN") && !debug.contains("s3cr3t"),
            "{debug}"
        );
    }

    #[test]
    fn missing_secret_fails_the_load_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let err = EnvGrant::configure(
            &[literal("A", "1"), secret("TOKEN", "tickets", "token")],
            dir.path(),
        )
        .unwrap_err();
        assert_eq!(err.field, "spec.capabilities.env[1].valueFrom.secretKeyRef");
        assert!(err.message.contains("tickets/token"), "{}", err.message);
    }

    #[test]
    fn an_oversized_or_binary_secret_fails_the_load_without_reading_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tickets")).unwrap();
        let file = dir.path().join("tickets/token");
        // Sparse: a huge file costs nothing to make, and must not be read whole.
        std::fs::File::create(&file)
            .unwrap()
            .set_len(64 << 30)
            .unwrap();
        let configure = || EnvGrant::configure(&[secret("TOKEN", "tickets", "token")], dir.path());
        let err = configure().unwrap_err();
        assert!(
            err.message.contains("larger than 1048576 bytes"),
            "{}",
            err.message
        );
        std::fs::write(&file, [0xff, 0xfe, b'\n']).unwrap();
        let err = configure().unwrap_err();
        assert!(err.message.contains("not UTF-8"), "{}", err.message);
    }
}
