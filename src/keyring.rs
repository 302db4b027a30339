//! The keys for a store: the key file is read (or, for a new and empty SQLite
//! store only, created) and checked against the keys the store records it was
//! written with. A key file that is not the one the data was written with would
//! write rows that the old rows' readers cannot read and blind indexes that no
//! longer match existing customers (so the duplicate and forget-pending rules
//! would silently stop working); it is refused with a message naming the key.

use std::path::{Path, PathBuf};

use thiserror::Error;
use tracing::{info, warn};

use crate::crypto::{CryptoError, IDENTIFIER_CONTEXT, Keys, unrecorded_keys};
use crate::store::{Store, StoreError};

/// Whether a missing default key file may be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creation {
    /// For a new, empty store (the worker on the embedded SQLite default).
    ForNewStore,
    /// Never (operator commands).
    Never,
}

/// Why the keys cannot be used with this store.
#[derive(Debug, Error)]
pub enum KeyringError {
    /// No key file, or one that cannot be read, or one with other keys.
    #[error(transparent)]
    Keys(#[from] CryptoError),
    /// No key file is configured and none can be chosen.
    #[error("PRIVACY_KEY_FILE is required with PostgreSQL (personal data is stored encrypted)")]
    NotConfigured,
    /// The default key file is missing but the store holds data.
    #[error(
        "the key file {0} is missing, but the store holds data encrypted with the keys it held; \
         restore it from its backup (a new key file could not read that data), or set PRIVACY_KEY_FILE"
    )]
    MissingForData(PathBuf),
    /// The store could not be asked.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The key file for `store` (`configured`, else the default next to an SQLite
/// database), checked against the keys the store was written with; keys the
/// store does not know yet (a new store, a rotation) are recorded.
pub async fn open(
    configured: Option<&Path>,
    store: &Store,
    creation: Creation,
) -> Result<Keys, KeyringError> {
    let recorded = store.recorded_keys().await?;
    let keys = match (configured, store.default_key_file()) {
        (Some(path), _) => Keys::load(path)?,
        (None, Some(path)) if path.exists() => Keys::load(&path)?,
        (None, Some(path)) => {
            let new_store = recorded.is_empty() && store.is_empty().await?;
            if !(new_store && creation == Creation::ForNewStore) {
                return Err(KeyringError::MissingForData(path));
            }
            let (keys, created) = Keys::load_or_create(&path)?;
            if created {
                warn!(
                    path = %path.display(),
                    "created a key file for personal data at rest; back it up and keep it \
                     private: without it the stored personal data cannot be read"
                );
            }
            keys
        }
        (None, None) => return Err(KeyringError::NotConfigured),
    };
    if recorded.is_empty() {
        check_on_stored_data(&keys, store).await?;
    }
    let new = unrecorded_keys(&recorded, &keys)?;
    if !new.is_empty() {
        store.record_keys(&new).await?;
        let ids: Vec<&str> = new.iter().map(|k| k.key_id.as_str()).collect();
        info!(keys = ?ids, "recorded the keys the store is written with (ids and check values only)");
        // Another instance may have recorded other keys at the same moment.
        unrecorded_keys(&store.recorded_keys().await?, &keys)?;
    }
    Ok(keys)
}

/// A store written before key checks were recorded: the keys must open its
/// newest identifier and give the same blind index for it.
async fn check_on_stored_data(keys: &Keys, store: &Store) -> Result<(), KeyringError> {
    let Some(sample) = store.sample_identifier().await? else {
        return Ok(());
    };
    let mismatch = || {
        CryptoError::Mismatch(format!(
            "the key file does not open the store's data (encryption key {}, or the index key, \
             differs); use the key file the store was written with",
            sample.sealed.key_id
        ))
    };
    let value = keys
        .open(IDENTIFIER_CONTEXT, &sample.sealed)
        .map_err(|_| mismatch())?;
    let value = String::from_utf8(value).map_err(|_| mismatch())?;
    if keys.blind_index(&sample.identifier_type, &value) != sample.index {
        return Err(mismatch().into());
    }
    Ok(())
}
