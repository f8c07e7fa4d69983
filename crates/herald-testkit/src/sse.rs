//! Server-Sent Events as the hub sends them, read by the tests and the load generator
//! alike: lines of `field: value`, `:` comments, and a blank line ending each message.
//! It owns no I/O: [`SseReader::push`] takes the bytes of a response as they arrive,
//! in any chunking.

/// A comment or a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A comment line (`: text`), such as a keep-alive.
    Comment(String),
    /// A message, dispatched by a blank line.
    Message(SseMessage),
}

/// A dispatched message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseMessage {
    /// `id:`.
    pub id: Option<String>,
    /// `event:`.
    pub event: Option<String>,
    /// The `data:` lines, joined by `\n`.
    pub data: String,
}

/// What is not Server-Sent Events as the hub writes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SseError {
    /// A line that is not UTF-8.
    NotUtf8(Vec<u8>),
    /// A field the hub never sends (`id`, `event`, `data` and `retry` are its).
    UnknownField(String),
}

impl std::fmt::Display for SseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SseError::NotUtf8(line) => {
                write!(
                    f,
                    "an SSE line is not UTF-8: {:?}",
                    String::from_utf8_lossy(line)
                )
            }
            SseError::UnknownField(line) => write!(f, "unknown SSE field in line {line:?}"),
        }
    }
}

impl std::error::Error for SseError {}

/// Cuts a byte stream into [`Frame`]s.
#[derive(Debug, Default)]
pub struct SseReader {
    /// Bytes of a line whose end has not arrived.
    buf: Vec<u8>,
    message: SseMessage,
    /// The current message has had a field.
    has_fields: bool,
}

impl SseReader {
    /// Feeds a chunk; the frames it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Frame>, SseError> {
        self.buf.extend_from_slice(chunk);
        let mut frames = Vec::new();
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8(line).map_err(|e| SseError::NotUtf8(e.into_bytes()))?;
            if let Some(frame) = self.line(&line)? {
                frames.push(frame);
            }
        }
        Ok(frames)
    }

    /// Whether bytes of an unfinished line are held: at the end of a body, a stream
    /// cut inside a line.
    pub fn is_mid_line(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The bytes of the unfinished line.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    fn line(&mut self, line: &str) -> Result<Option<Frame>, SseError> {
        if line.is_empty() {
            if !self.has_fields {
                return Ok(None);
            }
            self.has_fields = false;
            return Ok(Some(Frame::Message(std::mem::take(&mut self.message))));
        }
        if let Some(comment) = line.strip_prefix(':') {
            return Ok(Some(Frame::Comment(comment.trim_start().to_owned())));
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        self.has_fields = true;
        match field {
            "id" => self.message.id = Some(value.to_owned()),
            "event" => self.message.event = Some(value.to_owned()),
            "data" => {
                if !self.message.data.is_empty() {
                    self.message.data.push('\n');
                }
                self.message.data.push_str(value);
            }
            "retry" => {}
            _ => return Err(SseError::UnknownField(line.to_owned())),
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::{Frame, SseError, SseMessage, SseReader};

    #[test]
    fn frames_split_across_chunks_are_read_whole() {
        let mut r = SseReader::default();
        assert_eq!(
            r.push(b": keep-alive\r\n\r\nid: 1\nevent: custom.ping\nda")
                .unwrap(),
            [Frame::Comment("keep-alive".into())]
        );
        assert!(r.is_mid_line());
        assert_eq!(
            r.push(b"ta: {\"a\":1}\ndata: two\n\n").unwrap(),
            [Frame::Message(SseMessage {
                id: Some("1".into()),
                event: Some("custom.ping".into()),
                data: "{\"a\":1}\ntwo".into(),
            })]
        );
        assert!(!r.is_mid_line());
        assert_eq!(
            r.push(b"\n\n").unwrap(),
            [],
            "blank lines alone are no message"
        );
    }

    #[test]
    fn what_the_hub_never_sends_is_an_error() {
        let mut r = SseReader::default();
        assert_eq!(
            r.push(b"colour: red\n"),
            Err(SseError::UnknownField("colour: red".into()))
        );
        let mut r = SseReader::default();
        assert!(matches!(r.push(b"data: \xff\n"), Err(SseError::NotUtf8(_))));
    }
}
