//! A small blocking client of the hub's HTTP API (docs/http-api.md), and what its
//! failures mean to a person at a shell.
//!
//! Every command that talks to a hub goes through [`Client`]: it adds the token, reads
//! the hub's error bodies (`{"error": {"code", "message", ...}}`) and turns a failure
//! into a [`HubError`] that names the problem: a hub that cannot be reached, a token
//! that is missing, wrong or of another run, a run that does not exist. It is plain
//! blocking HTTP (ureq), so these commands need no async runtime.

use std::fmt;
use std::time::{Duration, Instant};

use herald::escape_controls;
use herald_protocol::api::{Appended, CancelRun, CreateRun, Created, ErrorBody, EventsPage};
use herald_protocol::{Draft, RunId, RunState};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use ureq::http::Response;
use ureq::{Agent, Body, RequestBuilder};

use crate::args::HubArgs;
use crate::retry::Backoff;

/// How long connecting to the hub may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a plain request may take, answer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest reply read: a page of events is at most 500 of 64 KiB each.
const MAX_REPLY_BYTES: u64 = 64 * 1024 * 1024;
/// The first wait of [`Client::append_waiting`], and its longest.
const APPEND_RETRY_FIRST: Duration = Duration::from_secs(1);
const APPEND_RETRY_MAX: Duration = Duration::from_secs(10);
/// Largest error body read.
const MAX_ERROR_BYTES: u64 = 64 * 1024;

/// The hub at one URL, with the token to show it.
#[derive(Clone)]
pub(crate) struct Client {
    agent: Agent,
    base: String,
    token: Option<String>,
}

/// Why a request to the hub did not give what was asked.
#[derive(Debug)]
pub(crate) struct HubError {
    /// The hub's URL.
    url: String,
    kind: HubErrorKind,
    /// The hub's `Retry-After`, in seconds, when it sent one.
    retry_after: Option<Duration>,
}

/// What went wrong.
#[derive(Debug)]
pub(crate) enum HubErrorKind {
    /// No answer: nothing listens, DNS fails, the connection broke or timed out.
    Unreachable(String),
    /// 401 and no token was given.
    NoToken(String),
    /// 401 with a token the hub does not know.
    BadToken(String),
    /// 403: the token is valid but does not open this (another run's, a read token, not
    /// the admin token).
    Forbidden(String),
    /// 404 for a run.
    NoRun(RunId),
    /// Any other refusal, with the hub's code and message.
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// An answer that is not what a herald hub sends.
    BadReply(String),
}

impl HubError {
    pub(crate) fn new(url: &str, kind: HubErrorKind) -> HubError {
        HubError {
            url: url.to_owned(),
            kind,
            retry_after: None,
        }
    }

    pub(crate) fn kind(&self) -> &HubErrorKind {
        &self.kind
    }

    /// How long the hub said to wait before trying again (`Retry-After`).
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// A refusal that says to try again and after which sending `drafts` again cannot
    /// store them twice: 429 over a rate limit (refused before the store is touched),
    /// 507 while the hub's disk is full (its transaction failed, so nothing of it was
    /// stored), or 503 while the hub cannot reach its database, but only when every
    /// draft has an idempotency id, since a connection lost at the commit can hide a
    /// commit that happened.
    fn says_wait(&self, drafts: &[Draft]) -> bool {
        match self.kind {
            HubErrorKind::Refused {
                status: 429 | 507, ..
            } => true,
            HubErrorKind::Refused { status: 503, .. } => drafts.iter().all(|d| d.id.is_some()),
            _ => false,
        }
    }

    /// Whether trying again later may work: no answer, or the hub failing or busy.
    pub(crate) fn is_transient(&self) -> bool {
        match &self.kind {
            HubErrorKind::Unreachable(_) => true,
            HubErrorKind::Refused { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

impl fmt::Display for HubError {
    /// With its controls escaped: the messages are the hub's words, and a hub may
    /// quote a producer's text or be someone else's.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::new();
        self.describe(&mut text)?;
        f.write_str(&escape_controls(&text))
    }
}

impl HubError {
    fn describe(&self, f: &mut String) -> fmt::Result {
        use fmt::Write as _;
        let url = &self.url;
        match &self.kind {
            HubErrorKind::Unreachable(detail) => {
                write!(f, "cannot reach the hub at {url}: {detail}")
            }
            HubErrorKind::NoToken(message) => write!(
                f,
                "the hub at {url} needs a token: pass --token or set HERALD_TOKEN ({message})"
            ),
            HubErrorKind::BadToken(message) => write!(
                f,
                "the hub at {url} does not accept the token given by --token or HERALD_TOKEN ({message})"
            ),
            HubErrorKind::Forbidden(message) => {
                write!(f, "the token does not open this: {message}")
            }
            HubErrorKind::NoRun(run) => write!(f, "no run {run} on the hub at {url}"),
            HubErrorKind::Refused {
                status: 507,
                message,
                ..
            } => write!(
                f,
                "the hub at {url} cannot store anything: its disk is full (507: {message})"
            ),
            HubErrorKind::Refused {
                status,
                code,
                message,
            } if *status >= 500 => {
                write!(f, "the hub at {url} failed ({status} {code}): {message}")
            }
            HubErrorKind::Refused {
                status,
                code,
                message,
            } => write!(f, "the hub refused ({status} {code}): {message}"),
            HubErrorKind::BadReply(detail) => {
                write!(f, "the answer from {url} is not a herald hub's: {detail}")
            }
        }
    }
}

impl std::error::Error for HubError {}

/// `POST /v1/runs` body.
pub(crate) struct NewRun<'a> {
    pub(crate) name: &'a str,
    pub(crate) parent: Option<&'a RunId>,
    pub(crate) heartbeat_timeout_s: Option<f64>,
    pub(crate) meta: Option<Map<String, Value>>,
}

/// One poll of `GET /v1/runs/{id}/events`.
pub(crate) struct Poll<'a> {
    pub(crate) after: u64,
    pub(crate) limit: u32,
    pub(crate) types: Option<&'a str>,
    /// Long poll: wait up to this long for a new event.
    pub(crate) wait: Option<Duration>,
}

/// `GET /v1/runs` filters.
pub(crate) struct ListQuery<'a> {
    pub(crate) status: Option<&'a str>,
    pub(crate) parent: Option<&'a RunId>,
    pub(crate) limit: Option<u32>,
}

/// Whom a 404 is about.
enum Subject<'a> {
    Run(&'a RunId),
    Hub,
}

impl Client {
    /// A client of the hub the flags (or `HERALD_URL` and `HERALD_TOKEN`) name.
    pub(crate) fn new(args: &HubArgs) -> Client {
        Client::with_timeout(args, REQUEST_TIMEOUT)
    }

    /// The same with a shorter limit on each request, for callers that must not wait
    /// long on a slow hub.
    pub(crate) fn with_timeout(args: &HubArgs, timeout: Duration) -> Client {
        let agent = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT.min(timeout)))
            .timeout_global(Some(timeout))
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Client {
            agent,
            base: args.url.trim_end_matches('/').to_owned(),
            token: args.token.clone().filter(|t| !t.is_empty()),
        }
    }

    /// The hub's URL, without a trailing slash.
    pub(crate) fn url(&self) -> &str {
        &self.base
    }

    /// A client of the same hub with another token (a run's write token).
    pub(crate) fn with_token(&self, token: &str) -> Client {
        Client {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    fn authed<B>(&self, req: RequestBuilder<B>) -> RequestBuilder<B> {
        match &self.token {
            Some(token) => req.header("Authorization", format!("Bearer {token}")),
            None => req,
        }
    }

    fn get(&self, path: &str) -> RequestBuilder<ureq::typestate::WithoutBody> {
        self.authed(self.agent.get(format!("{}{path}", self.base)))
    }

    fn post(&self, path: &str) -> RequestBuilder<ureq::typestate::WithBody> {
        self.authed(self.agent.post(format!("{}{path}", self.base)))
    }

    /// `POST /v1/runs`.
    pub(crate) fn create_run(&self, run: &NewRun<'_>) -> Result<Created, HubError> {
        let body = CreateRun {
            name: run.name.to_owned(),
            parent: run.parent.map(RunId::to_string),
            heartbeat_timeout_s: run.heartbeat_timeout_s,
            meta: run.meta.clone(),
            ..CreateRun::default()
        };
        let res = self.post("/v1/runs").send_json(&body);
        self.json(res, Subject::Hub)
    }

    /// `POST /v1/runs/{id}/events`: appends `drafts` at once.
    pub(crate) fn append(&self, run: &RunId, drafts: &[Draft]) -> Result<Appended, HubError> {
        let res = self
            .post(&format!("/v1/runs/{run}/events"))
            .send_json(drafts);
        self.json(res, Subject::Run(run))
    }

    /// [`Client::append`], waiting as [`Backoff`] says (from a second, and never
    /// sooner than the hub's `Retry-After`) while it refuses in a way that makes sending again safe (see
    /// [`HubError::says_wait`]), for at most `patience` in all.
    pub(crate) fn append_waiting(
        &self,
        run: &RunId,
        drafts: &[Draft],
        patience: Duration,
    ) -> Result<Appended, HubError> {
        let deadline = Instant::now() + patience;
        let mut backoff = Backoff::new(APPEND_RETRY_FIRST, APPEND_RETRY_MAX);
        loop {
            match self.append(run, drafts) {
                Err(e) if e.says_wait(drafts) => {
                    let wait = backoff.delay(e.retry_after());
                    if Instant::now() + wait > deadline {
                        return Err(e);
                    }
                    // A rate limit is the script's own doing and passes by itself; a
                    // full disk needs someone to act, so the wait is said.
                    if matches!(e.kind, HubErrorKind::Refused { status: 507, .. }) {
                        eprintln!("herald: {e}; trying again in {} s", wait.as_secs());
                    }
                    std::thread::sleep(wait);
                }
                other => return other,
            }
        }
    }

    /// `GET /v1/runs/{id}`: the run's state as the hub folded it.
    pub(crate) fn state(&self, run: &RunId) -> Result<RunState, HubError> {
        let res = self.get(&format!("/v1/runs/{run}")).call();
        self.json(res, Subject::Run(run))
    }

    /// `GET /v1/runs/{id}/events`, a long poll when `poll.wait` is set.
    pub(crate) fn poll(&self, run: &RunId, poll: &Poll<'_>) -> Result<EventsPage, HubError> {
        let mut req = self
            .get(&format!("/v1/runs/{run}/events"))
            .query("after", poll.after.to_string())
            .query("limit", poll.limit.to_string());
        if let Some(types) = poll.types {
            req = req.query("types", types);
        }
        if let Some(wait) = poll.wait {
            req = req
                .query("wait", format!("{:.3}", wait.as_secs_f64()))
                .config()
                .timeout_global(Some(wait + REQUEST_TIMEOUT))
                .build();
        }
        self.json(req.call(), Subject::Run(run))
    }

    /// `GET /v1/runs`: the hub's JSON, as it sent it.
    pub(crate) fn list(&self, query: &ListQuery<'_>) -> Result<String, HubError> {
        let mut req = self.get("/v1/runs");
        if let Some(status) = query.status {
            req = req.query("status", status);
        }
        if let Some(parent) = query.parent {
            req = req.query("parent", parent.as_str());
        }
        if let Some(limit) = query.limit {
            req = req.query("limit", limit.to_string());
        }
        let mut res = self.check(req.call(), Subject::Hub)?;
        res.body_mut()
            .with_config()
            .limit(MAX_REPLY_BYTES)
            .read_to_string()
            .map_err(|e| self.error(HubErrorKind::Unreachable(e.to_string())))
    }

    /// `POST /v1/runs/{id}/cancel`.
    pub(crate) fn cancel(&self, run: &RunId, reason: Option<&str>) -> Result<(), HubError> {
        let body = CancelRun {
            reason: reason.map(str::to_owned),
        };
        let res = self
            .post(&format!("/v1/runs/{run}/cancel"))
            .send_json(&body);
        self.check(res, Subject::Run(run)).map(drop)
    }

    /// `DELETE /v1/runs/{id}`.
    pub(crate) fn delete(&self, run: &RunId) -> Result<(), HubError> {
        let res = self
            .authed(self.agent.delete(format!("{}/v1/runs/{run}", self.base)))
            .call();
        self.check(res, Subject::Run(run)).map(drop)
    }

    fn error(&self, kind: HubErrorKind) -> HubError {
        HubError::new(&self.base, kind)
    }

    fn json<T: DeserializeOwned>(
        &self,
        res: Result<Response<Body>, ureq::Error>,
        subject: Subject<'_>,
    ) -> Result<T, HubError> {
        let mut res = self.check(res, subject)?;
        let text = res
            .body_mut()
            .with_config()
            .limit(MAX_REPLY_BYTES)
            .read_to_string()
            .map_err(|e| self.error(HubErrorKind::Unreachable(e.to_string())))?;
        serde_json::from_str(&text).map_err(|e| self.error(HubErrorKind::BadReply(e.to_string())))
    }

    /// The response when it is a success; otherwise the error it means.
    fn check(
        &self,
        res: Result<Response<Body>, ureq::Error>,
        subject: Subject<'_>,
    ) -> Result<Response<Body>, HubError> {
        let mut res = res.map_err(|e| self.error(HubErrorKind::Unreachable(transport(&e))))?;
        let status = res.status().as_u16();
        if res.status().is_success() {
            return Ok(res);
        }
        let retry_after = res
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = res
            .body_mut()
            .with_config()
            .limit(MAX_ERROR_BYTES)
            .lossy_utf8(true)
            .read_to_string()
            .unwrap_or_default();
        let (code, message) = error_body(&text).unwrap_or_else(|| {
            // Not the hub's JSON: a proxy's page, or another server on that port.
            let head: String = text.trim().chars().take(200).collect();
            (
                "http".to_owned(),
                if head.is_empty() {
                    "no details".to_owned()
                } else {
                    head
                },
            )
        });
        let kind = match (status, subject) {
            (401, _) if self.token.is_none() => HubErrorKind::NoToken(message),
            (401, _) => HubErrorKind::BadToken(message),
            (403, _) => HubErrorKind::Forbidden(message),
            (404, Subject::Run(run)) if code == "run_not_found" => HubErrorKind::NoRun(run.clone()),
            (404, _) if code == "http" => HubErrorKind::BadReply(format!(
                "404 for a route every herald hub serves ({message})"
            )),
            _ => HubErrorKind::Refused {
                status,
                code,
                message,
            },
        };
        Err(HubError {
            retry_after,
            ..self.error(kind)
        })
    }
}

/// A transport error in words: ureq's I/O errors say "io: ..." and nest their cause.
pub(crate) fn transport(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => io.to_string(),
        ureq::Error::Timeout(_) => "no answer in time".to_owned(),
        ureq::Error::HostNotFound => "the host name is not found".to_owned(),
        other => other.to_string(),
    }
}

/// The `code` and `message` of the hub's `{"error": {...}}`.
fn error_body(text: &str) -> Option<(String, String)> {
    let body: ErrorBody = serde_json::from_str(text).ok()?;
    let code = serde_json::to_value(body.error.code).ok()?;
    Some((code.as_str()?.to_owned(), body.error.message))
}
