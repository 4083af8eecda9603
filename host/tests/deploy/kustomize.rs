//! Enough of kustomize to check deploy/ without it: the files a kustomization lists,
//! and its resources with its components' and its own patches merged in (strategic
//! merge, for the list fields our patches touch, `$patch: delete`, and `null` removing
//! a field). Namespace,
//! labels, images and generators are not applied; the tests check those settings
//! directly.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// Every YAML document in `path`, as JSON values; empty documents are dropped.
pub fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// YAML files under `dir`, recursively, sorted.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

pub fn is_kustomization(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "kustomization.yaml")
}

/// A kustomization.yaml and the paths it names, resolved against its directory.
pub struct Kustomization {
    pub dir: PathBuf,
    pub doc: Value,
    /// `resources`: files, or directories holding a kustomization.
    pub resources: Vec<PathBuf>,
    /// `components`: directories holding a `kind: Component` kustomization.
    pub components: Vec<PathBuf>,
    /// `patches[].path`.
    pub patches: Vec<PathBuf>,
    /// `configMapGenerator[].files` (and `secretGenerator`'s).
    pub generated_from: Vec<PathBuf>,
}

impl Kustomization {
    pub fn load(dir: &Path) -> Self {
        let doc = documents(&dir.join("kustomization.yaml")).remove(0);
        let paths = |items: Option<&Value>, field: Option<&str>| -> Vec<PathBuf> {
            let items = items.and_then(Value::as_array).cloned().unwrap_or_default();
            items
                .iter()
                .filter_map(|item| match field {
                    Some(field) => item.get(field).and_then(Value::as_str),
                    None => item.as_str(),
                })
                .map(|p| dir.join(p))
                .collect()
        };
        let generated_from = ["configMapGenerator", "secretGenerator"]
            .iter()
            .flat_map(|g| doc[g].as_array().cloned().unwrap_or_default())
            .flat_map(|g| paths(g.get("files"), None))
            .collect();
        Self {
            dir: dir.to_path_buf(),
            resources: paths(doc.get("resources"), None),
            components: paths(doc.get("components"), None),
            patches: paths(doc.get("patches"), Some("path")),
            generated_from,
            doc,
        }
    }

    /// A `kind: Component`: built only as part of a kustomization that lists it.
    pub fn is_component(&self) -> bool {
        self.doc["kind"] == "Component"
    }

    /// The resources this kustomization builds, with patches merged at each level.
    pub fn build(&self) -> Vec<Value> {
        assert!(
            !self.is_component(),
            "{}: a component builds only inside a kustomization",
            self.dir.display()
        );
        let mut docs = Vec::new();
        self.accumulate(&mut docs);
        docs
    }

    /// Adds this kustomization's resources to `docs`, then applies its components
    /// (their resources and patches), then its own patches, as kustomize orders them.
    fn accumulate(&self, docs: &mut Vec<Value>) {
        for resource in &self.resources {
            if resource.is_dir() {
                docs.extend(Kustomization::load(resource).build());
            } else {
                docs.extend(documents(resource));
            }
        }
        for component in &self.components {
            let component = Kustomization::load(component);
            assert!(
                component.is_component(),
                "{}: listed under components but not a kind: Component",
                component.dir.display()
            );
            component.accumulate(docs);
        }
        for patch_file in &self.patches {
            for patch in documents(patch_file) {
                let target = docs
                    .iter()
                    .position(|d| same_object(d, &patch))
                    .unwrap_or_else(|| {
                        panic!(
                            "{}: patches no resource of {}",
                            patch_file.display(),
                            id(&patch)
                        )
                    });
                if patch["$patch"] == "delete" {
                    docs.remove(target);
                } else {
                    merge(&mut docs[target], &patch);
                }
            }
        }
    }
}

/// `Kind/name`, for messages.
pub fn id(doc: &Value) -> String {
    format!(
        "{}/{}",
        doc["kind"].as_str().unwrap_or("?"),
        doc["metadata"]["name"].as_str().unwrap_or("?")
    )
}

fn same_object(a: &Value, b: &Value) -> bool {
    a["kind"] == b["kind"] && a["metadata"]["name"] == b["metadata"]["name"]
}

/// The patchMergeKey of the list fields our patches touch; other lists are replaced,
/// as strategic merge does for lists without one (args, HPA metrics).
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers" | "initContainers" | "volumes" | "env" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        _ => None,
    }
}

fn merge(base: &mut Value, patch: &Value) {
    let (Value::Object(base), Value::Object(patch)) = (base, patch) else {
        unreachable!("merge is called on objects only")
    };
    for (field, value) in patch {
        match (base.get_mut(field), value, merge_key(field)) {
            (Some(Value::Array(items)), Value::Array(patches), Some(key)) => {
                for p in patches {
                    match items.iter_mut().find(|i| i[key] == p[key]) {
                        Some(item) => merge(item, p),
                        None => items.push(p.clone()),
                    }
                }
            }
            (Some(existing @ Value::Object(_)), Value::Object(_), _) => merge(existing, value),
            // Strategic merge (and kustomize on custom resources) removes a field set to null.
            (_, Value::Null, _) => {
                base.remove(field);
            }
            _ => {
                base.insert(field.clone(), value.clone());
            }
        }
    }
}

/// The one document of `kind` in `docs`.
pub fn only<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let mut found = docs.iter().filter(|d| d["kind"] == kind);
    let doc = found.next().unwrap_or_else(|| panic!("no {kind}"));
    assert!(found.next().is_none(), "more than one {kind}");
    doc
}

/// All documents of `kind` in `docs`.
pub fn all<'a>(docs: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> {
    docs.iter().filter(move |d| d["kind"] == kind)
}
