//! Probe: performs one filesystem operation chosen by the input (read, write,
//! list, create_dir, remove, rename) and reports the result or the I/O error,
//! to test preopens, read-only mounts and path escapes.

use std::{fs, io, path::Path};

use agent_host_guest::{Agent, AgentError, Output, Task};
use serde::Deserialize;
use serde_json::{json, Value};

/// `{"op": "...", "path": "...", "data": "...", "to": "..."}`.
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
    match input.op.as_str() {
        "read" => Ok(Value::from(
            String::from_utf8_lossy(&fs::read(path)?).into_owned(),
        )),
        "write" => fs::write(path, &input.data).map(|()| Value::Null),
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
        "rename" => {
            let to = input
                .to
                .as_deref()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "rename needs `to`"))?;
            fs::rename(path, to).map(|()| Value::Null)
        }
        other => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unknown op {other:?}"),
        )),
    }
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
