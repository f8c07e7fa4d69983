//! A model provider on a real loopback socket that replays recorded streams: each
//! request it takes is answered with the next reply it was given (a stream of
//! `text/event-stream` in small HTTP chunks, or an HTTP error with a JSON body), and
//! kept, headers and body, for the test to check.
//!
//! Shared by the SDK's tests of the stream adapters and the CLI's tests of
//! `herald demo --llm` (which include this file by path), so both replay the same
//! fixtures from `crates/herald/tests/fixtures/llm/`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// The bytes of a fixture, by its path under `tests/fixtures/llm/`.
pub(crate) fn fixture(name: &str) -> Vec<u8> {
    // Both crates' tests use this file; the fixtures live in the SDK's.
    let path = format!(
        "{}/../herald/tests/fixtures/llm/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// One answer of the stub.
pub(crate) struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    /// Sent before anything of the reply (status line included) goes out.
    gate: Option<Receiver<()>>,
    /// The `Retry-After` header of an error, in seconds.
    retry_after: Option<u32>,
}

impl Reply {
    /// A `200` streaming `body` as server-sent events, a few bytes per HTTP chunk, so
    /// that lines and events arrive split as they do from a real provider.
    pub(crate) fn stream(body: Vec<u8>) -> Reply {
        Reply {
            status: 200,
            content_type: "text/event-stream; charset=utf-8",
            body,
            gate: None,
            retry_after: None,
        }
    }

    /// The fixture `name` as a stream.
    pub(crate) fn fixture(name: &str) -> Reply {
        Reply::stream(fixture(name))
    }

    /// An HTTP error with a JSON body.
    pub(crate) fn error(status: u16, body: Vec<u8>) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body,
            gate: None,
            retry_after: None,
        }
    }

    /// This error, with `Retry-After: seconds`.
    pub(crate) fn retry_after(mut self, seconds: u32) -> Reply {
        self.retry_after = Some(seconds);
        self
    }

    /// This reply, held back until `gate` receives (or its sender is dropped).
    pub(crate) fn after(mut self, gate: Receiver<()>) -> Reply {
        self.gate = Some(gate);
        self
    }
}

/// One request the stub took.
#[derive(Clone, Debug)]
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    /// Header names in lower case.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Value,
    /// When the request's first line arrived.
    pub(crate) at: std::time::Instant,
}

impl Request {
    /// The value of header `name` (lower case), if sent.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The stub provider: `http://127.0.0.1:<free port>`.
pub(crate) struct LlmServer {
    pub(crate) url: String,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl LlmServer {
    /// Answers requests with `replies`, in order; past the last, with a `500`.
    pub(crate) fn start(replies: Vec<Reply>) -> LlmServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            let mut replies = replies.into_iter();
            // One request at a time, in order: the clients under test make one call
            // after another.
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let Some(request) = read_request(&stream) else {
                    continue;
                };
                record.lock().expect("not poisoned").push(request);
                let reply = replies.next().unwrap_or_else(|| {
                    Reply::error(500, br#"{"error":"the stub has no more replies"}"#.to_vec())
                });
                let _ = answer(stream, reply);
            }
        });
        LlmServer { url, seen }
    }

    /// The requests taken so far.
    pub(crate) fn requests(&self) -> Vec<Request> {
        self.seen.lock().expect("not poisoned").clone()
    }
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let at = std::time::Instant::now();
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
        if name == "content-length" {
            length = value.parse().ok()?;
        }
        headers.push((name, value));
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        at,
    })
}

fn answer(mut stream: TcpStream, reply: Reply) -> std::io::Result<()> {
    if let Some(gate) = reply.gate {
        let _ = gate.recv();
    }
    stream.set_nodelay(true)?;
    let reason = match reply.status {
        200 => "OK",
        429 => "Too Many Requests",
        529 => "Overloaded",
        _ => "Error",
    };
    if reply.status != 200 {
        write!(
            stream,
            "HTTP/1.1 {} {reason}\r\ncontent-type: {}\r\ncontent-length: {}\r\n{}connection: close\r\n\r\n",
            reply.status,
            reply.content_type,
            reply.body.len(),
            reply
                .retry_after
                .map(|s| format!("retry-after: {s}\r\n"))
                .unwrap_or_default()
        )?;
        stream.write_all(&reply.body)?;
        return stream.flush();
    }
    write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: {}\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        reply.content_type
    )?;
    stream.flush()?;
    // Odd-sized pieces, so that lines, UTF-8 sequences and events are cut anywhere.
    for piece in reply.body.chunks(37) {
        write!(stream, "{:x}\r\n", piece.len())?;
        stream.write_all(piece)?;
        stream.write_all(b"\r\n")?;
        stream.flush()?;
    }
    stream.write_all(b"0\r\n\r\n")?;
    stream.flush()
}
