//! A stand-in for an OpenAI-compatible model provider on loopback: answers
//! every request with one fixed completion (40 prompt + 9 completion tokens,
//! one tool call). Also serves as a plain HTTP endpoint that answers 200.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

/// The completion every request gets.
pub const REPLY: &str = r#"{
  "choices": [{ "message": { "role": "assistant", "content": "",
      "tool_calls": [{ "id": "call_1", "type": "function",
        "function": { "name": "page_oncall", "arguments": "{\"team\":\"db\"}" } }] },
    "finish_reason": "tool_calls" }],
  "usage": { "prompt_tokens": 40, "completion_tokens": 9 }
}"#;

/// The running stand-in; its thread lives as long as the test process.
pub struct Model {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl Model {
    /// Listens on an ephemeral loopback port, one connection at a time.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let line = line.trim_end().to_ascii_lowercase();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{REPLY}",
                    REPLY.len()
                );
            }
        });
        Model { base }
    }

    /// Manifest lines granting this model as `openai test-model`, plus `extra` fields.
    pub fn grant(&self, extra: &str) -> String {
        format!(
            "  capabilities:\n    llm: {{ provider: openai, model: test-model, endpoint: \"{}/v1/\"{extra} }}\n",
            self.base
        )
    }
}
