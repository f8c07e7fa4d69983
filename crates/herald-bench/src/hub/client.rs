//! The load generator's side of the HTTP API: creating runs, appending, reading a
//! metric (Server-Sent Events are read by `herald_testkit::sse`, as the tests read
//! them).

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

/// A client that speaks HTTP/2 over cleartext from the first byte (prior knowledge):
/// every request of every task sharing it goes over one connection, as concurrent
/// streams.
pub(crate) fn h2c_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .tcp_nodelay(true)
        .build()
        .context("building the HTTP/2 client")
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

/// The hub's `/metrics`, as Prometheus text.
pub(crate) async fn metrics(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let text = client
        .get(format!("{base}/metrics"))
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await?
        .text()
        .await?;
    Ok(text)
}

/// Prometheus gauge `name` from `/metrics`.
pub(crate) async fn metric(
    client: &reqwest::Client,
    base: &str,
    name: &str,
) -> anyhow::Result<f64> {
    let text = metrics(client, base).await?;
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
    use super::int_field;

    #[test]
    fn an_integer_field_is_read_off_the_text() {
        assert_eq!(int_field("{\"sent_us\":42}", "sent_us"), Some(42));
        assert_eq!(int_field("{\"sent_us\": 7,\"b\":1}", "sent_us"), Some(7));
        assert_eq!(int_field("{\"a\":1}", "sent_us"), None);
    }
}
