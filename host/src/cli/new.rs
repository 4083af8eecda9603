//! `agent-host new NAME --lang rust|python|ts`: scaffolds an agent — its
//! source, a manifest with modest limits and no grants, and the one command
//! that builds it. The guest SDKs are not published yet, so the scaffold
//! refers to those of the checkout this binary was built from (or `--sdk`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::fail;

/// A guest language.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    /// Rust, with the `agent-host-guest` crate (cargo, target wasm32-wasip2)
    Rust,
    /// Python, with the `agent_host` package (componentize-py)
    Python,
    /// TypeScript, with the `@agent-host/guest` package (jco componentize)
    Ts,
}

#[derive(clap::Args, Debug)]
pub struct NewArgs {
    /// The agent's name (a DNS-1123 label: lowercase letters, digits and -),
    /// also the directory created
    name: String,
    /// The language of the agent
    #[arg(long, value_enum, default_value = "rust")]
    lang: Lang,
    /// The agent-host checkout whose guest SDKs the agent uses
    #[arg(long, value_name = "DIR", default_value_os_t = checkout())]
    sdk: PathBuf,
    /// Where to create the agent's directory
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
}

/// The checkout this binary was built from.
fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is inside the checkout")
        .to_path_buf()
}

/// One file of a template: its path in the new directory and its text.
struct File {
    path: &'static str,
    text: &'static str,
}

struct Template {
    files: &'static [File],
    /// The build command, run in the agent's directory.
    build: &'static str,
    /// The component the build writes, relative to the agent's directory.
    component: &'static str,
    /// The SDK inside the checkout.
    sdk: &'static str,
    memory: &'static str,
}

const RUST: Template = Template {
    files: &[
        File {
            path: "Cargo.toml",
            text: include_str!("../../templates/rust/Cargo.toml"),
        },
        File {
            path: "src/lib.rs",
            text: include_str!("../../templates/rust/src/lib.rs"),
        },
    ],
    build: "cargo build --target wasm32-wasip2 --release",
    component: "target/wasm32-wasip2/release/{{crate}}.wasm",
    sdk: "guest-sdk",
    memory: "32Mi",
};

const PYTHON: Template = Template {
    files: &[File {
        path: "app.py",
        text: include_str!("../../templates/python/app.py"),
    }],
    build: "python3 {{checkout}}/scripts/build-python-agent.py . {{crate}}.wasm",
    component: "{{crate}}.wasm",
    sdk: "guest-sdk/python",
    // The interpreter's own heap comes first (a hello peaks at ~12 MiB).
    memory: "64Mi",
};

const TS: Template = Template {
    files: &[File {
        path: "app.ts",
        text: include_str!("../../templates/ts/app.ts"),
    }],
    build: "bash {{checkout}}/scripts/build-ts-agent.sh . {{crate}}.wasm",
    component: "{{crate}}.wasm",
    sdk: "guest-sdk/js",
    // The engine's own heap comes first (a hello peaks at ~12 MiB).
    memory: "64Mi",
};

const MANIFEST: &str = include_str!("../../templates/agent.yaml");

pub fn new(args: NewArgs) -> ExitCode {
    match scaffold(&args) {
        Ok((dir, build)) => {
            println!("created {}", dir.display());
            println!("next:");
            println!("  cd {}", dir.display());
            println!("  {build}");
            println!("  agent-host run -f agent.yaml --input '{{\"name\": \"you\"}}'");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn template(lang: Lang) -> &'static Template {
    match lang {
        Lang::Rust => &RUST,
        Lang::Python => &PYTHON,
        Lang::Ts => &TS,
    }
}

/// Writes the agent's directory and returns it with its build command;
/// refuses a bad name, an existing directory and a checkout without the SDK.
fn scaffold(args: &NewArgs) -> Result<(PathBuf, String), String> {
    let name = &args.name;
    let label = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name.as_bytes()[0].is_ascii_lowercase();
    if !label {
        return Err(format!(
            "{name:?} is not an agent name: at most 63 lowercase letters, digits and -, starting with a letter and ending with a letter or digit"
        ));
    }
    let template = template(args.lang);
    let sdk = args.sdk.join(template.sdk);
    if !sdk.is_dir() {
        return Err(format!(
            "no guest SDK at {}: the SDKs are not published yet; pass --sdk <agent-host checkout>",
            sdk.display()
        ));
    }
    let sdk = sdk
        .canonicalize()
        .map_err(|e| format!("{}: {e}", sdk.display()))?;
    let dir = args.dir.join(name);
    if dir.exists() {
        return Err(format!(
            "{} already exists; choose another name or --dir",
            dir.display()
        ));
    }
    let crate_name = name.replace('-', "_");
    let checkout = args
        .sdk
        .canonicalize()
        .map_err(|e| format!("{}: {e}", args.sdk.display()))?;
    let fill = |text: &str| {
        text.replace("{{build}}", template.build)
            .replace("{{checkout}}", &checkout.display().to_string())
            .replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{sdk}}", &sdk.display().to_string())
            .replace("{{memory}}", template.memory)
    };
    let component = fill(template.component);
    let mut files: Vec<(PathBuf, String)> = template
        .files
        .iter()
        .map(|f| (dir.join(f.path), fill(f.text)))
        .collect();
    files.push((
        dir.join("agent.yaml"),
        fill(MANIFEST).replace("{{component}}", &component),
    ));
    for (path, text) in files {
        let parent = path.parent().expect("a file inside the directory");
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok((dir, fill(template.build)))
}
