//! The hubs the SDK reports to: a real one, up (`herald_hub::serve` on `127.0.0.1:0`
//! over a fresh SQLite file, in a process of its own pinned to another CPU than the
//! work loop's, or on a tokio runtime of its own inside this process), and
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
        run_state(&self.runtime, &self.client, &self.url(), id)
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

/// A hub in a process of its own (this binary's `serve --db PATH`, which runs
/// [`crate::hub::serve_main`]), pinned to `cpu` with `taskset` when one is given: the
/// hub of the measurement, "in another process, pinned apart".
pub(crate) struct ProcessHub {
    child: std::process::Child,
    /// Closing it tells the hub to stop.
    stdin: Option<std::process::ChildStdin>,
    addr: SocketAddr,
    runtime: Runtime,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl ProcessHub {
    /// Starts `current_exe serve --db <fresh file>`, under `taskset -c CPU` with a CPU,
    /// and waits until it listens.
    pub(crate) fn start(cpu: Option<usize>) -> anyhow::Result<ProcessHub> {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().context("creating a temporary directory")?;
        let db = dir.path().join("hub.db");
        let exe = std::env::current_exe().context("finding this binary")?;
        let mut command = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let mut child = command
            .arg("serve")
            .arg("--db")
            .arg(&db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {} serve", exe.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .context("reading the hub's first line")?;
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("the hub said `{}`, not `listening on ADDR`", line.trim()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting a runtime for the hub's client")?;
        Ok(ProcessHub {
            child,
            stdin,
            addr,
            runtime,
            client: reqwest::Client::new(),
            _dir: dir,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// CPU time the hub process has used so far.
    pub(crate) fn cpu(&self) -> anyhow::Result<Duration> {
        crate::hub::cpu_time(&self.child.id().to_string())
    }

    /// The run's status on the hub and how many events it stored.
    pub(crate) fn run_state(&self, id: &RunId) -> anyhow::Result<(String, u64)> {
        run_state(&self.runtime, &self.client, &self.url(), id)
    }

    /// Stops the hub (its stdin closes) and waits for it, killing it after a while.
    pub(crate) fn stop(mut self) {
        drop(self.stdin.take());
        let deadline = std::time::Instant::now() + STOP_TIMEOUT;
        while std::time::Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ProcessHub {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The run's state as the hub at `base` has it: its status and how many events it
/// stored.
fn run_state(
    runtime: &Runtime,
    client: &reqwest::Client,
    base: &str,
    id: &RunId,
) -> anyhow::Result<(String, u64)> {
    let url = format!("{base}/v1/runs/{id}");
    let state: RunState = runtime.block_on(async {
        let response = client.get(&url).send().await?;
        if !response.status().is_success() {
            bail!("GET {url}: {}", response.status());
        }
        Ok(response.json().await?)
    })?;
    Ok((state.status.as_str().to_owned(), state.last_seq))
}

/// Pins the calling thread to `cpu` (`taskset -p -c CPU TID`).
pub(crate) fn pin_current_thread(cpu: usize) -> anyhow::Result<()> {
    let link = std::fs::read_link("/proc/thread-self").context("reading /proc/thread-self")?;
    let tid = link
        .file_name()
        .and_then(|n| n.to_str())
        .context("/proc/thread-self does not end in a thread id")?
        .to_owned();
    let status = std::process::Command::new("taskset")
        .args(["-p", "-c", &cpu.to_string(), &tid])
        .stdout(std::process::Stdio::null())
        .status()
        .context("running taskset")?;
    if !status.success() {
        bail!("taskset -p -c {cpu} {tid}: {status}");
    }
    Ok(())
}
