//! Probe: performs one filesystem operation chosen by the input (read, write,
//! create, truncate, append, list, metadata, create_dir, remove, rename,
//! hard_link) and reports the result or the I/O error, to test preopens,
//! read-only mounts and escapes through `..` and symlinks.

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::path::Path;

use agent_host_guest::{Agent, AgentError, Output, Task};
use serde::Deserialize;
use serde_json::{json, Value};

/// `{"op": "...", "path": "...", "data": "...", "to": "..."}`; `to` is the
/// destination of `rename` and `hard_link`.
#[derive(Deserialize)]
struct Input {
    op: String,
    path: String,
    #[serde(default)]
    data: String,
    #[serde(default)]
    to: Option<String>,
}

fn perform(input: &Input) -> io::Result<Value> {
    let path = Path::new(&input.path);
    let to = || {
        input.to.as_deref().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} needs `to`", input.op),
            )
        })
    };
    match input.op.as_str() {
        "read" => Ok(Value::from(
            String::from_utf8_lossy(&fs::read(path)?).into_owned(),
        )),
        "write" => fs::write(path, &input.data).map(|()| Value::Null),
        "create" => write_with(OpenOptions::new().write(true).create_new(true), path, ""),
        "truncate" => write_with(OpenOptions::new().write(true).truncate(true), path, ""),
        "append" => write_with(OpenOptions::new().append(true), path, &input.data),
        "metadata" => {
            let meta = fs::metadata(path)?;
            Ok(json!({ "len": meta.len(), "is_dir": meta.is_dir(), "is_file": meta.is_file() }))
        }
        "list" => {
            let mut names = fs::read_dir(path)?
                .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<io::Result<Vec<_>>>()?;
            names.sort();
            Ok(Value::from(names))
        }
        "create_dir" => fs::create_dir(path).map(|()| Value::Null),
        "remove" if fs::symlink_metadata(path)?.is_dir() => {
            fs::remove_dir(path).map(|()| Value::Null)
        }
        "remove" => fs::remove_file(path).map(|()| Value::Null),
        "rename" => fs::rename(path, to()?).map(|()| Value::Null),
        "hard_link" => fs::hard_link(path, to()?).map(|()| Value::Null),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unknown op {other:?}"),
        )),
    }
}

/// Opens `path` with `options` and writes `data` (possibly nothing).
fn write_with(options: &OpenOptions, path: &Path, data: &str) -> io::Result<Value> {
    options.open(path)?.write_all(data.as_bytes())?;
    Ok(Value::Null)
}

struct FsProbe;

impl Agent for FsProbe {
    fn run(task: Task) -> Result<Output, AgentError> {
        let input: Input = task.input_json()?;
        let report = match perform(&input) {
            Ok(data) => json!({ "ok": true, "data": data }),
            Err(e) => json!({ "ok": false, "error": format!("{:?}: {e}", e.kind()) }),
        };
        Output::json(&report)
    }
}

agent_host_guest::export_agent!(FsProbe);
