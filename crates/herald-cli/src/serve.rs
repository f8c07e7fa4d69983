//! `herald serve`: the hub (SPEC section 5) on a real listener, with SQLite by default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use herald_hub::{Hub, HubConfig, SqliteStore, Store};

use crate::UsageError;
use crate::args::ServeArgs;

/// What `herald serve` runs with, resolved from flags and the environment.
pub(crate) struct ServeSettings {
    pub(crate) addr: SocketAddr,
    pub(crate) db: DbLocation,
    pub(crate) token: Option<String>,
}

/// Where the hub keeps its data.
pub(crate) enum DbLocation {
    /// A SQLite file.
    Sqlite(PathBuf),
}

pub(crate) fn resolve(args: &ServeArgs) -> Result<ServeSettings, UsageError> {
    let addr: SocketAddr = args.addr.parse().map_err(|_| {
        UsageError(format!(
            "--addr `{}` is not HOST:PORT (e.g. 127.0.0.1:7311)",
            args.addr
        ))
    })?;
    let token = args.token.clone().filter(|t| !t.is_empty());
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
            return Err(UsageError(
                "this build of herald stores runs in SQLite only; PostgreSQL (--db postgres://...) is not available yet"
                    .into(),
            ));
        }
        Some(url) => {
            return Err(UsageError(format!(
                "--db `{url}` is not a database URL: use sqlite://PATH"
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
    Ok(ServeSettings { addr, db, token })
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
    }
}

/// Binds the listener and builds the hub; the caller serves it.
pub(crate) async fn bind(
    settings: &ServeSettings,
) -> anyhow::Result<(tokio::net::TcpListener, Hub)> {
    let store = open_store(&settings.db).await?;
    let config = HubConfig {
        admin_token: settings.token.clone(),
        ..HubConfig::default()
    };
    let listener = tokio::net::TcpListener::bind(settings.addr)
        .await
        .with_context(|| format!("cannot listen on {}", settings.addr))?;
    Ok((listener, Hub::new(store, config)))
}

pub(crate) fn run(args: &ServeArgs) -> anyhow::Result<u8> {
    let settings = resolve(args)?;
    init_logging();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let (listener, hub) = bind(&settings).await?;
        let addr = listener.local_addr()?;
        let db = match &settings.db {
            DbLocation::Sqlite(path) => path.display().to_string(),
        };
        // The address goes to stdout, alone on its line, for scripts and tests.
        println!("herald hub listening on http://{addr}");
        tracing::info!(%addr, db = %db, open = settings.token.is_none(), "hub started");
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
    /// platform's data directory).
    pub(crate) fn start(data_dir: Option<PathBuf>) -> anyhow::Result<Embedded> {
        let args = ServeArgs {
            addr: "127.0.0.1:0".into(),
            data_dir,
            db: None,
            token: None,
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

    /// Waits for Ctrl-C (or SIGTERM), then stops.
    pub(crate) fn serve_until_interrupted(self) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        runtime.block_on(shutdown_signal());
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
