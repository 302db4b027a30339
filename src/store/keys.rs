//! The keys the store's data was written with, as key ids and check values
//! (never the keys), and what start-up needs to decide about a key file: whether
//! the store is new and empty, and one stored identifier to try the keys on for
//! a store written before the check values were recorded.

use chrono::Utc;

use super::{Store, StoreError, on_pool};
use crate::crypto::{KeyCheck, KeyPurpose, Sealed};

/// A stored identifier: its type, blind index and sealed value.
#[derive(Debug, Clone)]
pub struct SampleIdentifier {
    /// `account`, `gcrid`, `email`, `mobile` or `customer`.
    pub identifier_type: String,
    /// Its blind index.
    pub index: String,
    /// Its value, encrypted.
    pub sealed: Sealed,
}

impl Store {
    /// The keys recorded as the ones the data was written with.
    pub async fn recorded_keys(&self) -> Result<Vec<KeyCheck>, StoreError> {
        const SQL: &str =
            "SELECT purpose, key_id, check_value FROM store_keys ORDER BY purpose, key_id";
        let rows: Vec<(String, String, String)> =
            on_pool!(self, pool => sqlx::query_as(SQL).fetch_all(pool).await?);
        rows.into_iter()
            .map(|(purpose, key_id, check_value)| {
                let purpose = KeyPurpose::parse(&purpose).ok_or_else(|| {
                    StoreError::Corrupt(format!("store_keys has an unknown purpose {purpose:?}"))
                })?;
                Ok(KeyCheck {
                    purpose,
                    key_id,
                    check_value,
                })
            })
            .collect()
    }

    /// Records keys as ones the data is written with; a key recorded before
    /// (by another instance, say) keeps its first check value.
    pub async fn record_keys(&self, keys: &[KeyCheck]) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO store_keys (purpose, key_id, check_value, recorded_at) \
            VALUES ($1, $2, $3, $4) ON CONFLICT (purpose, key_id) DO NOTHING";
        let now = Utc::now();
        for key in keys {
            on_pool!(self, pool => {
                sqlx::query(SQL)
                    .bind(key.purpose.as_str()).bind(&key.key_id).bind(&key.check_value).bind(now)
                    .execute(pool).await?;
            });
        }
        Ok(())
    }

    /// Whether the store holds no request and no message yet.
    pub async fn is_empty(&self) -> Result<bool, StoreError> {
        const SQL: &str = "SELECT NOT EXISTS (SELECT 1 FROM privacy_requests) \
            AND NOT EXISTS (SELECT 1 FROM inbound_messages)";
        on_pool!(self, pool => Ok(sqlx::query_scalar(SQL).fetch_one(pool).await?))
    }

    /// The newest stored identifier, to try a key file on.
    pub async fn sample_identifier(&self) -> Result<Option<SampleIdentifier>, StoreError> {
        const SQL: &str = "SELECT identifier_type, identifier_index, identifier_value, key_id \
            FROM privacy_requests WHERE key_id <> 'shredded' ORDER BY id DESC LIMIT 1";
        let row: Option<(String, String, Vec<u8>, String)> =
            on_pool!(self, pool => sqlx::query_as(SQL).fetch_optional(pool).await?);
        Ok(
            row.map(|(identifier_type, index, bytes, key_id)| SampleIdentifier {
                identifier_type,
                index,
                sealed: Sealed { key_id, bytes },
            }),
        )
    }
}
