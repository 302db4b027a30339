//! Personal data at rest: AES-256-GCM encryption with a key id beside every value,
//! and a keyed blind index (HMAC-SHA256) for lookups and duplicate checks.
//!
//! Keys come from a key file (JSON: `{"current": "k1", "keys": {"k1": "<64 hex>"},
//! "index_key": "<64 hex>"}`). Rotation adds a key and makes it current; older
//! keys stay to decrypt older rows. The index key cannot rotate without
//! re-indexing, so it is separate. Each key has a check value ([`KeyCheck`]) that
//! the store records, so a key file that is not the one the data was written
//! with is refused at start ([`unrecorded_keys`]).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use thiserror::Error;

const NONCE_LEN: usize = 12;

/// The context a request's identifier value is sealed in.
pub const IDENTIFIER_CONTEXT: &str = "privacy_requests.identifier_value";
/// The context a message's personal data is sealed in.
pub const PERSONAL_CONTEXT: &str = "inbound_messages.personal_data";

/// Why keys or a value could not be used.
#[derive(Debug, Error)]
pub enum CryptoError {
    /// The key file is missing, unreadable or malformed.
    #[error("encryption keys: {0}")]
    Keys(String),
    /// A stored value does not decrypt with its key (wrong key, tampered data).
    #[error("a stored value could not be decrypted with key {0}")]
    Decrypt(String),
    /// The key file does not hold the keys the store was written with.
    #[error("encryption keys do not match the store: {0}")]
    Mismatch(String),
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    current: String,
    keys: BTreeMap<String, String>,
    index_key: String,
}

/// An encrypted value and the id of the key that encrypted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Which key.
    pub key_id: String,
    /// Nonce followed by ciphertext and tag.
    pub bytes: Vec<u8>,
}

/// The keys in use.
#[derive(Clone)]
pub struct Keys {
    current: String,
    ciphers: BTreeMap<String, Aes256Gcm>,
    index_key: Vec<u8>,
    checks: Vec<KeyCheck>,
}

/// What a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyPurpose {
    /// Encrypts personal data at rest (AES-256-GCM), by key id.
    Encryption,
    /// Keys the blind index of identifiers (HMAC-SHA256); one, never rotated.
    Index,
}

impl KeyPurpose {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Encryption => "encryption",
            Self::Index => "index",
        }
    }

    /// From its stored text.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "encryption" => Some(Self::Encryption),
            "index" => Some(Self::Index),
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
const INDEX_KEY_ID: &str = "index";

fn check_value(key: &[u8]) -> String {
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

fn key_bytes(hex_text: &str, name: &str) -> Result<Vec<u8>, CryptoError> {
    let bytes = hex::decode(hex_text.trim())
        .map_err(|_| CryptoError::Keys(format!("{name} is not hex")))?;
    if bytes.len() != 32 {
        return Err(CryptoError::Keys(format!(
            "{name} must be 32 bytes (64 hex digits)"
        )));
    }
    Ok(bytes)
}

impl Keys {
    /// Reads a key file.
    pub fn load(path: &Path) -> Result<Self, CryptoError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CryptoError::Keys(format!("cannot read {}: {e}", path.display())))?;
        let file: KeyFile = serde_json::from_str(&text)
            .map_err(|e| CryptoError::Keys(format!("{} is not a key file: {e}", path.display())))?;
        let mut ciphers = BTreeMap::new();
        let mut checks = Vec::new();
        for (id, hex_key) in &file.keys {
            if id == INDEX_KEY_ID {
                return Err(CryptoError::Keys(format!(
                    "key id {INDEX_KEY_ID} is reserved; name the key otherwise"
                )));
            }
            let bytes = key_bytes(hex_key, &format!("key {id}"))?;
            let cipher = Aes256Gcm::new_from_slice(&bytes)
                .map_err(|_| CryptoError::Keys(format!("key {id} must be 32 bytes")))?;
            ciphers.insert(id.clone(), cipher);
            checks.push(KeyCheck {
                purpose: KeyPurpose::Encryption,
                key_id: id.clone(),
                check_value: check_value(&bytes),
            });
        }
        if !ciphers.contains_key(&file.current) {
            return Err(CryptoError::Keys(format!(
                "current key {} is not in keys",
                file.current
            )));
        }
        let index_key = key_bytes(&file.index_key, "index_key")?;
        checks.push(KeyCheck {
            purpose: KeyPurpose::Index,
            key_id: INDEX_KEY_ID.to_owned(),
            check_value: check_value(&index_key),
        });
        Ok(Self {
            current: file.current,
            ciphers,
            index_key,
            checks,
        })
    }

    /// Reads the key file, creating one with fresh random keys (owner-only) when
    /// it does not exist. Returns the keys and whether the file was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), CryptoError> {
        if path.exists() {
            return Ok((Self::load(path)?, false));
        }
        let random = || {
            let mut key = [0u8; 32];
            OsRng.fill_bytes(&mut key);
            hex::encode(key)
        };
        let file = KeyFile {
            current: "k1".into(),
            keys: BTreeMap::from([("k1".to_owned(), random())]),
            index_key: random(),
        };
        let text = serde_json::to_string_pretty(&file).expect("a key file serialises");
        let mut out = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(out) => out,
            // Another process created it first: use that one.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Ok((Self::load(path)?, false));
            }
            Err(e) => {
                let display = path.display();
                return Err(CryptoError::Keys(format!("cannot create {display}: {e}")));
            }
        };
        out.write_all(text.as_bytes())
            .and_then(|()| out.sync_all())
            .map_err(|e| CryptoError::Keys(format!("cannot write {}: {e}", path.display())))?;
        Ok((Self::load(path)?, true))
    }

    /// Encrypts with the current key; `context` (e.g. the column) is bound to the
    /// ciphertext so a value cannot be moved to another column unnoticed.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Sealed {
        let cipher = &self.ciphers[&self.current];
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = format!("{}|{context}", self.current);
        let ciphertext = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of a bounded value cannot fail");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&ciphertext);
        Sealed {
            key_id: self.current.clone(),
            bytes,
        }
    }

    /// Decrypts a value sealed by [`Keys::seal`] with the same `context`.
    pub fn open(&self, context: &str, sealed: &Sealed) -> Result<Vec<u8>, CryptoError> {
        let fail = || CryptoError::Decrypt(sealed.key_id.clone());
        let cipher = self.ciphers.get(&sealed.key_id).ok_or_else(fail)?;
        if sealed.bytes.len() < NONCE_LEN {
            return Err(fail());
        }
        let (nonce, ciphertext) = sealed.bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| fail())?;
        let aad = format!("{}|{context}", sealed.key_id);
        cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| fail())
    }

    /// The blind index of a normalized identifier of `kind`: equal inputs give
    /// equal indexes, and without the index key the value cannot be guessed back.
    pub fn blind_index(&self, kind: &str, normalized: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.index_key)
            .expect("HMAC takes any key length");
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(normalized.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_created_key_file_is_owner_only_and_seals_and_opens() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let (keys, created) = Keys::load_or_create(&path).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let sealed = keys.seal("phone", b"14155550100");
        assert!(!sealed.bytes.windows(11).any(|w| w == b"14155550100"));
        assert_eq!(keys.open("phone", &sealed).unwrap(), b"14155550100");
        assert!(keys.open("email", &sealed).is_err(), "bound to its context");
        let (again, created) = Keys::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(again.open("phone", &sealed).unwrap(), b"14155550100");
        assert_eq!(
            keys.blind_index("email", "a@b.c"),
            again.blind_index("email", "a@b.c")
        );
        assert_ne!(
            keys.blind_index("email", "a@b.c"),
            keys.blind_index("mobile", "a@b.c")
        );
    }
}
