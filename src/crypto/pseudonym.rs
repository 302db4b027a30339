//! Pseudonyms: what pseudonymization (and anonymization, where a column may not
//! be null) writes over a personal value in a customer database. A pseudonym is
//! `pn-` and hex digits of HMAC-SHA256 under the pseudonym key of the tenant and
//! the value, so the same value gives the same pseudonym in every table, every
//! database and every request of the tenant (joins and counts keep working, and
//! distinct values stay distinct, so a unique column stays unique), and nothing
//! can be learned from it without the key. It is 24 hex digits long, always:
//! `datamap check` refuses a column too narrow for it rather than have it
//! truncated (pseudonyms earlier versions cut to 8 or more digits still count
//! as pseudonyms). Callers give it the normalized value of an identifier, so
//! `1-415-234-7172` and `14152347172` get the same pseudonym.
//! A value that already is a pseudonym is left as it is, so a step done twice
//! (a retry, a takeover, a ledger replay) changes nothing the second time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Keys;

/// What every pseudonym starts with.
pub const PREFIX: &str = "pn-";
/// Hex digits of a pseudonym when the column has room.
pub const FULL_HEX: usize = 24;
/// Hex digits at least of what counts as a pseudonym (earlier versions cut
/// pseudonyms to fit a column).
pub const MIN_HEX: usize = 8;
/// The shortest column a pseudonym fits in.
pub const MIN_LEN: usize = PREFIX.len() + FULL_HEX;

/// True when `value` is a pseudonym (and so is left as it is).
pub fn is_pseudonym(value: &str) -> bool {
    value.strip_prefix(PREFIX).is_some_and(|hex| {
        (MIN_HEX..=FULL_HEX).contains(&hex.len())
            && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

impl Keys {
    /// Whether the key file has a pseudonym key.
    pub fn has_pseudonym_key(&self) -> bool {
        self.pseudonym_key.is_some()
    }

    /// The pseudonym of `value` for `tenant`; `None` without a pseudonym key.
    pub fn pseudonym(&self, tenant: &str, value: &str) -> Option<String> {
        if is_pseudonym(value) {
            return Some(value.to_owned());
        }
        let key = self.pseudonym_key.as_ref()?;
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(b"pseudonym v1");
        mac.update(&[0]);
        mac.update(tenant.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        let digest = hex::encode(mac.finalize().into_bytes());
        Some(format!("{PREFIX}{}", &digest[..FULL_HEX]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pseudonym_is_stable_per_tenant_full_length_and_is_not_pseudonymized_again() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, _) = Keys::load_or_create(&dir.path().join("keys.json")).unwrap();
        let p = keys.pseudonym("t1", "john.smith@example.com").unwrap();
        assert_eq!(p.len(), 3 + FULL_HEX);
        assert!(is_pseudonym(&p), "{p}");
        assert!(!p.contains("john"));
        assert_eq!(
            keys.pseudonym("t1", "john.smith@example.com"),
            Some(p.clone())
        );
        assert_ne!(
            keys.pseudonym("t2", "john.smith@example.com"),
            Some(p.clone())
        );
        assert_ne!(
            keys.pseudonym("t1", "mary.jones@example.com"),
            Some(p.clone())
        );
        assert_eq!(keys.pseudonym("t1", &p), Some(p.clone()), "left as it is");
        assert!(is_pseudonym(&p[..12]), "an earlier version's cut one");
        assert!(!is_pseudonym("pn-John"));
        assert!(!is_pseudonym("pn-ABCDEF0123"));
    }
}
