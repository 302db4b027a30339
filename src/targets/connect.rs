//! Connecting to the customer databases: the URL from the map or from the
//! environment variable it names, PostgreSQL or SQLite (a file that must exist:
//! a customer database is never created by us). SQLite connections get the
//! collations that compare identifiers the way the worker normalizes them.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use super::select::{SQLITE_EMAIL, SQLITE_MOBILE, collate};
use super::{Pool, TargetError, Targets, classify};
use crate::datamap::{DataMap, DatabaseUrl};
use crate::request::IdentifierType;

impl Targets {
    /// Connects to every database of `map`; `env` reads environment variables.
    pub async fn connect(
        map: &DataMap,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, TargetError> {
        let mut pools = BTreeMap::new();
        let mut icu = BTreeSet::new();
        for (name, url) in &map.databases {
            let config = |reason: String| TargetError::Config {
                database: name.clone(),
                reason,
            };
            let url = match url {
                DatabaseUrl::Inline(url) => url.clone(),
                DatabaseUrl::FromEnv(var) => env(var)
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| config(format!("{var} is not set")))?,
            };
            let pool = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                let pool = PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect(&url)
                    .await
                    .map_err(|e| classify(name, e))?;
                const ICU: &str =
                    "SELECT EXISTS (SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu')";
                let has: bool = sqlx::query_scalar(ICU)
                    .fetch_one(&pool)
                    .await
                    .map_err(|e| classify(name, e))?;
                if has {
                    icu.insert(name.clone());
                } else {
                    tracing::warn!(
                        database = %name,
                        "PostgreSQL has no ICU collation: e-mail addresses are lowered by the \
                         database's own collation, which may fold ASCII only"
                    );
                }
                Pool::Postgres(pool)
            } else if url.starts_with("sqlite:") {
                let options = SqliteConnectOptions::from_str(&url)
                    .map_err(|e| config(format!("not an SQLite URL: {e}")))?
                    .read_only(false)
                    .create_if_missing(false)
                    .collation(SQLITE_EMAIL, |a, b| collate(IdentifierType::Email, a, b))
                    .collation(SQLITE_MOBILE, |a, b| collate(IdentifierType::Mobile, a, b));
                let file = options.get_filename().to_owned();
                if !file.exists() {
                    return Err(config(format!(
                        "the file {} does not exist",
                        file.display()
                    )));
                }
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await
                    .map_err(|e| classify(name, e))?;
                Pool::Sqlite(pool)
            } else {
                let scheme = url.split(':').next().unwrap_or("");
                return Err(config(format!(
                    "{scheme}: is not supported (postgres:// or sqlite:)"
                )));
            };
            pools.insert(name.clone(), pool);
        }
        Ok(Self {
            pools,
            icu,
            via_types: BTreeMap::new(),
            key_types: BTreeMap::new(),
        })
    }
}
