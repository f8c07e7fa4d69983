//! The hub on a listener: the accept loop, the cap on open connections, and how long a
//! connection may take to say what it wants.
//!
//! `axum::serve` waits forever: for a request's headers, for its body, and on an idle
//! keep-alive connection. A few hundred clients that connect and say nothing would hold
//! as many file descriptors, and past the process's limit the hub could accept nobody,
//! not even `/healthz`. So each connection is driven here by hand (hyper's HTTP/1
//! connection, with upgrades for the WebSocket, or its HTTP/2 connection for a client
//! that opens with HTTP/2's preface) beside a deadline that follows what the
//! connection is doing:
//!
//! - waiting for a request's headers: `header_timeout`, from the connection's start or
//!   from the first byte of the request;
//! - between requests: `idle_timeout`, from the end of the last response;
//! - serving requests: none, however long a response streams (SSE and the long poll
//!   send their own keep-alives); a WebSocket leaves this loop when it upgrades.
//!
//! A request's body must arrive whole within `body_timeout` of its headers, or the
//! route answers 408 (see [`BodyTimedOut`]): a deadline for the whole body, not for
//! each read, so that a client sending a byte a second cannot hold a connection either.
//! At `max_connections` open connections (WebSockets included) the hub stops
//! accepting: new ones wait in the kernel's backlog until one closes, and the log says
//! so once per episode, not once per connection.
//!
//! hyper answers a request it cannot parse (a malformed request line or header, a URI
//! over 64 KiB, headers over its buffer) on its own, with an empty body, before any
//! route runs. [`Conn`] replaces that answer with the same status and the error body of docs/http-api.md#errors.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use hyper::body::{Bytes, Frame, Incoming, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::config::HubConfig;
use crate::error::ApiError;

/// How long each phase of a connection may last, from the hub's configuration.
#[derive(Clone, Copy)]
struct Timeouts {
    header: Duration,
    body: Duration,
    idle: Duration,
}

/// Accepts connections on `listener` and serves `router` on each until `stop` is
/// cancelled; then stops accepting, lets each connection finish what it is serving
/// (streams end on their own as the hub stops), and returns once all have closed.
pub(crate) async fn run(
    listener: TcpListener,
    router: Router,
    config: &HubConfig,
    stop: CancellationToken,
) {
    let timeouts = Timeouts {
        header: config.header_timeout,
        body: config.body_timeout,
        idle: config.idle_timeout,
    };
    let max = config.max_connections.clamp(1, u32::MAX as usize);
    let permits = Arc::new(Semaphore::new(max));
    // Whether the cap was hit and not yet left behind, and whether accepting fails:
    // each is logged when it starts and when it ends, not for every connection.
    let mut at_cap = false;
    let mut accept_failing = false;
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if !at_cap {
                    at_cap = true;
                    tracing::warn!(
                        max_connections = max,
                        "{max} connections are open, the most the hub takes \
                         (max_connections): new ones wait until one closes"
                    );
                }
                tokio::select! {
                    permit = permits.clone().acquire_owned() => {
                        permit.expect("the semaphore is never closed")
                    }
                    () = stop.cancelled() => break,
                }
            }
        };
        // Whether no connection was waiting in the backlog for this place.
        let mut none_waiting = false;
        let accept = std::future::poll_fn(|cx| {
            let accepted = listener.poll_accept(cx);
            none_waiting |= accepted.is_pending();
            accepted
        });
        let stream = tokio::select! {
            accepted = accept => match accepted {
                Ok((stream, _)) => stream,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    if !accept_failing {
                        accept_failing = true;
                        tracing::error!(error = %e, "accepting connections fails; retrying every second");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        () = stop.cancelled() => break,
                    }
                }
            },
            () = stop.cancelled() => break,
        };
        if accept_failing {
            accept_failing = false;
            tracing::info!("accepting connections works again");
        }
        // The episode is over once a connection finds nobody waiting before it and a
        // tenth of the cap (one place at least) still free with it in: not each time a
        // place frees up while others wait, or a hub at its cap would log every
        // connection that closes.
        if at_cap && none_waiting && permits.available_permits() >= (max / 10).max(1) {
            at_cap = false;
            tracing::info!(
                max_connections = max,
                "open connections are below the cap again"
            );
        }
        // Events are small and a reader waits for each: no Nagle delay.
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let conn = Conn::new(stream, activity.clone(), permit);
        tokio::spawn(drive(
            conn,
            activity,
            router.clone(),
            timeouts,
            stop.clone(),
        ));
    }
    drop(listener);
    // Every connection holds a permit until it closes (a WebSocket's goes with its
    // socket), so having them all back means every connection has closed.
    let _ = permits.acquire_many(max as u32).await;
}

/// An error of the peer's connection, not of the listener: the next accept works.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves one connection until it closes, it outlives the deadline of its phase, or
/// the hub stops and it has finished what it was serving.
async fn drive(
    mut conn: Conn,
    activity: Arc<Activity>,
    router: Router,
    timeouts: Timeouts,
    stop: CancellationToken,
) {
    let service = Service {
        router,
        activity: activity.clone(),
        body_timeout: timeouts.body,
    };
    // Each protocol's own connection, chosen by the first bytes, not hyper-util's
    // `auto` builder (as axum's `serve` uses): `auto` reads the 24 bytes that could be
    // HTTP/2's preface and hands them back as a read of their own, which makes hyper's
    // HTTP/1 read buffer grow from 8 to 16 KiB on every connection (24 bytes held, 8 KiB
    // more wanted), for as long as it stays open: most of an idle SSE stream's memory
    // (BENCHMARKS.md, "Memory per idle stream"). A peek decides most connections
    // without taking a byte; the rare client that pauses inside the preface has its
    // bytes read and handed back in one read with what followed them.
    let http2 = tokio::select! {
        http2 = conn.opens_with_http2_preface() => http2,
        () = tokio::time::sleep(timeouts.header) => {
            tracing::debug!("closing a connection that sent nothing within the header timeout");
            return;
        }
        () = stop.cancelled() => return,
    };
    if http2 {
        let served =
            http2::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(conn), service);
        serve(served, &activity, timeouts, &stop).await;
    } else {
        let served = http1::Builder::new()
            .serve_connection(TokioIo::new(conn), service)
            .with_upgrades();
        serve(served, &activity, timeouts, &stop).await;
    }
}

/// hyper's connections, as [`serve`] drives and stops them.
trait Connection: Future<Output = Result<(), hyper::Error>> {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl Connection for http1::UpgradeableConnection<TokioIo<Conn>, Service> {
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

impl Connection for http2::Connection<TokioIo<Conn>, Service, TokioExecutor> {
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http2::Connection::graceful_shutdown(self);
    }
}

/// Drives `served` until it ends, outlives the deadline of its phase, or the hub stops
/// and it has finished what it was serving.
async fn serve(
    served: impl Connection,
    activity: &Activity,
    timeouts: Timeouts,
    stop: &CancellationToken,
) {
    tokio::pin!(served);
    let mut stopping = false;
    loop {
        let deadline = activity.deadline(timeouts);
        let expired = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            res = served.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "a connection ended with an error");
                }
                return;
            }
            () = expired => {
                // The phase may have changed since the deadline was read.
                if activity.deadline(timeouts).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!(phase = activity.phase_name(), "closing a connection past its deadline");
                    return;
                }
            }
            () = activity.changed.notified() => {}
            () = stop.cancelled(), if !stopping => {
                stopping = true;
                served.as_mut().graceful_shutdown();
            }
        }
    }
}

/// What a connection is doing, for its deadline.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// Waiting for a request's headers, since then.
    Head(Instant),
    /// Between requests, since the last response ended.
    Idle(Instant),
    /// Serving this many requests (more than one only if a client pipelines).
    Busy(usize),
}

/// A connection's phase, shared by its reads, its requests and its driver.
struct Activity {
    phase: Mutex<Phase>,
    /// Told when the deadline may have come closer (the driver may be waiting on a
    /// later one, or on none).
    changed: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            phase: Mutex::new(Phase::Head(Instant::now())),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn deadline(&self, timeouts: Timeouts) -> Option<Instant> {
        match *self.phase() {
            Phase::Head(since) => Some(since + timeouts.header),
            Phase::Idle(since) => Some(since + timeouts.idle),
            Phase::Busy(_) => None,
        }
    }

    fn phase_name(&self) -> &'static str {
        match *self.phase() {
            Phase::Head(_) => "reading headers",
            Phase::Idle(_) => "idle",
            Phase::Busy(_) => "busy",
        }
    }

    fn busy(&self) -> bool {
        matches!(*self.phase(), Phase::Busy(_))
    }

    /// Bytes arrived: on an idle connection, they start the next request's headers.
    fn read(&self) {
        let mut phase = self.phase();
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Head(Instant::now());
            drop(phase);
            self.changed.notify_one();
        }
    }

    /// A request's headers are in; the connection is busy until [`Busy`] is dropped.
    fn begin(self: &Arc<Self>) -> Busy {
        let mut phase = self.phase();
        *phase = match *phase {
            Phase::Busy(n) => Phase::Busy(n + 1),
            Phase::Head(_) | Phase::Idle(_) => Phase::Busy(1),
        };
        Busy(self.clone())
    }
}

/// A request being served: from its headers until its response's body has been sent
/// (or the request was given up).
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut phase = self.0.phase();
        match *phase {
            Phase::Busy(n) if n > 1 => *phase = Phase::Busy(n - 1),
            _ => {
                *phase = Phase::Idle(Instant::now());
                drop(phase);
                self.0.changed.notify_one();
            }
        }
    }
}

/// The router as hyper's service of one connection: it marks the connection busy
/// while a request is served and puts the body deadline on the request.
#[derive(Clone)]
struct Service {
    router: Router,
    activity: Arc<Activity>,
    body_timeout: Duration,
}

impl hyper::service::Service<hyper::Request<Incoming>> for Service {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let busy = self.activity.begin();
        let limit = self.body_timeout;
        let req: Request = req.map(|body| {
            if hyper::body::Body::is_end_stream(&body) {
                Body::new(body)
            } else {
                Body::new(Deadline {
                    body,
                    expires: Box::pin(tokio::time::sleep(limit)),
                    limit,
                })
            }
        });
        let router = self.router.clone();
        Box::pin(async move {
            let response = router.oneshot(req).await?;
            Ok(response.map(|body| Body::new(Served { body, _busy: busy })))
        })
    }
}

/// A response body that keeps its connection busy until it is sent or dropped.
struct Served {
    body: Body,
    _busy: Busy,
}

impl hyper::body::Body for Served {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that fails with [`BodyTimedOut`] once `limit` has passed since the
/// request's headers, however it trickles in.
struct Deadline {
    body: Incoming,
    expires: Pin<Box<Sleep>>,
    limit: Duration,
}

impl hyper::body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        ready!(self.expires.as_mut().poll(cx));
        Poll::Ready(Some(Err(Box::new(BodyTimedOut(self.limit)))))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that did not arrive within the body timeout; a route reading the
/// body finds it among the causes of its error and answers 408.
#[derive(Debug)]
pub(crate) struct BodyTimedOut(pub(crate) Duration);

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the body did not arrive within {} s",
            self.0.as_secs_f64()
        )
    }
}

impl std::error::Error for BodyTimedOut {}

impl BodyTimedOut {
    /// The body timeout, if `err` or one of its causes is [`BodyTimedOut`].
    pub(crate) fn among(err: &(dyn std::error::Error + 'static)) -> Option<Duration> {
        let mut cause = Some(err);
        while let Some(e) = cause {
            if let Some(timed_out) = e.downcast_ref::<BodyTimedOut>() {
                return Some(timed_out.0);
            }
            cause = e.source();
        }
        None
    }
}

/// A connection's socket, holding its place under the connection cap (so that a
/// WebSocket, which takes the socket over, keeps it) and telling the connection's
/// [`Activity`] of the bytes it reads.
///
/// It also replaces hyper's own answer to a request it could not parse. That answer is
/// the only thing hyper writes while no request is being served; it has a status of
/// 400, 414 or 431, `content-length: 0` and no `content-type`, which no answer of the
/// routes has. It is replaced by the same status with the error body of docs/http-api.md#errors, and whatever
/// hyper writes after it (it closes the connection next) is dropped.
pub(crate) struct Conn {
    stream: TcpStream,
    activity: Arc<Activity>,
    /// The first bytes, when they had to be read to tell HTTP/2 from HTTP/1 (see
    /// [`Conn::opens_with_http2_preface`]), until the connection's reader has them.
    /// Boxed: almost no connection has them, and every idle stream's bytes count.
    head: Option<Box<Head>>,
    /// The replacement of hyper's answer, and how much of it is written.
    replaced: Option<(Vec<u8>, usize)>,
    _permit: OwnedSemaphorePermit,
}

/// The first bytes of a connection, read to tell its protocol, not yet handed to its
/// reader.
struct Head {
    bytes: [u8; HTTP2_PREFACE.len()],
    held: usize,
}

/// The first bytes a client sends when it speaks HTTP/2 from the start (prior
/// knowledge, RFC 9113 section 3.4).
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

impl Conn {
    /// Whether the client opens with HTTP/2's preface. No HTTP/1 request starts like it
    /// (`PRI` is not a method), so the first bytes mostly decide, and a peek at them,
    /// which takes nothing, decides most connections at once. Only while they are a
    /// part of the preface (a client that pauses inside it) are they read, until they
    /// part from it, match it whole, or the client closes, and kept for the
    /// connection's first read (see [`Conn::poll_read`]): a peek cannot tell a client
    /// that went quiet inside the preface from one that closed after it, and would
    /// have to poll.
    async fn opens_with_http2_preface(&mut self) -> bool {
        use tokio::io::AsyncReadExt;
        let mut peeked = [0u8; HTTP2_PREFACE.len()];
        match self.stream.peek(&mut peeked).await {
            // Closed or failed: the connection's reader meets it and ends it.
            Ok(0) | Err(_) => return false,
            Ok(n) if peeked[..n] != HTTP2_PREFACE[..n] => return false,
            Ok(n) if n == HTTP2_PREFACE.len() => return true,
            Ok(_) => {}
        }
        let head = self.head.insert(Box::new(Head {
            bytes: [0; HTTP2_PREFACE.len()],
            held: 0,
        }));
        while head.held < HTTP2_PREFACE.len() {
            match self.stream.read(&mut head.bytes[head.held..]).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => {
                    head.held += n;
                    if head.bytes[..head.held] != HTTP2_PREFACE[..head.held] {
                        return false;
                    }
                }
            }
        }
        true
    }

    fn new(stream: TcpStream, activity: Arc<Activity>, permit: OwnedSemaphorePermit) -> Conn {
        Conn {
            stream,
            activity,
            head: None,
            replaced: None,
            _permit: permit,
        }
    }

    /// Notices hyper's own answer to an unparsable request at the start of `buf`.
    fn notice(&mut self, buf: &[u8]) {
        if self.replaced.is_some() || !buf.starts_with(b"HTTP/1.") || self.activity.busy() {
            return;
        }
        let head_end = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(buf.len());
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        if head.contains("\r\ncontent-type:") || !head.contains("\r\ncontent-length: 0") {
            return;
        }
        let status = head
            .get(9..12)
            .and_then(|s| s.parse::<u16>().ok())
            .and_then(|s| StatusCode::from_u16(s).ok());
        if let Some(error) = status.and_then(ApiError::unparsable_request) {
            let status = error.status();
            let body = error.body_text();
            let answer = format!(
                "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{body}",
                status.as_u16(),
                status.canonical_reason().unwrap_or(""),
                body.len()
            );
            self.replaced = Some((answer.into_bytes(), 0));
        }
    }

    /// Writes what is left of the replacement; `None` when there is none.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Option<Poll<io::Result<()>>> {
        let (answer, written) = self.replaced.as_mut()?;
        while *written < answer.len() {
            match Pin::new(&mut self.stream).poll_write(cx, &answer[*written..]) {
                Poll::Ready(Ok(0)) => {
                    return Some(Poll::Ready(Err(io::ErrorKind::WriteZero.into())));
                }
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Some(Poll::Ready(Err(e))),
                Poll::Pending => return Some(Poll::Pending),
            }
        }
        Some(Poll::Ready(Ok(())))
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        if let Some(head) = self.head.as_mut() {
            // The bytes the protocol was told by come first, in the same read as
            // whatever followed them, as if they had never been taken: hyper sizes its
            // read buffer from its reads, and a read of 24 bytes alone would double it.
            let n = head.held.min(buf.remaining());
            buf.put_slice(&head.bytes[..n]);
            head.bytes.copy_within(n..head.held, 0);
            head.held -= n;
            if head.held == 0 {
                self.head = None;
            }
            if self.head.is_none() && buf.remaining() > 0 {
                // Pending leaves the socket's waker registered: harmless, and what was
                // taken is returned now.
                if let Poll::Ready(result) = Pin::new(&mut self.stream).poll_read(cx, buf) {
                    result?;
                }
            }
            self.activity.read();
            return Poll::Ready(Ok(()));
        }
        ready!(Pin::new(&mut self.stream).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            self.activity.read();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.notice(buf);
        match self.poll_replacement(cx) {
            Some(done) => done.map_ok(|()| buf.len()),
            None => Pin::new(&mut self.stream).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            self.notice(first);
        }
        match self.poll_replacement(cx) {
            Some(done) => done.map_ok(|()| bufs.iter().map(|b| b.len()).sum()),
            None => Pin::new(&mut self.stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
