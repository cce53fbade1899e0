//! The Envoy-wide cache of verified JWTs: a token one worker verified is not verified again by
//! the others (signature verification in wasm costs about a millisecond). Entries are keyed by
//! the token's SHA-256 (the token itself is never stored), in a fixed number of shared-data slots
//! (memory is bounded by the slots), and name the verification settings they were verified under
//! (key managers, credential settings, JWT API keys, the backend JWT's claim copying) and the
//! JWKS sets the verifying worker held: after a change to those nothing verified before is taken
//! (a key dropped at a refresh verifies nothing more); a change to the directory alone keeps them. An entry is never used past
//! the token's `exp`; the per-worker cache in front of it keeps the hot tokens. An entry names the
//! module's [`IDENTITY_FORMAT`]: one an earlier module wrote (before an upgrade, or by its VMs
//! draining beside this one's) is verified again.

use serde::{Deserialize, Serialize};

use super::bearer::{TokenIdentity, IDENTITY_FORMAT};
use crate::hashing::hex;
use crate::host::SharedStore;

/// Shared-data slots for verified tokens.
pub const SLOTS: u32 = 4096;

#[derive(Serialize, Deserialize)]
struct Entry {
    /// [`IDENTITY_FORMAT`] of the module that verified it (absent before it was recorded).
    format: u32,
    /// Hex SHA-256 of the token.
    hash: String,
    /// The configuration that verified it.
    config: String,
    identity: TokenIdentity,
}

fn slot(hash: &[u8; 32]) -> String {
    let slot = u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]]) % SLOTS;
    format!("apim.verified.{slot}")
}

/// The identity of a token another worker verified under this configuration, if still valid.
pub fn lookup(store: &dyn SharedStore, config: &str, hash: &[u8; 32], now: u64) -> Option<TokenIdentity> {
    let (bytes, _) = store.shared_get(&slot(hash)).ok()??;
    let entry: Entry = crate::pieces::from_bytes(&bytes).ok()?;
    (entry.format == IDENTITY_FORMAT
        && entry.hash == hex(hash)
        && entry.config == config
        && now <= entry.identity.expires_at)
        .then_some(entry.identity)
}

/// Remembers a verified token for every worker (a newer token may take an older one's slot).
pub fn remember(store: &mut dyn SharedStore, config: &str, hash: &[u8; 32], identity: &TokenIdentity) {
    let entry =
        Entry { format: IDENTITY_FORMAT, hash: hex(hash), config: config.to_string(), identity: identity.clone() };
    if let Ok(bytes) = serde_json::to_vec(&entry) {
        let _ = store.shared_set(&slot(hash), &bytes, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::testing::MemoryStore;
    use crate::vocab::KmId;

    fn identity(expires_at: u64) -> TokenIdentity {
        TokenIdentity {
            key_manager: KmId(0),
            client_id: "c".into(),
            scopes: vec![],
            end_user: None,
            user_token: false,
            expires_at,
            token_id: Some("jti".into()),
            token_twin: None,
            subject: None,
            claims: None,
        }
    }

    #[test]
    fn only_the_same_token_under_the_same_configuration_until_exp() {
        let mut store = MemoryStore::default();
        let hash = super::super::credential_hash("a.b.c");
        remember(&mut store, "config-1", &hash, &identity(100));
        assert_eq!(lookup(&store, "config-1", &hash, 100), Some(identity(100)));
        assert_eq!(lookup(&store, "config-1", &hash, 101), None, "never past exp");
        assert_eq!(lookup(&store, "config-2", &hash, 50), None, "another configuration verifies again");
        // Another token in the same slot is not this one.
        let mut other = hash;
        other[31] ^= 1;
        assert_eq!(lookup(&store, "config-1", &other, 50), None);
        assert!(
            store.data.values().all(|(value, _)| !String::from_utf8_lossy(value).contains("a.b.c")),
            "no token stored"
        );
    }
}

#[cfg(test)]
mod upgrade_tests {
    use super::*;
    use crate::host::testing::MemoryStore;
    use crate::vocab::KmId;

    /// An entry as the module wrote it before tokens had two revocation names (f788346): the
    /// same settings' fingerprint, an identity without `token_twin` (nor `subject`, `claims`).
    fn entry_of_an_earlier_module(config: &str, hash: &[u8; 32]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "hash": hex(hash),
            "config": config,
            "identity": {"key_manager": KmId(0), "client_id": "c", "scopes": [], "end_user": null,
                "user_token": false, "expires_at": 100, "token_id": "sig-of-the-presented-form"}
        }))
        .unwrap()
    }

    #[test]
    fn a_token_an_earlier_module_verified_is_verified_again() {
        // During a module upgrade the new module reads what the old one (draining beside it, or
        // before it in this Envoy) verified under the same settings. The old entry lacks the
        // revocation name an ECDSA token's other signature form gives: taken as it is, a token
        // revoked under that name passed the new module until its `exp`.
        let mut store = MemoryStore::default();
        let hash = super::super::credential_hash("a.b.c");
        store.data.insert(slot(&hash), (entry_of_an_earlier_module("config-1", &hash), 1));
        assert_eq!(lookup(&store, "config-1", &hash, 50), None, "verified again by this module");
        // What this module writes, it reads.
        let identity = TokenIdentity {
            key_manager: KmId(0),
            client_id: "c".into(),
            scopes: vec![],
            end_user: None,
            user_token: false,
            expires_at: 100,
            token_id: Some("jti".into()),
            token_twin: None,
            subject: None,
            claims: None,
        };
        remember(&mut store, "config-1", &hash, &identity);
        assert_eq!(lookup(&store, "config-1", &hash, 50), Some(identity.clone()));
        // A change to what an identity holds must bump IDENTITY_FORMAT (and this list), or a module
        // upgrade takes the earlier module's entries for this one's.
        let serde_json::Value::Object(fields) = serde_json::to_value(&identity).unwrap() else { panic!() };
        let fields: Vec<&str> = fields.keys().map(String::as_str).collect();
        let known = ["claims", "client_id", "end_user", "expires_at", "key_manager", "scopes", "subject", "token_id"];
        assert_eq!((IDENTITY_FORMAT, fields), (3, [&known[..], &["token_twin", "user_token"]].concat()));
    }
}
