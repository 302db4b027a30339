//! Pseudonyms: what pseudonymization (and anonymization, where a column may not
//! be null) writes over a personal value in a customer database. A pseudonym is
//! `pn-` and hex digits of HMAC-SHA256 under the pseudonym key of the tenant and
//! the value, so the same value gives the same pseudonym in every table, every
//! database and every request of the tenant (joins and counts keep working, and
//! distinct values stay distinct, so a unique column stays unique), and nothing
//! can be learned from it without the key. It is 24 hex digits long, or as many
//! as the column holds (at least 8: `datamap check` refuses a shorter column).
//! A value that already is a pseudonym is left as it is, so a step done twice
//! (a retry, a takeover, a ledger replay) changes nothing the second time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Keys;

/// What every pseudonym starts with.
pub const PREFIX: &str = "pn-";
/// Hex digits of a pseudonym when the column has room.
pub const FULL_HEX: usize = 24;
/// Hex digits at least: 32 bits, so a column must hold 11 characters.
pub const MIN_HEX: usize = 8;
/// The shortest column a pseudonym fits in.
pub const MIN_LEN: usize = PREFIX.len() + MIN_HEX;

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

    /// The pseudonym of `value` for `tenant`, at most `max_len` characters
    /// (`None`: no limit); `None` without a pseudonym key.
    pub fn pseudonym(&self, tenant: &str, value: &str, max_len: Option<usize>) -> Option<String> {
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
        let room = max_len.map_or(FULL_HEX, |len| len.saturating_sub(PREFIX.len()));
        let digits = room.clamp(MIN_HEX, FULL_HEX);
        Some(format!("{PREFIX}{}", &digest[..digits]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pseudonym_is_stable_per_tenant_fits_its_column_and_is_not_pseudonymized_again() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, _) = Keys::load_or_create(&dir.path().join("keys.json")).unwrap();
        let p = keys
            .pseudonym("t1", "john.smith@example.com", None)
            .unwrap();
        assert_eq!(p.len(), 3 + FULL_HEX);
        assert!(is_pseudonym(&p), "{p}");
        assert!(!p.contains("john"));
        assert_eq!(
            keys.pseudonym("t1", "john.smith@example.com", None),
            Some(p.clone())
        );
        assert_ne!(
            keys.pseudonym("t2", "john.smith@example.com", None),
            Some(p.clone())
        );
        assert_ne!(
            keys.pseudonym("t1", "mary.jones@example.com", None),
            Some(p.clone())
        );
        assert_eq!(
            keys.pseudonym("t1", &p, None),
            Some(p.clone()),
            "left as it is"
        );
        let short = keys
            .pseudonym("t1", "john.smith@example.com", Some(12))
            .unwrap();
        assert_eq!(short.len(), 12);
        assert!(p.starts_with(&short));
        assert!(!is_pseudonym("pn-John"));
        assert!(!is_pseudonym("pn-ABCDEF0123"));
    }
}
