//! Names the worker shows others, derived with the index key so the key file
//! keeps its format: the opaque tenant id of status events (the tenant_hash
//! authorises status queries, so it must not travel on the bus) and the tag
//! that makes an archive's name unguessable. Each is an HMAC-SHA256 under a key
//! of its own, itself the HMAC of the index key and a label: a blind index
//! always has a NUL byte in its input and these labels have none, so no
//! derived value is a blind index, and none says anything of another. Like the
//! blind indexes they cannot change without the index key, which does not
//! rotate: the same tenant keeps its id and an archive its name, so a retry, a
//! takeover and a forget compute the same name without storing it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Keys;

/// What every opaque tenant id starts with.
pub const TENANT_ID_PREFIX: &str = "tn-";
/// Hex digits of a tenant id and of an archive's tag: 128 bits.
pub const TAG_HEX: usize = 32;

impl Keys {
    /// The HMAC of `value` under the key derived for `label`, as `TAG_HEX` hex digits.
    fn derived(&self, label: &str, value: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.index_key)
            .expect("HMAC takes any key length");
        mac.update(label.as_bytes());
        let key = mac.finalize().into_bytes();
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("HMAC takes any key length");
        mac.update(value);
        let digest = hex::encode(mac.finalize().into_bytes());
        digest[..TAG_HEX].to_owned()
    }

    /// The opaque id status events name `tenant` by: `tn-` and 32 hex digits,
    /// the same for every request of the tenant, nothing without the key.
    pub fn tenant_id(&self, tenant: &str) -> String {
        let tag = self.derived("privacy-worker tenant id v1", tenant.as_bytes());
        format!("{TENANT_ID_PREFIX}{tag}")
    }

    /// The tag of request `request_id`'s archive name: 32 hex digits.
    pub fn archive_tag(&self, request_id: i64) -> String {
        self.derived(
            "privacy-worker archive name v1",
            request_id.to_string().as_bytes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names_are_stable_distinct_and_keyed() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, _) = Keys::load_or_create(&dir.path().join("a.json")).unwrap();
        let (other, _) = Keys::load_or_create(&dir.path().join("b.json")).unwrap();
        let t1 = keys.tenant_id("t1");
        assert_eq!(t1.len(), TENANT_ID_PREFIX.len() + TAG_HEX);
        assert!(t1.starts_with(TENANT_ID_PREFIX) && !t1.contains("t1"));
        assert_eq!(keys.tenant_id("t1"), t1);
        assert_ne!(keys.tenant_id("t2"), t1);
        assert_ne!(other.tenant_id("t1"), t1, "keyed");
        let tag = keys.archive_tag(10000);
        assert_eq!(tag.len(), TAG_HEX);
        assert_eq!(keys.archive_tag(10000), tag);
        assert_ne!(keys.archive_tag(10001), tag);
        assert_ne!(other.archive_tag(10000), tag, "keyed");
        assert_ne!(
            &keys.tenant_id("10000")[TENANT_ID_PREFIX.len()..],
            tag,
            "separate contexts"
        );
    }
}
