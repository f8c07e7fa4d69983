//! PostgreSQL for the hub's PostgreSQL phases: a fresh database per measurement,
//! created and dropped through the server's maintenance database, and the CPU time of
//! the server processes that serve it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use sqlx::{Connection, PgConnection, Row};

use super::process::cpu_time;

/// How long connecting to the server may take before the phase fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A database made for one measurement; [`TempDatabase::drop_now`] removes it.
pub(crate) struct TempDatabase {
    /// The server's maintenance database, e.g. `postgres://postgres@127.0.0.1/postgres`.
    admin_url: String,
    name: String,
    /// `postgres://.../NAME`, what the hubs open.
    pub(crate) url: String,
}

async fn connect(url: &str) -> anyhow::Result<PgConnection> {
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(url)).await {
        Ok(conn) => conn.with_context(|| format!("connecting to PostgreSQL at {url}")),
        Err(_) => {
            anyhow::bail!("connecting to PostgreSQL at {url}: no answer in {CONNECT_TIMEOUT:?}")
        }
    }
}

impl TempDatabase {
    /// Creates `herald_bench_<pid>_<n>` on the server of `admin_url`.
    pub(crate) async fn create(admin_url: &str) -> anyhow::Result<TempDatabase> {
        static CREATED: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "herald_bench_{}_{}",
            std::process::id(),
            CREATED.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = connect(admin_url).await?;
        sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .with_context(|| format!("creating the database {name}"))?;
        admin.close().await?;
        Ok(TempDatabase {
            admin_url: admin_url.to_owned(),
            url: with_database(admin_url, &name),
            name,
        })
    }

    /// Drops the database, ending whatever still connects to it.
    pub(crate) async fn drop_now(self) -> anyhow::Result<()> {
        let mut admin = connect(&self.admin_url).await?;
        sqlx::raw_sql(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await
        .with_context(|| format!("dropping the database {}", self.name))?;
        admin.close().await?;
        Ok(())
    }

    /// The process ids of the server's backends connected to this database.
    async fn backends(&self) -> anyhow::Result<Vec<u32>> {
        let mut admin = connect(&self.admin_url).await?;
        let rows = sqlx::query("SELECT pid FROM pg_stat_activity WHERE datname = $1")
            .bind(&self.name)
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

/// `url` naming database `name` instead of its own (any `?query` kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    match query {
        Some(query) => format!("{}/{name}?{query}", &base[..path]),
        None => format!("{}/{name}", &base[..path]),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_is_swapped_and_the_rest_kept() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "b"),
            "postgres://postgres@127.0.0.1:5432/b"
        );
        assert_eq!(
            with_database("postgres://u:p@h/postgres?sslmode=disable", "b"),
            "postgres://u:p@h/b?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "b"), "postgres://h/b");
    }
}
