//! Server-Sent Events, as the model providers stream them: bytes in any chunking are
//! cut into lines, and lines into events (`event:` name and `data:` text), following
//! the WHATWG rules a browser's `EventSource` applies.
//!
//! The parser owns no I/O. It is fed whatever a client read, and keeps only the
//! unfinished line and event between feeds, in buffers it reuses, so a steady stream
//! allocates nothing per event.

/// Cuts a byte stream into SSE events.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    /// The last byte fed was a `\r`: a `\n` right after it ends no second line.
    after_cr: bool,
    /// The current event's name (`event:`), empty for the default.
    event: String,
    /// The current event's data lines, joined by `\n`.
    data: String,
    /// Whether the current event has had a `data:` line (its data may be empty).
    has_data: bool,
}

impl SseParser {
    /// Feeds bytes as they arrived; calls `on_event(name, data)` for every event they
    /// complete.
    pub(crate) fn feed(&mut self, mut bytes: &[u8], on_event: &mut impl FnMut(&str, &str)) {
        if self.after_cr {
            self.after_cr = false;
            if let [b'\n', rest @ ..] = bytes {
                bytes = rest;
            }
        }
        while let Some(end) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (line, rest) = bytes.split_at(end);
            if self.partial.is_empty() {
                self.line(line, on_event);
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                self.line(&whole, on_event);
                whole.clear();
                self.partial = whole;
            }
            bytes = match rest {
                [b'\r', b'\n', rest @ ..] => rest,
                [b'\r'] => {
                    self.after_cr = true;
                    &[]
                }
                [_, rest @ ..] => rest,
                [] => &[],
            };
        }
        self.partial.extend_from_slice(bytes);
    }

    /// Takes one whole line, without its line ending.
    pub(crate) fn line(&mut self, line: &[u8], on_event: &mut impl FnMut(&str, &str)) {
        if line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            // A comment (`: keep-alive`).
            Some(0) => return,
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        // Providers send UTF-8; a line that is not is kept, with replacement
        // characters, rather than lost.
        let value = match std::str::from_utf8(value) {
            Ok(value) => std::borrow::Cow::Borrowed(value),
            Err(_) => String::from_utf8_lossy(value),
        };
        match field {
            b"event" => {
                self.event.clear();
                self.event.push_str(&value);
            }
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            // `id` and `retry` concern reconnecting, which is the client's business.
            _ => {}
        }
    }

    /// The stream ended: a last line without its line ending, and a last event without
    /// its blank line, still count. (A browser would drop such an event; an observer
    /// that drops a provider's final `data: [DONE]` would report the call unfinished.)
    pub(crate) fn end(&mut self, on_event: &mut impl FnMut(&str, &str)) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line(&line, on_event);
        }
        self.dispatch(on_event);
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(&str, &str)) {
        if self.has_data {
            on_event(&self.event, &self.data);
        }
        self.event.clear();
        self.data.clear();
        self.has_data = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` in turn, then ends the stream; returns the events as
    /// `name|data`.
    #[track_caller]
    fn check(chunks: &[&[u8]], expected: &[&str]) {
        let mut parser = SseParser::default();
        let mut seen = Vec::new();
        let mut on_event = |name: &str, data: &str| seen.push(format!("{name}|{data}"));
        for chunk in chunks {
            parser.feed(chunk, &mut on_event);
        }
        parser.end(&mut on_event);
        assert_eq!(seen, expected);
    }

    #[test]
    fn events_are_cut_at_blank_lines_with_their_names() {
        check(
            &[b"event: ping\ndata: {\"type\": \"ping\"}\n\ndata: x\n\n"],
            &["ping|{\"type\": \"ping\"}", "|x"],
        );
    }

    #[test]
    fn every_line_ending_counts_even_split_across_chunks() {
        check(
            &[b"data: a\r", b"\n\r", b"\ndata: b\r\rdata: c\n", b"\n"],
            &["|a", "|b", "|c"],
        );
    }

    #[test]
    fn a_line_split_anywhere_is_joined() {
        let stream = b"event: content_block_delta\ndata: {\"text\": \"h\xc3\xa9\"}\n\n";
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            check(&[a, b], &["content_block_delta|{\"text\": \"h\u{e9}\"}"]);
        }
    }

    #[test]
    fn data_lines_join_comments_and_other_fields_are_skipped() {
        check(
            &[b": keep-alive\nid: 7\nretry: 10\ndata: one\ndata:two\ndata\n\n"],
            &["|one\ntwo\n"],
        );
    }

    #[test]
    fn an_event_without_data_is_not_one_and_the_name_resets() {
        check(&[b"event: a\n\ndata: x\n\n"], &["|x"]);
    }

    #[test]
    fn the_last_event_counts_without_its_blank_line_or_line_ending() {
        check(&[b"data: {}\n\ndata: [DONE]"], &["|{}", "|[DONE]"]);
    }
}
