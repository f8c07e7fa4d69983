//! Integration tests of the hub: a real listener on `127.0.0.1:0`, a real database, and
//! clients speaking HTTP, Server-Sent Events and WebSocket to it. Nothing calls a
//! handler directly.
//!
//! The suite runs on both stores: a fresh SQLite file per test, and a fresh database per
//! test on the PostgreSQL server at `127.0.0.1:5432` (user `postgres`; another with
//! `HERALD_TEST_POSTGRES_URL`), which must be running: the PostgreSQL tests fail, saying
//! so, when it is not.
//!
//! # Layout
//!
//! - `util`: starting a hub on a fresh database, the JSON, SSE and WebSocket clients,
//!   waits with deadlines.
//! - `sqlite`, `postgres`: the suite (`suite.rs` and the modules it lists), once per
//!   store.
//! - `hubs`: two hubs on one PostgreSQL database.
//! - `shared_sqlite`: two hubs on one SQLite file, joined by the feeds' interval poll.
//! - `sqlite_schema`: the SQLite schema's versions, from a file an older hub wrote.
//! - `http`, `conn`: what the hub checks before any route (media types, `Host`,
//!   `Origin`), its answers outside the routes, and its connections' timeouts and cap;
//!   on SQLite only, as none of it reaches the store.
//! - `agui_client`: AG-UI's own client (`HttpAgent`, under Node.js) following runs; on
//!   SQLite only, as the store is the suite's business.
//! - `dashboard`: the web pages in headless Chromium, through chromedriver; on SQLite
//!   only, as they are slow and the pages do not see the store.
//! - `fuzz`: query parameters, stream cursors and append bodies of any bytes, as
//!   property tests; on SQLite only, as none of it is the store's.
//! - `schemathesis`: `/openapi.json` validated, and a live hub checked against it by
//!   schemathesis; on SQLite only.

// Compiling the suite's files once per store is the point of `sqlite` and `postgres`.
#![allow(clippy::duplicate_mod)]

#[path = "hub/agui_client.rs"]
mod agui_client;
#[path = "hub/conn.rs"]
mod conn;
#[path = "hub/dashboard.rs"]
mod dashboard;
#[path = "hub/fuzz.rs"]
mod fuzz;
#[path = "hub/http.rs"]
mod http;
#[path = "hub/hubs.rs"]
mod hubs;
#[path = "hub/suite.rs"]
mod postgres;
#[path = "hub/schemathesis.rs"]
mod schemathesis;
#[path = "hub/shared_sqlite.rs"]
mod shared_sqlite;
#[path = "hub/suite.rs"]
mod sqlite;
#[path = "hub/sqlite_schema.rs"]
mod sqlite_schema;
#[path = "hub/util.rs"]
mod util;
