//! Personal data at rest: AES-256-GCM encryption with a key id beside every value,
//! and a keyed blind index (HMAC-SHA256) for lookups and duplicate checks.
//!
//! Keys come from a key file (JSON: `{"current": "k1", "keys": {"k1": "<64 hex>"},
//! "index_key": "<64 hex>", "pseudonym_key": {"id": "p1", "key": "<64 hex>"}}`).
//! Rotation adds a key and makes it current; older keys stay to decrypt older
//! rows. The index key cannot rotate without re-indexing, so it is separate; so
//! is the pseudonym key ([`pseudonym`]), which keys the pseudonyms written into
//! the customer databases and cannot rotate without breaking their joins. A key
//! file written before pseudonyms existed has none and still loads: the worker
//! runs, and a pseudonymization fails saying the key is missing. The names the
//! worker shows others (the tenant id of status events, the tag of an archive's
//! name) are derived from the index key ([`derived`]). Each key has a check value ([`KeyCheck`]) that
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

mod check;
pub mod derived;
pub mod pseudonym;

use check::{INDEX_KEY_ID, check_value};
pub use check::{KeyCheck, KeyPurpose, unrecorded_keys};

const NONCE_LEN: usize = 12;

/// The context a request's identifier value is sealed in.
pub const IDENTIFIER_CONTEXT: &str = "privacy_requests.identifier_value";
/// The key id of an identifier destroyed by a forget (nothing to open); the
/// store writes it (`store::erasure`) and skips it (`store::keys`).
pub const SHREDDED_KEY_ID: &str = "shredded";
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pseudonym_key: Option<NamedKey>,
}

/// A key with its id.
#[derive(Serialize, Deserialize)]
struct NamedKey {
    id: String,
    key: String,
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
    pseudonym_key: Option<Vec<u8>>,
    checks: Vec<KeyCheck>,
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
        let pseudonym_key = match &file.pseudonym_key {
            Some(named) => {
                let bytes = key_bytes(&named.key, "pseudonym_key")?;
                checks.push(KeyCheck {
                    purpose: KeyPurpose::Pseudonym,
                    key_id: named.id.clone(),
                    check_value: check_value(&bytes),
                });
                Some(bytes)
            }
            None => None,
        };
        Ok(Self {
            current: file.current,
            ciphers,
            index_key,
            pseudonym_key,
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
            pseudonym_key: Some(NamedKey {
                id: "p1".into(),
                key: random(),
            }),
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
