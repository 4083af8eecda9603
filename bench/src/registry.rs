//! Starts from a registry: hello pushed to a loopback OCI registry, signed,
//! and named by digest in a manifest otherwise identical to the local one;
//! `agent-host serve` start → ready from the registry cold (pull + verify +
//! compile) and warm (OCI and compile caches; the signature still verified),
//! against today's start from a local file with a precompiled cache.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use agent_host_test_guests as guests;
use agent_host_test_guests::registry::Registry;
use anyhow::Context as _;

use crate::process;
use crate::scenarios::{at_most, ratio, Ctx, Id, Outcome, Row};

/// The repository hello is pushed to, under the registry's address.
const REPOSITORY: &str = "agents/hello";

/// The goal: a warm start of a verified component, relative to a cached local start.
const WARM_GOAL: f64 = 1.2;

/// Everything a start from the registry needs: the registry (kept up for the
/// whole scenario, stopped on drop), the manifest naming the signed image and
/// the host arguments pointing at the registry and the trust policy.
struct Published {
    _registry: Registry,
    manifest: PathBuf,
    args: Vec<std::ffi::OsString>,
}

impl Published {
    fn args(&self) -> Vec<&OsStr> {
        self.args.iter().map(|a| a.as_os_str()).collect()
    }
}

/// Start → ready: local file (cached), registry warm, registry cold.
pub async fn scenario(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let dir = ctx.work.path().join("registry");
    std::fs::create_dir_all(&dir)?;
    let published = publish(ctx, &dir)?;
    let args = published.args();
    let from_registry =
        |cache: &Path| process::time_until_ready_of(ctx, cache, &published.manifest, &args);

    // Warm both caches (unmeasured): the run's compile cache for the local
    // file, and one cache directory (compiled code and OCI blobs and
    // signature manifests) for the image.
    let warm_cache = dir.join("warm-cache");
    process::time_until_ready(ctx, &ctx.cache_dir)?;
    from_registry(&warm_cache)?;
    anyhow::ensure!(
        warm_cache.join("oci").is_dir(),
        "the image's start left no OCI cache in {}",
        warm_cache.display()
    );
    // Alternating, so drift in the machine's speed hits both alike.
    let (mut local, mut cached) = (Vec::new(), Vec::new());
    for _ in 0..ctx.n(30, 2) {
        local.push(process::time_until_ready(ctx, &ctx.cache_dir)?);
        cached.push(from_registry(&warm_cache)?);
    }
    // Cold: both caches empty.
    let mut cold = Vec::new();
    for i in 0..ctx.n(5, 1) {
        let empty = dir.join(format!("cold-cache-{i}"));
        cold.push(from_registry(&empty)?);
        std::fs::remove_dir_all(&empty).ok();
    }

    let warm = Row::latency(
        "`agent-host serve` start → hello ready, signed image, warm (OCI + compile cache, signature verified)",
        "measured",
        cached,
    );
    let cold = Row::latency(
        "`agent-host serve` start → hello ready, signed image, cold (pull + verify + compile)",
        "measured",
        cold,
    );
    let local = Row::latency(
        "`agent-host serve` start → hello ready, local file, precompiled cache (alternating with warm)",
        "baseline",
        local,
    );
    let warm_ratio = warm.median() / local.median();
    let cold_ratio = cold.median() / local.median();
    Ok(Outcome {
        id: Id::RegistryStart,
        title: "Start from a registry",
        ratios: vec![
            ratio(
                "warm registry start / cached local start (median)",
                warm_ratio,
            ),
            ratio(
                "cold registry start / cached local start (median)",
                cold_ratio,
            ),
        ],
        goals: vec![at_most(
            &format!("warm start of a verified image ≤ {WARM_GOAL}x a cached local start"),
            warm_ratio,
            WARM_GOAL,
            format!("{warm_ratio:.2}x"),
        )],
        rows: vec![warm, cold, local],
    })
}

/// Starts a loopback registry, makes a key, pushes hello, signs it, writes a
/// trust policy requiring that key and a copy of the hello manifest naming the
/// image by digest.
fn publish(ctx: &Ctx, dir: &Path) -> anyhow::Result<Published> {
    anyhow::ensure!(
        on_path("docker-registry"),
        "docker-registry not found on PATH: the registry-start scenario pushes to a \
         loopback registry (Debian package docker-registry; `make setup` installs it), \
         or leave it out with --only"
    );
    let registry = Registry::start();
    let addr = registry.addr();
    let key = dir.join("platform");
    // push, sign and keygen on a cache of their own, not the measured ones.
    let host = |args: &[&OsStr]| -> anyhow::Result<String> {
        let mut cmd = process::host_command(ctx);
        cmd.env("AGENT_HOST_CACHE_DIR", dir.join("publish-cache"))
            .args(args)
            .args(["--insecure-registry", &addr])
            .stdin(std::process::Stdio::null());
        let out = cmd.output().with_context(|| format!("spawning {cmd:?}"))?;
        anyhow::ensure!(
            out.status.success(),
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?.trim().to_string())
    };
    host(&["keygen".as_ref(), "--out".as_ref(), key.as_os_str()])?;
    let pinned = host(&[
        "push".as_ref(),
        guests::HELLO.as_ref(),
        format!("{addr}/{REPOSITORY}:bench").as_ref(),
    ])?;
    anyhow::ensure!(
        pinned.starts_with(&format!("{addr}/{REPOSITORY}@sha256:")),
        "push printed {pinned:?}, not a digest-pinned reference"
    );
    host(&[
        "sign".as_ref(),
        pinned.as_ref(),
        "--key".as_ref(),
        key.with_extension("key").as_os_str(),
    ])?;
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: agent-host.dev/v1alpha1\nkind: TrustPolicy\nkeys:\n  \
             - {{name: platform, publicKeyFile: platform.pub}}\nrules:\n  \
             - {{repositories: '{addr}/agents/**', signatures: require, keys: [platform]}}\n"
        ),
    )?;
    let manifest = dir.join("hello.yaml");
    std::fs::write(
        &manifest,
        image_manifest(&std::fs::read_to_string(&ctx.hello_manifest)?, &pinned)?,
    )?;
    Ok(Published {
        _registry: registry,
        manifest,
        args: vec![
            "--trust-policy".into(),
            policy.into(),
            "--insecure-registry".into(),
            addr.into(),
        ],
    })
}

/// The local manifest with its one `path:` component replaced by `image:`,
/// so that limits and everything else stay the same.
fn image_manifest(local: &str, image: &str) -> anyhow::Result<String> {
    let mut replaced = 0;
    let lines: Vec<String> = local
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            match trimmed.strip_prefix("path:") {
                Some(_) => {
                    replaced += 1;
                    let indent = &line[..line.len() - trimmed.len()];
                    format!("{indent}image: {image}")
                }
                None => line.to_string(),
            }
        })
        .collect();
    anyhow::ensure!(
        replaced == 1,
        "expected one `path:` line in the hello manifest, found {replaced}"
    );
    Ok(lines.join("\n") + "\n")
}

/// Whether an executable `name` is on PATH.
fn on_path(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| {
            std::fs::metadata(d.join(name))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_manifest_replaces_only_the_component_path() {
        let local = "kind: Agent\nspec:\n  component:\n    # a comment\n    path: ../hello.wasm\n  limits:\n    fuel: 5\n";
        let image = image_manifest(local, "127.0.0.1:5000/agents/hello@sha256:ab").unwrap();
        assert_eq!(
            image,
            "kind: Agent\nspec:\n  component:\n    # a comment\n    image: 127.0.0.1:5000/agents/hello@sha256:ab\n  limits:\n    fuel: 5\n"
        );
        assert!(image_manifest("kind: Agent\n", "x").is_err());
    }

    #[test]
    fn the_real_hello_manifest_has_one_path() {
        let local = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello/agent.yaml"),
        )
        .unwrap();
        let image = image_manifest(&local, "r/a@sha256:00").unwrap();
        assert!(image.contains("    image: r/a@sha256:00\n") && !image.contains("path:"));
    }
}
