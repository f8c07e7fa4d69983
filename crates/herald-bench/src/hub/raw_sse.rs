//! A Server-Sent Events stream read straight off its TCP socket, for the fan-out's
//! subscribers: a hand-written `GET` over HTTP/1.1, then the chunked body decoded in
//! the task that reads the socket.
//!
//! reqwest (hyper's client) reads a response body in a connection task of its own and
//! hands each chunk to the reader's task through a channel: two task wake-ups per
//! chunk, and with 1,000 streams in one process on a shared 2-core machine, that
//! queueing was part of what the fan-out's latency measured. Here one task per stream
//! wakes once per chunk and takes its receive time as soon as the read returns. It is
//! still real HTTP over real TCP; it only understands what the hub sends a stream
//! (`200` with a chunked body), and fails on anything else.

use anyhow::{Context, bail, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes read at once; the hub's messages are a few hundred bytes.
const READ_SIZE: usize = 16 * 1024;
/// The longest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// An open stream whose response head has been read.
pub(crate) struct RawSse {
    socket: TcpStream,
    read: Box<[u8]>,
    body: Chunked,
    /// The body's last chunk has been decoded, or the connection closed.
    ended: bool,
}

impl RawSse {
    /// `GET url` with `accept: text/event-stream`; an error unless the hub answers
    /// `200` with a chunked body.
    pub(crate) async fn open(url: &str) -> anyhow::Result<RawSse> {
        let url = reqwest::Url::parse(url).with_context(|| format!("parsing {url}"))?;
        let host = url.host_str().context("the stream's URL has no host")?;
        let port = url.port_or_known_default().unwrap_or(80);
        let mut socket = TcpStream::connect((host, port))
            .await
            .with_context(|| format!("connecting to {host}:{port}"))?;
        socket.set_nodelay(true)?;
        let path = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nhost: {host}:{port}\r\naccept: text/event-stream\r\n\r\n"
        );
        socket.write_all(request.as_bytes()).await?;
        let mut head = Vec::new();
        let mut read = vec![0; READ_SIZE].into_boxed_slice();
        let end = loop {
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            ensure!(head.len() <= MAX_HEAD, "the response head is too long");
            let n = socket.read(&mut read).await?;
            ensure!(n > 0, "the hub closed the stream before answering");
            head.extend_from_slice(&read[..n]);
        };
        let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
        let status = text.get(9..12).unwrap_or("");
        if status != "200" {
            bail!("opening a stream: {}", text.lines().next().unwrap_or(""));
        }
        ensure!(
            text.contains("\r\ntransfer-encoding: chunked\r\n"),
            "the stream's body is not chunked"
        );
        let mut body = Chunked::default();
        body.pending.extend_from_slice(&head[end..]);
        Ok(RawSse {
            socket,
            read,
            body,
            ended: false,
        })
    }

    /// Reads once from the socket and decodes what came into `out`: the body's bytes,
    /// none when the read brought only part of a chunk. `false` once the body or the
    /// connection has ended and nothing more came.
    pub(crate) async fn next(&mut self, out: &mut Vec<u8>) -> anyhow::Result<bool> {
        out.clear();
        if self.ended {
            return Ok(false);
        }
        // What came with the head first.
        if !self.body.pending.is_empty() {
            self.ended = self.body.decode(out)?;
            if !out.is_empty() || self.ended {
                return Ok(!out.is_empty());
            }
        }
        let n = self.socket.read(&mut self.read).await?;
        if n == 0 {
            self.ended = true;
            return Ok(false);
        }
        self.body.pending.extend_from_slice(&self.read[..n]);
        // The last chunk may come in the same read as the body's end: it is returned
        // now, and the end on the next call.
        self.ended = self.body.decode(out)?;
        Ok(!out.is_empty() || !self.ended)
    }
}

/// An HTTP/1.1 chunked body being decoded (RFC 9112, section 7.1), without trailers:
/// the hub sends none.
#[derive(Default)]
struct Chunked {
    /// Bytes read but not yet decoded: the start of a chunk whose end has not come.
    pending: Vec<u8>,
}

impl Chunked {
    /// Moves every whole chunk of `pending` into `out`; `true` at the last chunk.
    fn decode(&mut self, out: &mut Vec<u8>) -> anyhow::Result<bool> {
        let mut at = 0;
        let ended = loop {
            let rest = &self.pending[at..];
            let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
                break false;
            };
            let line = std::str::from_utf8(&rest[..line_end]).context("a chunk size")?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .with_context(|| format!("a chunk size of {line:?}"))?;
            if size == 0 {
                break true;
            }
            let data = line_end + 2;
            if rest.len() < data + size + 2 {
                break false;
            }
            ensure!(
                &rest[data + size..data + size + 2] == b"\r\n",
                "a chunk does not end with CRLF"
            );
            out.extend_from_slice(&rest[data..data + size]);
            at += data + size + 2;
        };
        self.pending.drain(..at);
        Ok(ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(parts: &[&[u8]], expected: &[u8], expected_end: bool) {
        let mut chunked = Chunked::default();
        let mut out = Vec::new();
        let mut ended = false;
        for part in parts {
            assert!(!ended, "bytes after the last chunk");
            chunked.pending.extend_from_slice(part);
            ended = chunked.decode(&mut out).expect("decodes");
        }
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(expected)
        );
        assert_eq!(ended, expected_end);
    }

    #[test]
    fn chunks_decode_however_they_are_cut() {
        check(&[b"5\r\nhello\r\n"], b"hello", false);
        check(
            &[b"5\r\nhel", b"lo\r\n6\r\n", b" world\r\n"],
            b"hello world",
            false,
        );
        check(&[b"5\r", b"\nhello\r", b"\n0\r\n\r\n"], b"hello", true);
        check(&[b"a;ext=1\r\n0123456789\r\n"], b"0123456789", false);
        check(
            &[b"1A\r\nabcdefghijklmnopqrstuvwxyz\r\n"],
            b"abcdefghijklmnopqrstuvwxyz",
            false,
        );
    }

    #[test]
    fn what_is_not_chunked_is_an_error() {
        let mut chunked = Chunked::default();
        chunked.pending.extend_from_slice(b"zz\r\nhello\r\n");
        assert!(chunked.decode(&mut Vec::new()).is_err());
        let mut chunked = Chunked::default();
        chunked.pending.extend_from_slice(b"2\r\nhello\r\n");
        assert!(chunked.decode(&mut Vec::new()).is_err());
    }
}
