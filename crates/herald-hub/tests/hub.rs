//! Integration tests of the hub: a real listener on `127.0.0.1:0`, a real SQLite file,
//! and clients speaking HTTP, Server-Sent Events and WebSocket to it. Nothing calls a
//! handler directly.
//!
//! # Layout
//!
//! - `util`: starting a hub, the JSON, SSE and WebSocket clients, waits with deadlines.
//! - `routes`: every REST route of SPEC section 5 and every error status.
//! - `append`: idempotency and dense `seq` under concurrency.
//! - `poll`: the (long) poll.
//! - `sse`: the event stream and `view=state`, resuming across disconnects.
//! - `ws`: the WebSocket.
//! - `runs_stream`: `GET /v1/runs/stream`.
//! - `tokens`: admin, write and read tokens; the open hub.
//! - `sweep`: stall detection, retention and cancel, on a manual clock.
//! - `ops`: `/healthz`, `/metrics`, `/openapi.json`.
//! - `dashboard`: the web pages in headless Chromium, through chromedriver.

#[path = "hub/append.rs"]
mod append;
#[path = "hub/dashboard.rs"]
mod dashboard;
#[path = "hub/ops.rs"]
mod ops;
#[path = "hub/poll.rs"]
mod poll;
#[path = "hub/routes.rs"]
mod routes;
#[path = "hub/runs_stream.rs"]
mod runs_stream;
#[path = "hub/sse.rs"]
mod sse;
#[path = "hub/sweep.rs"]
mod sweep;
#[path = "hub/tokens.rs"]
mod tokens;
#[path = "hub/util.rs"]
mod util;
#[path = "hub/ws.rs"]
mod ws;
