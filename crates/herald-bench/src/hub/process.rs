//! The hub under load in a process of its own (`hub-load serve`), and what `/proc`
//! says about a process: resident memory and CPU time.
//!
//! The hub gets its own process so that its RSS is its own, and so that the load
//! generator's work shows as another process's CPU time rather than hiding inside the
//! hub's. Both still share this machine's cores, which the report says.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use herald_hub::{Hub, HubConfig, PostgresStore, SqliteStore, Store};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

/// The variable naming another `hub-load` binary whose `serve` runs the hub.
const HUB_EXE_VAR: &str = "HUB_LOAD_HUB_EXE";

/// How long a child process may take to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `db` names a PostgreSQL database rather than a SQLite file.
pub(crate) fn is_postgres(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// `hub-load serve --db DB`: the hub with its default configuration (as `herald
/// serve` runs it) on `127.0.0.1:0` over a SQLite file (`DB` a path) or a PostgreSQL
/// database (`DB` a `postgres://` URL); prints `listening on ADDR`, and stops when its
/// standard input closes, so that it never outlives the load generator.
pub fn serve_main(db: &str) -> anyhow::Result<()> {
    super::allocator::tune_for_serving();
    let files = raise_open_files_limit();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let store: Arc<dyn Store> = if is_postgres(db) {
            Arc::new(PostgresStore::connect(db).await?)
        } else {
            Arc::new(
                SqliteStore::open(Path::new(db))
                    .await
                    .with_context(|| format!("opening {db}"))?,
            )
        };
        // The hub's capacity is what is measured, not its per-run ingest limit, nor
        // its cap on connections (10,000 by default, which the idle part's 10,000
        // streams would reach, leaving its `/metrics` request waiting): the cap is
        // the open files this process may have, less 100 for the rest, as `herald
        // serve` sizes it when the limit is lower than its default.
        let config = HubConfig {
            rate_limit: None,
            max_connections: usize::try_from(files.saturating_sub(100))
                .unwrap_or(usize::MAX)
                .max(HubConfig::default().max_connections),
            ..HubConfig::default()
        };
        let hub = Hub::new(store, config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("listening on {}", listener.local_addr()?);
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
        // A blocking read on a thread of its own: EOF means the parent is gone.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            let _ = closed_tx.send(());
        });
        herald_hub::serve(listener, hub, async move {
            let _ = closed_rx.await;
        })
        .await?;
        Ok(())
    })
}

/// Raises this process's soft limit of open files to its hard limit (children inherit
/// it), and returns the soft limit now in force.
pub(crate) fn raise_open_files_limit() -> u64 {
    let (_, hard) = rlimit::Resource::NOFILE.get().unwrap_or((1024, 1024));
    rlimit::increase_nofile_limit(hard).unwrap_or(1024)
}

/// A child process of this same binary (`serve` or `subscribe`), killed when dropped.
pub(crate) struct ChildProcess {
    child: Child,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    /// Closing it tells the child to stop.
    stdin: Option<ChildStdin>,
    pid: u32,
}

impl ChildProcess {
    /// Starts `current_exe args...` with piped stdin and stdout.
    pub(crate) fn spawn(args: &[&str]) -> anyhow::Result<ChildProcess> {
        let exe = std::env::current_exe().context("finding this binary")?;
        ChildProcess::spawn_exe(&exe, args)
    }

    /// Starts `exe args...` with piped stdin and stdout.
    fn spawn_exe(exe: &Path, args: &[&str]) -> anyhow::Result<ChildProcess> {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting hub-load {}", args.join(" ")))?;
        let pid = child.id().context("the child has no pid")?;
        let stdout = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        let stdin = child.stdin.take();
        Ok(ChildProcess {
            child,
            stdout,
            stdin,
            pid,
        })
    }

    /// The child's next line of output, waiting at most `timeout`.
    pub(crate) async fn line(&mut self, timeout: Duration) -> anyhow::Result<String> {
        match tokio::time::timeout(timeout, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => Ok(line),
            Ok(Ok(None)) => bail!("the child process {} ended early", self.pid),
            Ok(Err(e)) => Err(e).context("reading the child's output"),
            Err(_) => bail!(
                "the child process {} said nothing for {timeout:?}",
                self.pid
            ),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Closes the child's stdin and waits for it to end (killing it after `timeout`).
    pub(crate) async fn stop(mut self, timeout: Duration) {
        drop(self.stdin.take());
        if tokio::time::timeout(timeout, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// A hub in its own process over a fresh SQLite file or a PostgreSQL database.
pub(crate) struct HubProcess {
    process: ChildProcess,
    addr: SocketAddr,
}

impl HubProcess {
    /// Starts `hub-load serve --db <db>` over a SQLite file and waits until it listens.
    pub(crate) async fn start(db: &Path) -> anyhow::Result<HubProcess> {
        let db = db.to_str().context("the database path is not UTF-8")?;
        HubProcess::start_on(db).await
    }

    /// Starts `hub-load serve --db <db>`, `db` a SQLite path or a PostgreSQL URL, and
    /// waits until it listens.
    ///
    /// With `HUB_LOAD_HUB_EXE` set, the hub is that binary's `serve` (another build of
    /// `hub-load`), so that two builds of the hub can be compared under the same load
    /// generator and subscribers.
    pub(crate) async fn start_on(db: &str) -> anyhow::Result<HubProcess> {
        let args = ["serve", "--db", db];
        let mut process = match std::env::var_os(HUB_EXE_VAR) {
            Some(exe) if !exe.is_empty() => ChildProcess::spawn_exe(Path::new(&exe), &args)?,
            _ => ChildProcess::spawn(&args)?,
        };
        let line = process.line(START_TIMEOUT).await?;
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("the hub said `{line}`, not `listening on ADDR`"))?;
        Ok(HubProcess { process, addr })
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The hub's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The hub's resident memory, in KiB.
    pub(crate) fn rss_kib(&self) -> anyhow::Result<u64> {
        rss_kib(self.process.pid())
    }

    /// CPU time the hub process has used so far.
    pub(crate) fn cpu(&self) -> anyhow::Result<Duration> {
        cpu_time(&self.process.pid().to_string())
    }

    /// Stops the hub: it ends its streams and lets in-flight requests finish.
    pub(crate) async fn stop(self) {
        self.process.stop(Duration::from_secs(10)).await;
    }
}

/// `VmRSS` of a process, in KiB.
pub(crate) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/PID/status")
}

/// User plus system CPU time of a process (`self` for this one), all threads.
pub(crate) fn cpu_time(pid: &str) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; the fields after it are plain.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after `)`.
    let ticks: u64 = fields
        .get(11..13)
        .context("short /proc/PID/stat")?
        .iter()
        .map(|f| f.parse::<u64>().unwrap_or(0))
        .sum();
    // USER_HZ is 100 on every Linux the kernel's ABI promises it for.
    Ok(Duration::from_millis(ticks * 10))
}

/// CPU time used between two readings, as a percentage of one core over `wall`.
pub(crate) fn cpu_percent(before: Duration, after: Duration, wall: Duration) -> f64 {
    if wall.is_zero() {
        return 0.0;
    }
    after.saturating_sub(before).as_secs_f64() / wall.as_secs_f64() * 100.0
}
