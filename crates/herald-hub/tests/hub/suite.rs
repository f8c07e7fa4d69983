//! The hub's suite, run on each store: `hub.rs` includes this file twice, as `mod sqlite`
//! and as `mod postgres`, so one `cargo test` runs every test on both and names it after
//! its store (`sqlite::sse::...`, `postgres::sse::...`). The test modules start their
//! hubs on [`STORE`].
//!
//! # Layout
//!
//! - `routes`: every REST route of docs/http-api.md and every error status.
//! - `append`: idempotency and dense `seq` under concurrency.
//! - `poll`: the (long) poll.
//! - `sse`: the event stream and `view=state`, resuming across disconnects.
//! - `ws`: the WebSocket; `ws_resume`: resuming it with `{"after": SEQ}` many times.
//! - `pacing`: at most four states a second on `view=state`; the keep-alive interval.
//! - `runs_stream`: `GET /v1/runs/stream`.
//! - `tokens`: admin, write and read tokens; the open hub.
//! - `sweep`: stall detection, retention and cancel, on a manual clock.
//! - `ops`: `/healthz`, `/metrics`, `/openapi.json`.
//! - `agui`: `?format=ag-ui`, the run as AG-UI events.
//! - `stored`: what the hub stores is bounded, and reads back even when a row is damaged.
//! - `full_disk`: a real full file system under the database: 507, reads go on.

use crate::util::StoreKind;

/// The store this copy of the suite runs on. `module_path!()` is the path of the module
/// `hub.rs` included this file as (`hub::sqlite` or `hub::postgres`), the one thing that
/// differs between the copies; a `const`, so a copy under another name does not compile.
const STORE: StoreKind = StoreKind::of_module(module_path!());

#[path = "agui.rs"]
mod agui;
#[path = "append.rs"]
mod append;
#[path = "full_disk.rs"]
mod full_disk;
#[path = "ops.rs"]
mod ops;
#[path = "pacing.rs"]
mod pacing;
#[path = "poll.rs"]
mod poll;
#[path = "routes.rs"]
mod routes;
#[path = "runs_stream.rs"]
mod runs_stream;
#[path = "sse.rs"]
mod sse;
#[path = "stored.rs"]
mod stored;
#[path = "sweep.rs"]
mod sweep;
#[path = "tokens.rs"]
mod tokens;
#[path = "ws.rs"]
mod ws;
#[path = "ws_resume.rs"]
mod ws_resume;
