//! deploy/ checked before a cluster sees it: every manifest against the official
//! Kubernetes schemas, the cluster and example Agents against the CRD (schema and CEL
//! rules), the admission policy's CEL rules on good and bad Agents, and the settings
//! that must agree across files (drain timing, Pod Security, mounts, memory, egress).
//! The PyPI tools come from `make setup`; without them these tests fail, never skip.

#[path = "deploy/agents.rs"]
mod agents;
#[path = "deploy/kustomize.rs"]
mod kustomize;
#[path = "deploy/oci.rs"]
mod oci;
#[path = "deploy/pods.rs"]
mod pods;
#[path = "deploy/store.rs"]
mod store;
#[path = "deploy/tools.rs"]
mod tools;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kustomize::{all, documents, is_kustomization, yaml_files, Kustomization};
use serde_json::Value;

/// The oldest Kubernetes the manifests are written for (VAP v1, the preStop sleep
/// action and the quantity() CEL library are all older).
const MIN_KUBERNETES: &str = "1.33.0";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn deploy() -> PathBuf {
    repo().join("deploy")
}

fn rel(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let root = repo().canonicalize().unwrap();
    path.strip_prefix(&root)
        .unwrap_or(&path)
        .display()
        .to_string()
}

fn kustomizations() -> Vec<Kustomization> {
    yaml_files(&deploy())
        .iter()
        .filter(|p| is_kustomization(p))
        .map(|p| Kustomization::load(p.parent().unwrap()))
        .collect()
}

fn base() -> Kustomization {
    Kustomization::load(&deploy().join("base"))
}

fn overlays() -> Vec<Kustomization> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(deploy().join("overlays"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "deploy/overlays holds no overlay");
    dirs.iter().map(|d| Kustomization::load(d)).collect()
}

/// The Agents written for a cluster (overlays) and for local runs (examples).
fn agent_files() -> Vec<PathBuf> {
    let overlay_agents = yaml_files(&deploy().join("overlays"))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("agent")
        });
    let examples = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path().join("agent.yaml"))
        .filter(|p| p.is_file());
    let mut files: Vec<PathBuf> = overlay_agents.chain(examples).collect();
    files.sort();
    files
}

/// The overlay Agent the policy and image tests vary.
fn cluster_agent() -> Value {
    documents(&deploy().join("overlays/incident-responder/agent.yaml")).remove(0)
}

/// The overlay that ships the component in an agent image copied by an initContainer.
fn initcontainer_overlay() -> Kustomization {
    Kustomization::load(&deploy().join("overlays/incident-responder-initcontainer"))
}

fn crd_schema() -> Value {
    let crd = documents(&deploy().join("crd.yaml")).remove(0);
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

// ---------------------------------------------------------------- kustomize layout

#[test]
fn every_manifest_is_applied_by_a_kustomization_and_every_listed_path_exists() {
    let kustomizations = kustomizations();
    let mut listed = BTreeSet::new();
    let used_components: BTreeSet<PathBuf> = kustomizations
        .iter()
        .filter(|k| !k.is_component())
        .flat_map(|k| k.components.iter().map(|c| c.canonicalize().unwrap()))
        .collect();
    for k in &kustomizations {
        if k.is_component() {
            assert!(
                used_components.contains(&k.dir.canonicalize().unwrap()),
                "{}: no kustomization lists this component, so nothing builds or validates it",
                rel(&k.dir)
            );
        }
        let at = rel(&k.dir);
        for resource in &k.resources {
            assert!(
                resource.is_file() || resource.join("kustomization.yaml").is_file(),
                "{at}: resource {} is neither a file nor a kustomization",
                resource.display()
            );
            listed.insert(resource.canonicalize().unwrap());
        }
        for component in &k.components {
            assert!(
                component.join("kustomization.yaml").is_file(),
                "{at}: component {} holds no kustomization.yaml",
                component.display()
            );
        }
        for file in k.patches.iter().chain(&k.generated_from) {
            assert!(file.is_file(), "{at}: {} does not exist", file.display());
            listed.insert(file.canonicalize().unwrap());
        }
        // Patches must land on a resource; build() panics naming any that does not.
        // A component's land when a kustomization that lists it builds.
        if !k.is_component() {
            k.build();
        }
    }
    // crd.yaml is applied on its own (see deploy/README.md): kustomize loads no file
    // outside a kustomization's directory.
    let crd = deploy().join("crd.yaml").canonicalize().unwrap();
    for file in yaml_files(&deploy()) {
        let canonical = file.canonicalize().unwrap();
        if is_kustomization(&file) || canonical == crd {
            continue;
        }
        assert!(
            listed.contains(&canonical),
            "{} is in no kustomization: nothing applies it",
            rel(&file)
        );
    }
}

#[test]
fn overlay_images_name_containers_of_their_build() {
    for overlay in overlays() {
        let images: BTreeSet<String> = all(&overlay.build(), "Deployment")
            .flat_map(|d| pod_containers(d).map(|c| c["image"].as_str().unwrap().to_owned()))
            .collect();
        for image in overlay.doc["images"].as_array().into_iter().flatten() {
            let name = image["name"].as_str().unwrap();
            assert!(
                images.contains(name),
                "{}: images entry {name} matches no container image ({images:?}), so it sets nothing",
                rel(&overlay.dir)
            );
        }
    }
}

// ---------------------------------------------------------- Kubernetes schemas

#[test]
fn manifests_validate_against_the_kubernetes_schemas_of_the_oldest_and_newest_supported_versions() {
    let (package, newest) = tools::kubernetes_validate_versions();
    eprintln!("kubernetes-validate {package}: schemas of Kubernetes {MIN_KUBERNETES} and {newest}");
    let kustomizations = kustomizations();
    let patches: BTreeSet<PathBuf> = kustomizations
        .iter()
        .flat_map(|k| k.patches.clone())
        .collect();

    // Whole files as written, except patches: those are partial objects, validated
    // below merged onto the resources they patch.
    let mut files = Vec::new();
    let mut documents_to_check = 0;
    for file in yaml_files(&deploy()) {
        if !is_kustomization(&file) && !patches.contains(&file) {
            documents_to_check += documents(&file).len();
            files.push(file.display().to_string());
        }
    }
    let built = tempfile::tempdir().unwrap();
    for k in kustomizations.iter().filter(|k| !k.is_component()) {
        let docs = k.build();
        let name = rel(&k.dir).replace('/', "_");
        let path = built.path().join(format!("{name}.built.yaml"));
        let yaml: Vec<String> = docs
            .iter()
            .map(|d| serde_norway::to_string(d).unwrap())
            .collect();
        std::fs::write(&path, yaml.join("---\n")).unwrap();
        documents_to_check += docs.len();
        files.push(path.display().to_string());
    }

    for kubernetes in [MIN_KUBERNETES, newest.as_str()] {
        let (success, lines) = tools::kubernetes_validate(kubernetes, &files);
        let mut checked = 0;
        let mut problems = Vec::new();
        for line in lines.iter().filter(|l| !l.trim().is_empty()) {
            let passed = line.starts_with("INFO ") && line.contains(" passed for resource ");
            // The one kind without an official schema: checked against the CRD below.
            let agent = line.starts_with("WARN ")
                && line.contains(
                    "Couldn't find schema for kind Agent with api version agent-host.dev/v1alpha1",
                );
            if passed || agent {
                checked += 1;
            } else {
                problems.push(line.as_str());
            }
        }
        assert!(
            success && problems.is_empty(),
            "Kubernetes {kubernetes}:\n{}",
            problems.join("\n")
        );
        assert_eq!(
            checked, documents_to_check,
            "Kubernetes {kubernetes}: every document is checked"
        );
    }
}

// ------------------------------------------------------------------ the images

#[test]
fn dockerfile_builds_the_host_into_a_nonroot_image_and_ships_the_initcontainer_component() {
    let dockerfile = std::fs::read_to_string(deploy().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("cargo build --release --locked -p agent-host"));
    let last_stage = dockerfile.rsplit("\nFROM ").next().unwrap();
    assert!(
        last_stage.starts_with("gcr.io/distroless/cc-debian12:nonroot"),
        "the default target is the host"
    );
    assert!(last_stage.contains("USER 65532:65532"));
    assert!(last_stage.contains(r#"ENTRYPOINT ["/agent-host"]"#));
    // The initContainer overlay's Agent loads the file the agent image puts under /agents.
    let docs = initcontainer_overlay().build();
    let component = kustomize::only(&docs, "Agent")["spec"]["component"]["path"]
        .as_str()
        .expect("the initContainer overlay's Agent names a path")
        .to_owned();
    let file = component
        .strip_prefix("/agents/")
        .expect("a component under /agents");
    assert!(
        dockerfile.contains(&format!("/out/agents/{file}")),
        "the image ships no {file}"
    );
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l.trim() == "target/"),
        "the build context leaves out target/"
    );
}

// ------------------------------------------------------------------- helpers

fn pod_containers(deployment: &Value) -> impl Iterator<Item = &Value> {
    let spec = &deployment["spec"]["template"]["spec"];
    let init = spec["initContainers"].as_array().into_iter().flatten();
    spec["containers"].as_array().unwrap().iter().chain(init)
}

fn host_container(deployment: &Value) -> &Value {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "agent-host")
        .expect("a container named agent-host")
}

/// Each kustomization's built resources, named by directory.
fn builds() -> Vec<(String, Vec<Value>)> {
    std::iter::once(base())
        .chain(overlays())
        .map(|k| (rel(&k.dir), k.build()))
        .collect()
}

/// `value` with the JSON pointer `at` set to `to` (its parent must exist).
fn with(value: &Value, at: &str, to: Value) -> Value {
    let mut changed = value.clone();
    let (parent, key) = at.rsplit_once('/').unwrap();
    match changed.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.insert(key.to_owned(), to);
        }
        Some(Value::Array(items)) => items[key.parse::<usize>().unwrap()] = to,
        _ => panic!("{at}: no parent"),
    }
    changed
}

/// `value` without the field at the JSON pointer `at`.
fn without(value: &Value, at: &str) -> Value {
    let mut changed = value.clone();
    let (parent, key) = at.rsplit_once('/').unwrap();
    changed
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap()
        .remove(key);
    changed
}
