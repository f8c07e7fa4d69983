//! A fresh PostgreSQL database per test or measurement, on the server whose
//! maintenance database `HERALD_TEST_POSTGRES_URL` names (by default
//! `postgres://postgres@127.0.0.1:5432/postgres`: user `postgres`, trust auth, as CI
//! starts it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::{Connection, PgConnection};

/// How long connecting to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's maintenance database, which the databases are created through.
pub fn admin_url() -> String {
    std::env::var("HERALD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `url` naming database `name` instead of its own (any `?query` kept).
pub fn with_database(url: &str, name: &str) -> String {
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

/// Why a database could not be made or dropped, naming the server and what to do.
#[derive(Debug)]
pub struct PgError(String);

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PgError {}

/// A connection to the maintenance database at `url`, within [`CONNECT_TIMEOUT`].
pub async fn connect(url: &str) -> Result<PgConnection, PgError> {
    let refused = |why: String| {
        PgError(format!(
            "a PostgreSQL server is needed at {url} (user postgres, trust auth), and \
             connecting to it failed: {why}. Start it with `.ci/run postgres`, or point \
             HERALD_TEST_POSTGRES_URL at another server's maintenance database"
        ))
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(refused(e.to_string())),
        Err(_) => Err(refused(format!("no answer in {CONNECT_TIMEOUT:?}"))),
    }
}

/// A database made for one test or measurement: `<prefix>_<pid>_<n>` on the server of
/// [`admin_url`]. [`TempDatabase::drop_now`] (or `drop_blocking`) removes it, ending
/// whatever still connects to it.
#[derive(Debug)]
pub struct TempDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TempDatabase {
    /// Creates a database named from `prefix`, in `tablespace` when one is given.
    pub async fn create(prefix: &str, tablespace: Option<&str>) -> Result<TempDatabase, PgError> {
        TempDatabase::create_on(&admin_url(), prefix, tablespace).await
    }

    /// [`TempDatabase::create`] on the server of maintenance database `admin_url`.
    pub async fn create_on(
        admin_url: &str,
        prefix: &str,
        tablespace: Option<&str>,
    ) -> Result<TempDatabase, PgError> {
        static CREATED: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "{prefix}_{}_{}",
            std::process::id(),
            CREATED.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = connect(admin_url).await?;
        let place = tablespace.map_or(String::new(), |t| format!(" TABLESPACE \"{t}\""));
        let created = sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\"{place}"))
            .execute(&mut admin)
            .await;
        let _ = admin.close().await;
        created.map_err(|e| PgError(format!("creating the database {name}: {e}")))?;
        Ok(TempDatabase {
            admin_url: admin_url.to_owned(),
            url: with_database(admin_url, &name),
            name,
        })
    }

    /// [`TempDatabase::create`] from code that is not async (or does not know), on a
    /// thread and runtime of its own.
    pub fn create_blocking(
        prefix: &str,
        tablespace: Option<&str>,
    ) -> Result<TempDatabase, PgError> {
        let prefix = prefix.to_owned();
        let tablespace = tablespace.map(str::to_owned);
        blocking(move || async move { TempDatabase::create(&prefix, tablespace.as_deref()).await })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `postgres://.../NAME`, what a hub opens.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The maintenance database it was created through.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// Drops the database, ending whatever still connects to it.
    pub async fn drop_now(&self) -> Result<(), PgError> {
        let mut admin = connect(&self.admin_url).await?;
        let dropped = sqlx::raw_sql(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await;
        let _ = admin.close().await;
        dropped
            .map(drop)
            .map_err(|e| PgError(format!("dropping the database {}: {e}", self.name)))
    }

    /// [`TempDatabase::drop_now`] from anywhere, a `Drop` inside a runtime included: on
    /// a thread and runtime of its own.
    pub fn drop_blocking(&self) -> Result<(), PgError> {
        let this = TempDatabase {
            admin_url: self.admin_url.clone(),
            name: self.name.clone(),
            url: self.url.clone(),
        };
        blocking(move || async move { this.drop_now().await })
    }
}

/// Runs the future `work` makes to its end on a thread with a runtime of its own, so
/// that it may be called from inside another runtime, or from none.
fn blocking<T, F>(work: impl FnOnce() -> F + Send + 'static) -> Result<T, PgError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, PgError>>,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PgError(format!("starting a runtime: {e}")))?
            .block_on(work())
    })
    .join()
    .unwrap_or_else(|_| Err(PgError("the database thread panicked".to_owned())))
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
