//! `agent-host push`, `sign` and `keygen`: the publishing side of components
//! from registries, so the whole flow works without other tools.

use std::path::PathBuf;
use std::process::ExitCode;

use agent_host::manifest::reference::{Reference, Target};
use agent_host::oci::auth::Credentials;
use agent_host::oci::client::Client;
use agent_host::oci::signature::PrivateKey;

use super::{fail, HostArgs};

#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// The component (.wasm, built for wasm32-wasip2)
    file: PathBuf,
    /// Where to publish it: REGISTRY/REPOSITORY:TAG
    reference: String,
}

#[derive(clap::Args, Debug)]
pub struct SignArgs {
    /// The component to sign: REGISTRY/REPOSITORY@sha256:<digest> (a tag is resolved to its digest)
    reference: String,
    /// Private key: PEM PKCS#8 ECDSA P-256 (`agent-host keygen` writes one)
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct KeygenArgs {
    /// Writes PREFIX.key (private, mode 0600) and PREFIX.pub (for the trust policy)
    #[arg(long, value_name = "PREFIX")]
    out: PathBuf,
}

fn client(host: &HostArgs) -> Result<Client, String> {
    let credentials = match &host.registry_auth {
        Some(path) => Credentials::from_file(path).map_err(|e| format!("--registry-auth {e}"))?,
        None => Credentials::default(),
    };
    Ok(Client::new(credentials, host.insecure_registry.clone()))
}

pub async fn push(host: &HostArgs, args: PushArgs) -> ExitCode {
    let reference = match Reference::parse(&args.reference) {
        Ok(r) if matches!(r.target, Target::Tag(_)) => r,
        Ok(_) => {
            return fail(format!(
                "{}: push to a tag (REGISTRY/REPOSITORY:TAG); the digest is printed",
                args.reference
            ))
        }
        Err(e) => return fail(format!("{}: {e}", args.reference)),
    };
    let wasm = match std::fs::read(&args.file) {
        Ok(w) if w.len() as u64 <= agent_host::config::MAX_COMPONENT_BYTES => w,
        Ok(w) => {
            return fail(format!(
                "{}: {} bytes; a component has at most {}",
                args.file.display(),
                w.len(),
                agent_host::config::MAX_COMPONENT_BYTES
            ))
        }
        Err(e) => return fail(format!("{}: {e}", args.file.display())),
    };
    let client = match client(host) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match agent_host::oci::push(&client, wasm, &reference).await {
        Ok(digest) => {
            println!("{}", reference.with_digest(&digest));
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("{}: {}: {e}", args.file.display(), reference)),
    }
}

pub async fn sign(host: &HostArgs, args: SignArgs) -> ExitCode {
    let reference = match Reference::parse(&args.reference) {
        Ok(r) => r,
        Err(e) => return fail(format!("{}: {e}", args.reference)),
    };
    let key = match PrivateKey::from_file(&args.key) {
        Ok(k) => k,
        Err(e) => return fail(format!("--key {e}")),
    };
    let client = match client(host) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match agent_host::oci::sign(&client, &reference, &key).await {
        Ok(digest) => {
            println!("signed {}", reference.with_digest(&digest));
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("{reference}: {e}")),
    }
}

pub fn keygen(args: KeygenArgs) -> ExitCode {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let (private, public) = PrivateKey::generate();
    let with = |ext: &str| {
        let mut name = args.out.clone().into_os_string();
        name.push(ext);
        PathBuf::from(name)
    };
    let (key_path, pub_path) = (with(".key"), with(".pub"));
    // Never overwrites: a replaced key would orphan every signature made with it.
    let write = |path: &PathBuf, text: &str, mode: u32| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    if let Err(e) =
        write(&key_path, &private, 0o600).and_then(|()| write(&pub_path, &public.to_pem(), 0o644))
    {
        return fail(e);
    }
    println!(
        "private key {}\npublic key  {}",
        key_path.display(),
        pub_path.display()
    );
    ExitCode::SUCCESS
}
