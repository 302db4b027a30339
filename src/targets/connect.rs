//! Connecting to the customer databases: the URL from the map or from the
//! environment variable it names, PostgreSQL or SQLite (a file that must exist:
//! a customer database is never created by us).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use super::{Pool, TargetError, Targets, classify};
use crate::datamap::{DataMap, DatabaseUrl};

impl Targets {
    /// Connects to every database of `map`; `env` reads environment variables.
    pub async fn connect(
        map: &DataMap,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, TargetError> {
        let mut pools = BTreeMap::new();
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
                Pool::Postgres(pool)
            } else if url.starts_with("sqlite:") {
                let options = SqliteConnectOptions::from_str(&url)
                    .map_err(|e| config(format!("not an SQLite URL: {e}")))?
                    .read_only(false)
                    .create_if_missing(false);
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
            via_types: BTreeMap::new(),
        })
    }
}
