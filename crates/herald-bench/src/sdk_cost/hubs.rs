//! The hubs the SDK reports to: a real one, up (`herald_hub::serve` on `127.0.0.1:0`
//! over a fresh SQLite file, on a tokio runtime of its own inside this process), and
//! two that are down: a loopback port with no listener (connections refused at once)
//! and a listener that never accepts (connections complete in the kernel's backlog,
//! requests are written, no reply ever comes).

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use herald::protocol::{RunId, RunState};
use herald_hub::{Hub, HubConfig, SqliteStore};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long stopping the hub may take before it is left to the runtime's drop.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A hub serving in this process, on its own runtime's threads (named `hub-rt`, so
/// that their CPU time is told apart from the SDK's `herald-*` threads).
pub(crate) struct LocalHub {
    runtime: Runtime,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    served: Option<JoinHandle<std::io::Result<()>>>,
    client: reqwest::Client,
    /// The SQLite file's directory, removed when the hub is dropped.
    _dir: tempfile::TempDir,
}

impl LocalHub {
    /// Starts the hub with its default configuration (as `herald serve` runs it, open on
    /// loopback) over a fresh SQLite file in a temporary directory.
    pub(crate) fn start() -> anyhow::Result<LocalHub> {
        let dir = tempfile::tempdir().context("creating a temporary directory")?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("hub-rt")
            .enable_all()
            .build()
            .context("starting the hub's runtime")?;
        let db = dir.path().join("hub.db");
        let (addr, shutdown, served) = runtime.block_on(async {
            let store = SqliteStore::open(&db)
                .await
                .with_context(|| format!("opening {}", db.display()))?;
            let hub = Hub::new(Arc::new(store), HubConfig::default());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let (shutdown, stop) = oneshot::channel::<()>();
            let served = tokio::spawn(herald_hub::serve(listener, hub, async move {
                let _ = stop.await;
            }));
            anyhow::Ok((addr, shutdown, served))
        })?;
        Ok(LocalHub {
            runtime,
            addr,
            shutdown: Some(shutdown),
            served: Some(served),
            client: reqwest::Client::new(),
            _dir: dir,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The run's state as the hub has it: its status and how many events it stored.
    pub(crate) fn run_state(&self, id: &RunId) -> anyhow::Result<(String, u64)> {
        let url = format!("{}/v1/runs/{id}", self.url());
        let state: RunState = self.runtime.block_on(async {
            let response = self.client.get(&url).send().await?;
            if !response.status().is_success() {
                bail!("GET {url}: {}", response.status());
            }
            Ok(response.json().await?)
        })?;
        Ok((state.status.as_str().to_owned(), state.last_seq))
    }

    /// Asks the run to stop (`POST /v1/runs/{id}/cancel`).
    pub(crate) fn cancel(&self, id: &RunId) -> anyhow::Result<()> {
        let url = format!("{}/v1/runs/{id}/cancel", self.url());
        self.runtime.block_on(async {
            let response = self.client.post(&url).body("{}").send().await?;
            if !response.status().is_success() {
                bail!("POST {url}: {}", response.status());
            }
            anyhow::Ok(())
        })
    }

    /// Stops serving and waits for the server to end.
    pub(crate) fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(served) = self.served.take() {
            let _ = self
                .runtime
                .block_on(async { tokio::time::timeout(STOP_TIMEOUT, served).await });
        }
    }
}

/// A loopback address nothing listens on: bound, then released, so a connection to it
/// is refused at once (unless another process takes the port in between, which the
/// caller would notice as a hub that answers).
pub(crate) fn refused_addr() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    let addr = listener.local_addr()?;
    drop(listener);
    Ok(addr)
}

/// A listener that never accepts: the kernel completes connections into its backlog,
/// and requests sent on them are never answered. Dropping it resets them.
pub(crate) fn silent_listener() -> anyhow::Result<TcpListener> {
    TcpListener::bind("127.0.0.1:0").context("binding a loopback port")
}
