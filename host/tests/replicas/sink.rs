//! A downstream API on loopback that records every request it gets with its
//! `Idempotency-Key`, so a test can see which side effects a re-run repeated
//! and whether the repeats carried the same key.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::support::read_http_request;

/// Most requests recorded: far above any test's count, so a runaway agent
/// fails the test (see [`Sink::requests`]) instead of filling its memory.
const MAX_RECORDED: usize = 100_000;

/// One request the sink got.
#[derive(Clone, Debug)]
pub struct SinkRequest {
    /// Its `Idempotency-Key` header, if any.
    pub key: Option<String>,
    /// Its body as JSON (`Null` when it is not JSON).
    pub body: Value,
}

/// The running sink; its threads live as long as the test process.
pub struct Sink {
    /// `http://127.0.0.1:<port>/`.
    pub url: String,
    seen: Arc<Mutex<Vec<SinkRequest>>>,
}

impl Sink {
    /// Listens on an ephemeral loopback port, a thread per connection, and
    /// answers every request `200 {}`.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<SinkRequest>>> = Arc::default();
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let record = record.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    while let Some((head, body)) = read_http_request(&mut reader) {
                        let request = SinkRequest {
                            key: header(&head, "idempotency-key"),
                            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                        };
                        let mut seen = record.lock().unwrap();
                        if seen.len() < MAX_RECORDED {
                            seen.push(request);
                        }
                        drop(seen);
                        let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                        if stream.write_all(reply.as_bytes()).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Sink { url, seen }
    }

    /// Every request so far, in arrival order; fails once the sink is full.
    pub fn requests(&self) -> Vec<SinkRequest> {
        let seen = self.seen.lock().unwrap().clone();
        assert!(
            seen.len() < MAX_RECORDED,
            "the sink recorded {MAX_RECORDED} requests: runaway agent?"
        );
        seen
    }

    /// The keys the requests of each task (the body's `task`) carried.
    pub fn keys_by_task(&self) -> BTreeMap<String, BTreeSet<Option<String>>> {
        let mut by_task: BTreeMap<String, BTreeSet<Option<String>>> = BTreeMap::new();
        for r in self.requests() {
            let task = r.body["task"].as_str().unwrap_or_default().to_string();
            by_task.entry(task).or_default().insert(r.key);
        }
        by_task
    }
}

/// A header's value from a request head (name case-insensitive).
fn header(head: &[u8], name: &str) -> Option<String> {
    String::from_utf8_lossy(head).lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}
