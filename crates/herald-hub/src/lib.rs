//! The herald hub (`herald serve`): any process posts events for a run, any viewer
//! polls, long-polls or subscribes (SSE, WebSocket); docs/http-api.md describes the routes.
//!
//! [`app`] builds the routes over a [`Hub`]; [`serve`] runs them on a listener until a
//! shutdown future resolves, so a test can bind `127.0.0.1:0` or call the router
//! directly.
//!
//! # Layout
//!
//! From the top down; a module uses only those below it (ARCHITECTURE.md's code map,
//! held by the test `hub_modules_are_layered`).
//!
//! - `routes`: the router, its layers and CORS; `openapi`: `/openapi.json`, generated
//!   from the handlers' annotations.
//! - The handlers: `api` (create, append, state, cancel, delete, list, health,
//!   metrics), `stream` (the long poll, SSE, WebSocket, the runs stream), `agui`
//!   (`?format=ag-ui`, docs/http-api.md#ag-ui), `dashboard` (the web pages and their
//!   embedded assets), `guard` (what every request is checked for first: `Host` and
//!   `Origin` on an open hub, a JSON media type on a body).
//! - `access`: who may call what, as axum extractors (the run a route names once its
//!   token is checked, the body within its limit); `cursor`: a reader's position in a
//!   run's events and where a stream resumes, for every stream; `sse`: an SSE
//!   response with its keep-alive.
//! - `hub`: [`Hub`], the shared state, and how changes reach subscribers.
//! - `feed`: fan-out of new events to subscribers without a query per subscriber.
//! - `store`: the [`Store`] trait and its SQLite and PostgreSQL implementations.
//! - `error`: [`ApiError`], the one error type, with the error body of
//!   docs/http-api.md#errors, and how store errors map to it.
//! - `mcp`: `/mcp`, the tools and resources of docs/mcp.md over MCP's streamable HTTP.
//! - `server`: the accept loop, the connection cap and the header, body and idle
//!   timeouts.
//! - `config` ([`HubConfig`]), `auth` (tokens, hashed at rest, compared in constant
//!   time), `metrics`, `limit` ([`RateLimit`], behind `429`), `clock` ([`Clock`], so
//!   that stall detection and retention are testable), `lru` (the caches' bound).

#![deny(missing_docs)]

mod access;
mod agui;
mod api;
mod auth;
mod clock;
mod config;
mod cursor;
mod dashboard;
mod error;
mod feed;
mod guard;
mod hub;
mod limit;
mod lru;
mod mcp;
mod metrics;
mod openapi;
mod routes;
mod server;
mod sse;
mod store;
mod stream;

use std::future::Future;

use axum::Router;
use tokio::net::TcpListener;

pub use auth::Scope;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    ConfigError, DEFAULT_EVENTS_PER_S, HubConfig, MIN_TOKEN_CHARS, check_admin_token,
};
pub use error::ApiError;
pub use hub::Hub;
pub use limit::RateLimit;
pub use mcp::{
    INSTRUCTIONS as MCP_INSTRUCTIONS, jsonrpc_refusal as mcp_jsonrpc_refusal,
    protocol_versions as mcp_protocol_versions, server_config as mcp_server_config,
    tool_error as mcp_tool_error, tools as mcp_tools,
};
pub use store::{
    Appended, Author, NewRun, PostgresStore, RunFilter, RunRecord, SQLITE_MIGRATIONS, SqliteStore,
    Store, StoreError, Wake, open_store,
};

/// The routes of docs/http-api.md over `hub`.
pub fn app(hub: Hub) -> Router {
    routes::router(hub)
}

/// Serves `hub` on `listener` (with its sweeper) until `shutdown` resolves; then stops
/// accepting, ends open streams, and lets in-flight requests finish. Refuses to start
/// (`InvalidInput`) with a configuration [`HubConfig::validate`] refuses.
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    hub.config()
        .validate()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let sweeper = hub.spawn_sweeper();
    let waker = hub.spawn_waker();
    let stopping = hub.clone();
    let signal = tokio::spawn(async move {
        shutdown.await;
        stopping.shutdown();
    });
    server::run(
        listener,
        app(hub.clone()),
        hub.config(),
        hub.shutdown_token().clone(),
    )
    .await;
    signal.abort();
    sweeper.abort();
    if let Some(waker) = waker {
        waker.abort();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// The hub's modules from the top down, as ARCHITECTURE.md's code map lists them: a
    /// module may use only modules of a later layer, which rules out import cycles.
    const LAYERS: &[&[&str]] = &[
        &["routes"],
        &["openapi", "mcp"],
        &["api", "stream", "dashboard", "guard"],
        &["agui"],
        &["sse"],
        &["access", "cursor"],
        &["hub"],
        &["feed", "server"],
        &["error"],
        &["store"],
        &["config"],
        &["auth", "metrics", "limit", "clock", "lru"],
    ];

    fn layer(module: &str) -> Option<usize> {
        LAYERS.iter().position(|layer| layer.contains(&module))
    }

    /// The modules `source` names as `crate::module` or `use crate::{module, ...}`,
    /// outside its tests.
    fn uses(source: &str) -> BTreeSet<String> {
        let source = source.split("#[cfg(test)]").next().unwrap_or(source);
        let mut used = BTreeSet::new();
        for (at, _) in source.match_indices("crate::") {
            let rest = &source[at + "crate::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group.split('}').next().unwrap_or("").split(',').collect(),
                None => vec![rest],
            };
            for name in names {
                let name: String = name
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    used.insert(name);
                }
            }
        }
        used
    }

    #[test]
    fn hub_modules_are_layered() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        let mut dirs = vec![src.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("src/ is readable") {
                let path = entry.expect("a directory entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        let mut checked = 0;
        for file in files {
            let relative = file.strip_prefix(&src).expect("under src/");
            let module = relative
                .components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .expect("a module name")
                .trim_end_matches(".rs");
            if module == "lib" || relative.ends_with("tests.rs") {
                continue;
            }
            let own = layer(module)
                .unwrap_or_else(|| panic!("`{module}` is in no layer of LAYERS: add it"));
            let source = std::fs::read_to_string(&file).expect("a source file");
            for used in uses(&source) {
                let Some(theirs) = layer(&used) else { continue };
                assert!(
                    used == module || theirs > own,
                    "`{}` uses `{used}`, which is not in a later layer",
                    relative.display()
                );
            }
            checked += 1;
        }
        assert!(
            checked >= 20,
            "only {checked} modules found under {}",
            src.display()
        );
    }
}
