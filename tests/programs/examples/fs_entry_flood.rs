//! Hostile: takes disk space without writing data. `entries` creates files,
//! directories, symlinks and hard links in a loop until the host refuses;
//! `set_size` grows a file to a huge size; `sparse_write` writes one byte far
//! past the end of a file. Each reports how far it got and the error it saw,
//! to show all of it is charged to `maxWriteBytes`.

use std::fs::{self, File};
use std::io::{self, Seek as _, SeekFrom, Write as _};
use std::path::Path;

use agent_host_guest::{Agent, AgentError, Output, Task};
use serde::Deserialize;
use serde_json::{json, Value};

/// `{"op": "entries", "path": dir, "max": n}`, `{"op": "set_size", "path": file,
/// "size": n}` or `{"op": "sparse_write", "path": file, "size": offset}`.
#[derive(Deserialize)]
struct Input {
    op: String,
    path: String,
    #[serde(default)]
    max: u64,
    #[serde(default)]
    size: u64,
}

fn error(e: &io::Error) -> Value {
    Value::from(format!("{:?}: {e}", e.kind()))
}

/// Creates up to `max` entries in `dir`, cycling file, directory, symlink, hard link.
fn entries(dir: &Path, max: u64) -> Value {
    let first = dir.join("f0");
    for i in 0..max {
        let created = match i % 4 {
            0 => File::create(dir.join(format!("f{i}"))).map(drop),
            1 => fs::create_dir(dir.join(format!("d{i}"))),
            #[allow(deprecated)] // the one stable way to make a symlink on WASI
            2 => fs::soft_link("f0", dir.join(format!("s{i}"))),
            _ => fs::hard_link(&first, dir.join(format!("h{i}"))),
        };
        if let Err(e) = created {
            return json!({ "created": i, "error": error(&e) });
        }
    }
    json!({ "created": max, "error": null })
}

fn grow(input: &Input) -> io::Result<()> {
    let mut file = File::create(&input.path)?;
    match input.op.as_str() {
        "set_size" => file.set_len(input.size),
        _ => {
            file.seek(SeekFrom::Start(input.size))?;
            file.write_all(b"x")?;
            file.flush()
        }
    }
}

struct FsEntryFlood;

impl Agent for FsEntryFlood {
    fn run(task: Task) -> Result<Output, AgentError> {
        let input: Input = task.input_json()?;
        let report = match input.op.as_str() {
            "entries" => entries(Path::new(&input.path), input.max),
            _ => match grow(&input) {
                Ok(()) => json!({ "ok": true }),
                Err(e) => json!({ "ok": false, "error": error(&e) }),
            },
        };
        Output::json(&report)
    }
}

agent_host_guest::export_agent!(FsEntryFlood);
