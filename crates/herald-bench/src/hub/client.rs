//! The load generator's side of the HTTP API: creating runs, appending, and reading
//! Server-Sent Events off a byte stream.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use herald_protocol::api::{Appended, CreateRun};

/// Longest a single request of the load generator may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A client that keeps one connection per concurrent request, as a producer does.
pub(crate) fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .tcp_nodelay(true)
        .build()
        .context("building the HTTP client")
}

/// Creates run `id` (`POST /v1/runs`).
pub(crate) async fn create_run(
    client: &reqwest::Client,
    base: &str,
    id: &str,
) -> anyhow::Result<()> {
    let res = client
        .post(format!("{base}/v1/runs"))
        .json(&CreateRun {
            id: Some(id.to_owned()),
            name: format!("hub-load {id}"),
            ..CreateRun::default()
        })
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .with_context(|| format!("creating run {id}"))?;
    let status = res.status();
    ensure!(
        status == reqwest::StatusCode::CREATED,
        "creating run {id}: {status} {}",
        res.text().await.unwrap_or_default()
    );
    Ok(())
}

/// Posts a JSON array of events to run `id`; the hub's reply.
pub(crate) async fn append(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    body: String,
) -> anyhow::Result<Appended> {
    let res = client
        .post(format!("{base}/v1/runs/{id}/events"))
        .header("content-type", "application/json")
        .body(body)
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .with_context(|| format!("appending to run {id}"))?;
    let status = res.status();
    let text = res.text().await.context("reading the append's reply")?;
    if !status.is_success() {
        bail!("appending to run {id}: {status} {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("the append's reply is not one: {text}"))
}

/// Prometheus gauge `name` from `/metrics`.
pub(crate) async fn metric(
    client: &reqwest::Client,
    base: &str,
    name: &str,
) -> anyhow::Result<f64> {
    let text = client
        .get(format!("{base}/metrics"))
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await?
        .text()
        .await?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .with_context(|| format!("no {name} in /metrics"))
}

/// Microseconds since the Unix epoch on the system clock, which every process on this
/// machine reads alike: a send time in one process minus a receive time in another.
pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// One Server-Sent Event, as much of it as the load generator reads.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct SseMessage {
    pub(crate) id: Option<u64>,
    pub(crate) event: String,
    pub(crate) data: String,
}

/// Splits a byte stream into Server-Sent Events.
#[derive(Default)]
pub(crate) struct SseParser {
    buf: String,
}

impl SseParser {
    /// Feeds a chunk; the complete messages it ended, in order (comments skipped).
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<SseMessage> {
        self.buf.push_str(&String::from_utf8_lossy(chunk));
        let mut messages = Vec::new();
        while let Some(end) = self.buf.find("\n\n") {
            let block: String = self.buf.drain(..end + 2).collect();
            let mut message = SseMessage::default();
            let mut any = false;
            for line in block.lines() {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "id" => message.id = value.parse().ok(),
                    "event" => message.event = value.to_owned(),
                    "data" => {
                        if !message.data.is_empty() {
                            message.data.push('\n');
                        }
                        message.data.push_str(value);
                    }
                    _ => continue,
                }
                any = true;
            }
            if any {
                messages.push(message);
            }
        }
        messages
    }
}

/// The integer field `"name":N` of a JSON object's text, without parsing all of it.
pub(crate) fn int_field(json: &str, name: &str) -> Option<u64> {
    let key = format!("\"{name}\":");
    let start = json.find(&key)? + key.len();
    let digits: &str = json[start..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()?;
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_messages_split_across_chunks() {
        let mut p = SseParser::default();
        assert!(
            p.push(b": keep-alive\n\nid: 1\nevent: custom.ping\nda")
                .is_empty()
        );
        let got = p.push(b"ta: {\"sent_us\":42}\n\n");
        assert_eq!(
            got,
            vec![SseMessage {
                id: Some(1),
                event: "custom.ping".into(),
                data: "{\"sent_us\":42}".into()
            }]
        );
        assert_eq!(int_field(&got[0].data, "sent_us"), Some(42));
        assert_eq!(int_field("{\"a\":1}", "sent_us"), None);
    }
}
