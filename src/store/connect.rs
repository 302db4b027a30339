//! Opening the store named by DATABASE_URL and bringing its schema up to date.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{Pools, Store, StoreError};

/// How to reach the store.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// `sqlite://path.db` (created when missing) or `postgres://…`.
    pub url: String,
    /// PostgreSQL pool size. SQLite always uses one connection: it has one writer.
    pub max_connections: u32,
    /// How long an operation waits for a free connection before it fails as transient.
    pub acquire_timeout: Duration,
}

impl StoreSettings {
    /// The store of an operator command: `url`, two connections.
    pub fn for_command(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            max_connections: 2,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

impl Store {
    /// Connects and applies the backend's migrations.
    ///
    /// A URL of an unknown scheme is a [`StoreError::Config`] (fatal); an unreachable
    /// database is [`StoreError::Unavailable`] (the caller may retry).
    pub async fn connect(settings: &StoreSettings) -> Result<Self, StoreError> {
        let url = settings.url.as_str();
        let pools = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| StoreError::Config(e.to_string()))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a committed request survives power loss, not only a crash.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true);
            // Creating the file (switching it to WAL) and migrating it must not race
            // another process or pool doing the same: the switch fails with "database
            // is locked" and sqlx takes no lock around SQLite migrations. A file lock
            // beside the database serialises them.
            let lock = lock_file(options.get_filename().with_extension("migrate-lock")).await?;
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(settings.acquire_timeout)
                .connect_with(options)
                .await?;
            sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
            drop(lock);
            Pools::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(settings.max_connections.max(1))
                .acquire_timeout(settings.acquire_timeout)
                .connect(url)
                .await?;
            sqlx::migrate!("./migrations/postgres").run(&pool).await?;
            Pools::Postgres(pool)
        } else {
            return Err(StoreError::Config(
                "DATABASE_URL must start with sqlite: or postgres://".into(),
            ));
        };
        Ok(Self { pools })
    }
}

impl Store {
    /// Where the key file lives when none is configured: next to an SQLite
    /// database (`requests.db` → `requests.keys.json`); `None` for PostgreSQL.
    pub fn default_key_file(&self) -> Option<PathBuf> {
        match &self.pools {
            Pools::Sqlite(pool) => {
                let file = pool.connect_options().get_filename().to_owned();
                Some(file.with_extension("keys.json"))
            }
            Pools::Postgres(_) => None,
        }
    }
}

/// Opens `path` and takes an exclusive advisory lock on it, waiting as long as
/// another holder keeps it; released when the returned file is dropped.
async fn lock_file(path: PathBuf) -> Result<File, StoreError> {
    tokio::task::spawn_blocking(move || {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)?;
        file.lock()?;
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(|e| StoreError::Config(format!("migration lock task failed: {e}")))?
    .map_err(|e| StoreError::Config(format!("cannot lock the SQLite migration lock file: {e}")))
}
