//! Key check values: a key's id and an HMAC of a fixed text under it, which the
//! store records so a key file that is not the one its data was written with is
//! refused at start. A check value reveals nothing of the key.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{CryptoError, Keys};

/// What a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyPurpose {
    /// Encrypts personal data at rest (AES-256-GCM), by key id.
    Encryption,
    /// Keys the blind index of identifiers (HMAC-SHA256); one, never rotated.
    Index,
    /// Keys the pseudonyms written into the customer databases; one, never rotated.
    Pseudonym,
}

impl KeyPurpose {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Encryption => "encryption",
            Self::Index => "index",
            Self::Pseudonym => "pseudonym",
        }
    }

    /// From its stored text.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "encryption" => Some(Self::Encryption),
            "index" => Some(Self::Index),
            "pseudonym" => Some(Self::Pseudonym),
            _ => None,
        }
    }
}

/// A key's id and check value: enough to tell whether two key files hold the
/// same key, nothing that reveals it (an HMAC of a fixed text under the key).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyCheck {
    /// What the key is for.
    pub purpose: KeyPurpose,
    /// Its id in the key file (`index` for the index key).
    pub key_id: String,
    /// HMAC-SHA256 of [`CHECK_TEXT`] under the key, first 16 bytes, hex.
    pub check_value: String,
}

/// The text whose HMAC under a key is that key's check value.
const CHECK_TEXT: &[u8] = b"privacy-worker key check v1";

/// The id the index key is recorded under.
pub(super) const INDEX_KEY_ID: &str = "index";

pub(super) fn check_value(key: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(CHECK_TEXT);
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// Compares the keys a store was written with (`recorded`) with `keys`. Every
/// recorded key must be in the key file with the same check value; the keys
/// of the file not recorded yet (a key added by rotation) are returned, to be
/// recorded. An error names the key that is missing or differs, never a key.
pub fn unrecorded_keys(recorded: &[KeyCheck], keys: &Keys) -> Result<Vec<KeyCheck>, CryptoError> {
    for old in recorded {
        let what = match old.purpose {
            KeyPurpose::Encryption => format!("encryption key {}", old.key_id),
            KeyPurpose::Index => "the index key".to_owned(),
            KeyPurpose::Pseudonym => format!("pseudonym key {}", old.key_id),
        };
        let same_id = keys
            .checks
            .iter()
            .find(|k| k.purpose == old.purpose && k.key_id == old.key_id);
        match same_id {
            None => {
                return Err(CryptoError::Mismatch(format!(
                    "the store holds data written with {what}, which the key file lacks; \
                     use the key file the store was written with (keep old keys when rotating)"
                )));
            }
            Some(k) if k.check_value != old.check_value => {
                return Err(CryptoError::Mismatch(format!(
                    "{what} in the key file is not the key the store was written with; \
                     use the key file the store was written with"
                )));
            }
            Some(_) => {}
        }
    }
    Ok(keys
        .checks
        .iter()
        .filter(|k| {
            !recorded
                .iter()
                .any(|r| r.purpose == k.purpose && r.key_id == k.key_id)
        })
        .cloned()
        .collect())
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("current", &self.current)
            .field("key_ids", &self.ciphers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;
    use crate::crypto::KeyFile;

    fn key_file(dir: &Path, name: &str, current: &str, keys: &[(&str, u8)], index: u8) -> Keys {
        let path = dir.join(name);
        let keys: BTreeMap<String, String> = keys
            .iter()
            .map(|(id, byte)| ((*id).to_owned(), hex::encode([*byte; 32])))
            .collect();
        let file = KeyFile {
            current: current.to_owned(),
            keys,
            index_key: hex::encode([index; 32]),
            pseudonym_key: None,
        };
        std::fs::write(&path, serde_json::to_string(&file).unwrap()).unwrap();
        Keys::load(&path).unwrap()
    }

    #[test]
    fn keys_match_a_store_by_id_and_check_value_and_rotation_adds_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let first = key_file(dir.path(), "a.json", "k1", &[("k1", 1)], 9);
        let recorded = unrecorded_keys(&[], &first).unwrap();
        assert_eq!(recorded.len(), 2, "k1 and the index key");
        assert!(
            recorded
                .iter()
                .all(|k| !k.check_value.contains(&hex::encode([1u8; 4])))
        );

        let rotated = key_file(dir.path(), "b.json", "k2", &[("k1", 1), ("k2", 2)], 9);
        let added = unrecorded_keys(&recorded, &rotated).unwrap();
        assert_eq!(added.len(), 1);
        assert_eq!(added[0].key_id, "k2");

        let other_k1 = key_file(dir.path(), "c.json", "k1", &[("k1", 3)], 9);
        let error = unrecorded_keys(&recorded, &other_k1)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("encryption key k1 in the key file is not the key"),
            "{error}"
        );

        let old_dropped = key_file(dir.path(), "d.json", "k2", &[("k2", 2)], 9);
        let error = unrecorded_keys(&recorded, &old_dropped)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("encryption key k1, which the key file lacks"),
            "{error}"
        );

        let other_index = key_file(dir.path(), "e.json", "k1", &[("k1", 1)], 8);
        let error = unrecorded_keys(&recorded, &other_index)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("the index key in the key file is not the key"),
            "{error}"
        );
    }
}
