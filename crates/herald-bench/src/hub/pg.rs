//! PostgreSQL for the hub's PostgreSQL phases: a fresh database per measurement
//! (`herald_testkit::pg`, as the tests make theirs), and the CPU time of the server
//! processes that serve it.

use std::collections::HashMap;
use std::time::Duration;

use herald_testkit::pg;
use sqlx::{Connection, Row};

use super::process::cpu_time;

/// A database made for one measurement (`herald_bench_<pid>_<n>`, through the tests'
/// own helper); [`TempDatabase::drop_now`] removes it.
pub(crate) struct TempDatabase {
    db: pg::TempDatabase,
    /// `postgres://.../NAME`, what the hubs open.
    pub(crate) url: String,
}

impl TempDatabase {
    /// Creates a database on the server of `admin_url`.
    pub(crate) async fn create(admin_url: &str) -> anyhow::Result<TempDatabase> {
        let db = pg::TempDatabase::create_on(admin_url, "herald_bench", None).await?;
        Ok(TempDatabase {
            url: db.url().to_owned(),
            db,
        })
    }

    /// Drops the database, ending whatever still connects to it.
    pub(crate) async fn drop_now(self) -> anyhow::Result<()> {
        Ok(self.db.drop_now().await?)
    }

    /// The process ids of the server's backends connected to this database.
    async fn backends(&self) -> anyhow::Result<Vec<u32>> {
        let mut admin = pg::connect(self.db.admin_url()).await?;
        let rows = sqlx::query("SELECT pid FROM pg_stat_activity WHERE datname = $1")
            .bind(self.db.name())
            .fetch_all(&mut admin)
            .await?;
        admin.close().await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.try_get::<i32, _>("pid").ok())
            .map(|pid| pid as u32)
            .collect())
    }

    /// The CPU time of this database's backends so far, to subtract from a later
    /// [`TempDatabase::cpu_since`].
    pub(crate) async fn cpu_now(&self) -> anyhow::Result<BackendCpu> {
        let mut by_pid = HashMap::new();
        for pid in self.backends().await? {
            if let Ok(cpu) = cpu_time(&pid.to_string()) {
                by_pid.insert(pid, cpu);
            }
        }
        Ok(BackendCpu { by_pid })
    }

    /// CPU time its backends used since `before`: a backend that started since counts
    /// whole. `None` when the server's processes cannot be read (another machine or
    /// container), or none could.
    pub(crate) async fn cpu_since(&self, before: &BackendCpu) -> Option<Duration> {
        let mut total = Duration::ZERO;
        let mut read = false;
        for pid in self.backends().await.ok()? {
            if let Ok(cpu) = cpu_time(&pid.to_string()) {
                read = true;
                total += cpu.saturating_sub(before.by_pid.get(&pid).copied().unwrap_or_default());
            }
        }
        read.then_some(total)
    }
}

/// CPU time per backend process at one moment.
pub(crate) struct BackendCpu {
    by_pid: HashMap<u32, Duration>,
}
