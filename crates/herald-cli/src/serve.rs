//! `herald serve`: the hub (docs/http-api.md) on a real listener, with SQLite by default
//! and PostgreSQL when `--db`/`HERALD_DATABASE_URL` names one, so that several hubs can
//! serve the same runs.
//!
//! Failures and their exit codes: a `--db` that is neither `sqlite:` nor `postgres://`
//! (or `postgresql://`) is a usage error (2), found before anything is opened; a
//! database that cannot be opened or reached (PostgreSQL down, wrong port, unknown
//! database, refused login, migrations failing) exits 1 with the store's message, which
//! names the host, port and database but never the password.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use herald_hub::{Hub, HubConfig, PostgresStore, RateLimit, SqliteStore, Store};

use crate::UsageError;
use crate::args::{Rate, ServeArgs};

/// What `herald serve` runs with, resolved from flags and the environment.
pub(crate) struct ServeSettings {
    pub(crate) addr: SocketAddr,
    pub(crate) db: DbLocation,
    pub(crate) token: Option<String>,
    /// The per-run ingest limit; `None`: none.
    pub(crate) rate_limit: Option<RateLimit>,
    /// Origins allowed to call the hub from a browser.
    pub(crate) cors_origins: Vec<String>,
    pub(crate) header_timeout: Duration,
    pub(crate) body_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_connections: usize,
}

/// The cap on connections without `--max-connections`: the hub's default, or fewer
/// when the process may open fewer files, so that it never runs out of them (and
/// cannot accept even `/healthz`). `RESERVED_FILES` are left for the database's files
/// and connections, the listener and the rest.
fn default_max_connections() -> usize {
    const RESERVED_FILES: usize = 100;
    let default = HubConfig::default().max_connections;
    match open_files_limit() {
        Some(limit) => default.min(limit.saturating_sub(RESERVED_FILES).max(limit / 2).max(1)),
        None => default,
    }
}

/// The soft limit of open files of this process, if it has one.
#[cfg(unix)]
fn open_files_limit() -> Option<usize> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    limit
        .current
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

#[cfg(not(unix))]
fn open_files_limit() -> Option<usize> {
    None
}

/// Where the hub keeps its data.
pub(crate) enum DbLocation {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database, by its URL (`postgres://USER:PASSWORD@HOST:PORT/DB`),
    /// which several hubs may share.
    Postgres(String),
}

impl DbLocation {
    /// What to call the database in logs and messages: a SQLite path, or a PostgreSQL
    /// URL without its password.
    fn display(&self) -> String {
        match self {
            DbLocation::Sqlite(path) => path.display().to_string(),
            DbLocation::Postgres(url) => without_password(url),
        }
    }
}

/// `url` with the password of its user info, if any, replaced by `***`, so that a
/// database URL can be logged.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    // The user info ends at the last `@`: a password may itself hold one.
    let Some((user_info, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    match user_info.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
        None => url.to_owned(),
    }
}

pub(crate) fn resolve(args: &ServeArgs) -> Result<ServeSettings, UsageError> {
    let addr: SocketAddr = args.addr.parse().map_err(|_| {
        UsageError(format!(
            "--addr `{}` is not HOST:PORT (e.g. 127.0.0.1:7311)",
            args.addr
        ))
    })?;
    // Empty is unset, as for every variable; anything else must be a real secret.
    let token = args.token.clone().filter(|t| !t.is_empty());
    if let Some(token) = &token {
        herald_hub::check_admin_token(token)
            .map_err(|e| UsageError(format!("--token (HERALD_TOKEN) refused: {e}")))?;
    }
    if !addr.ip().is_loopback() && token.is_none() {
        return Err(UsageError(format!(
            "refusing to listen on {addr} without an admin token: set --token or HERALD_TOKEN \
             (only a loopback address may run open)"
        )));
    }
    let db = match &args.db {
        Some(url) if url.starts_with("sqlite:") => {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            DbLocation::Sqlite(PathBuf::from(path))
        }
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            DbLocation::Postgres(url.clone())
        }
        Some(url) => {
            return Err(UsageError(format!(
                "--db `{}` is not a database URL: use sqlite://PATH or \
                 postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE",
                without_password(url)
            )));
        }
        None => {
            let dir = match &args.data_dir {
                Some(dir) => dir.clone(),
                None => dirs::data_dir().map(|d| d.join("herald")).ok_or_else(|| {
                    UsageError("no data directory on this platform: set --data-dir".into())
                })?,
            };
            DbLocation::Sqlite(dir.join("herald.db"))
        }
    };
    let rate_limit = match args.rate_limit {
        None => HubConfig::default().rate_limit,
        Some(Rate::Off) => None,
        Some(Rate::PerSecond(rate)) => Some(RateLimit::per_second(rate)),
    };
    let cors_origins = cors_origins(&args.cors_origins, token.is_some())?;
    Ok(ServeSettings {
        addr,
        db,
        token,
        rate_limit,
        cors_origins,
        header_timeout: args.header_timeout,
        body_timeout: args.body_timeout,
        idle_timeout: args.idle_timeout,
        max_connections: args
            .max_connections
            .map_or_else(default_max_connections, |n| n as usize),
    })
}

/// Checks each `--cors-origin`: `*`, or `http(s)://HOST[:PORT]` as a browser sends it
/// in `Origin` (no path, no trailing slash), or it would never match.
fn cors_origins(origins: &[String], has_token: bool) -> Result<Vec<String>, UsageError> {
    let origins: Vec<String> = origins
        .iter()
        .map(|o| o.trim().to_ascii_lowercase())
        .filter(|o| !o.is_empty())
        .collect();
    for origin in &origins {
        if origin == "*" {
            if !has_token {
                return Err(UsageError(
                    "--cors-origin * on an open hub would let any web page read and change \
                     its runs: set --token (HERALD_TOKEN) too, or name the origins"
                        .into(),
                ));
            }
            continue;
        }
        let host = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        let valid = host.is_some_and(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
        });
        if !valid {
            return Err(UsageError(format!(
                "--cors-origin `{origin}` is not an origin: give scheme and host as a \
                 browser sends them, e.g. https://app.example.com or http://localhost:3000 \
                 (no path, no trailing slash), or *"
            )));
        }
    }
    Ok(origins)
}

/// Opens the store the settings name.
pub(crate) async fn open_store(db: &DbLocation) -> anyhow::Result<Arc<dyn Store>> {
    match db {
        DbLocation::Sqlite(path) => {
            let store = SqliteStore::open(path)
                .await
                .with_context(|| format!("opening the SQLite database {}", path.display()))?;
            Ok(Arc::new(store))
        }
        // The store's error names the host, port and database; the URL, which may hold
        // a password, is not repeated.
        DbLocation::Postgres(url) => Ok(Arc::new(PostgresStore::connect(url).await?)),
    }
}

/// Binds the listener and builds the hub; the caller serves it.
pub(crate) async fn bind(
    settings: &ServeSettings,
) -> anyhow::Result<(tokio::net::TcpListener, Hub)> {
    let store = open_store(&settings.db).await?;
    let config = HubConfig {
        admin_token: settings.token.clone(),
        rate_limit: settings.rate_limit,
        cors_origins: settings.cors_origins.clone(),
        header_timeout: settings.header_timeout,
        body_timeout: settings.body_timeout,
        idle_timeout: settings.idle_timeout,
        max_connections: settings.max_connections,
        ..HubConfig::default()
    };
    let listener = tokio::net::TcpListener::bind(settings.addr)
        .await
        .with_context(|| format!("cannot listen on {}", settings.addr))?;
    Ok((listener, Hub::new(store, config)))
}

/// Lets jemalloc's background threads give freed memory back to the system: without
/// them jemalloc returns it only when some thread allocates again, and an idle hub's
/// threads do not allocate. For every process that holds a hub, `herald serve`'s and
/// the demo's. (`hub-load serve` does the same in herald-bench's `hub/allocator.rs`,
/// so that the hub it measures is this one.)
fn return_freed_memory() {
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::warn!(error = %e, "cannot start jemalloc's background threads: freed memory may stay resident");
    }
}

pub(crate) fn run(args: &ServeArgs) -> anyhow::Result<u8> {
    let settings = resolve(args)?;
    init_logging();
    return_freed_memory();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let (listener, hub) = bind(&settings).await?;
        let addr = listener.local_addr()?;
        let db = settings.db.display();
        // The address goes to stdout, alone on its line, for scripts and tests.
        println!("herald hub listening on http://{addr}");
        tracing::info!(
            %addr,
            db = %db,
            open = settings.token.is_none(),
            max_connections = settings.max_connections,
            "hub started"
        );
        herald_hub::serve(listener, hub, shutdown_signal()).await?;
        tracing::info!("hub stopped");
        Ok(0)
    })
}

/// Logs to stderr, filtered by `HERALD_LOG` (e.g. `info`, `herald_hub=debug`); by
/// default one line per request (method, path without its query, status, latency).
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HERALD_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,herald_cli=info,herald_hub=info,tower_http=info")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// A hub running on a thread of its own, for `herald demo --serve`.
pub(crate) struct Embedded {
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub(crate) url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Embedded {
    /// Starts an open hub on a free loopback port, with SQLite in `data_dir` (or the
    /// platform's data directory): the demo's hub is its own, whatever
    /// `HERALD_DATABASE_URL` says, so `db` is `None` here.
    pub(crate) fn start(data_dir: Option<PathBuf>) -> anyhow::Result<Embedded> {
        return_freed_memory();
        let defaults = HubConfig::default();
        let args = ServeArgs {
            addr: "127.0.0.1:0".into(),
            data_dir,
            db: None,
            token: None,
            rate_limit: None,
            cors_origins: Vec::new(),
            header_timeout: defaults.header_timeout,
            body_timeout: defaults.body_timeout,
            idle_timeout: defaults.idle_timeout,
            max_connections: None,
        };
        let settings = resolve(&args)?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<String>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("herald-embedded-hub".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Runtime::new() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let (listener, hub) = match bind(&settings).await {
                        Ok(bound) => bound,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let url = listener.local_addr().map(|a| format!("http://{a}"));
                    let _ = ready_tx.send(url.map_err(Into::into));
                    let stop = async {
                        let _ = stop_rx.await;
                    };
                    if let Err(e) = herald_hub::serve(listener, hub, stop).await {
                        tracing::error!(error = %e, "embedded hub failed");
                    }
                });
            })
            .context("starting the embedded hub")?;
        let url = ready_rx
            .recv()
            .context("the embedded hub did not start")??;
        Ok(Embedded {
            url,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Waits for Ctrl-C (or SIGTERM), then stops gracefully and says so.
    pub(crate) fn serve_until_interrupted(self) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        runtime.block_on(shutdown_signal());
        drop(self);
        eprintln!("herald: the hub stopped");
        Ok(())
    }
}

impl Drop for Embedded {
    /// Stops the hub gracefully: open streams end, in-flight requests finish.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[track_caller]
    fn check(url: &str, expected: &str) {
        assert_eq!(without_password(url), expected);
    }

    #[test]
    fn passwords_are_left_out_of_logged_urls() {
        check(
            "postgres://herald:s3cret@db.example:5432/herald",
            "postgres://herald:***@db.example:5432/herald",
        );
        check(
            "postgresql://u:p@ss@h/db?sslmode=require",
            "postgresql://u:***@h/db?sslmode=require",
        );
        check("postgres://h:5432/db", "postgres://h:5432/db");
        check(
            "postgres://postgres@127.0.0.1/db",
            "postgres://postgres@127.0.0.1/db",
        );
        check("postgres://u:p@h", "postgres://u:***@h");
        check("sqlite:///tmp/x.db", "sqlite:///tmp/x.db");
    }
}
