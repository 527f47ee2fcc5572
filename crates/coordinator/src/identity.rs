//! Prover identities: the ids a coordinator issues and the secrets that bind them.
//!
//! A prover id is not secret (the admin API lists them), so presenting one must not be
//! enough to take it over: `Reconnect` also carries the `reconnect_secret` its registration
//! returned, an HMAC of the id under a key kept in the store. Deriving it (rather than
//! storing one per prover) keeps it valid across restarts and for every coordinator that
//! shares the store, at no write per registration.

use crate::CoordinatorError;
use proofmill_store::Store;
use proofmill_types::{Digest, ProverId};

/// Meta key of the HMAC key, hex.
const KEY_META: &str = "provers/reconnect_key";

pub(crate) struct ProverKeys {
    key: [u8; 32],
}

impl ProverKeys {
    /// The store's key, created on first start. Created by an atomic insert-if-absent, so
    /// coordinators starting together on one empty store all end up with the same key.
    pub async fn load_or_create(store: &dyn Store) -> Result<Self, CoordinatorError> {
        let hex = match store.get_meta(KEY_META).await? {
            Some(hex) => hex,
            None => {
                let fresh: [u8; 32] = rand::random();
                store.init_meta(KEY_META, &hex::encode(fresh)).await?
            }
        };
        let key = Digest::from_hex(&hex).ok_or_else(|| {
            CoordinatorError::Config(format!("stored {KEY_META} is not 32 hex bytes"))
        })?;
        Ok(ProverKeys { key: key.0 })
    }

    pub fn new_id() -> ProverId {
        ProverId(format!("prv-{:016x}", rand::random::<u64>()))
    }

    pub fn secret(&self, id: &ProverId) -> String {
        Digest::hmac_sha256(&self.key, id.0.as_bytes()).to_hex()
    }

    /// Whether `secret` is the one issued with `id`.
    pub fn check(&self, id: &ProverId, secret: &str) -> bool {
        Digest::from_hex(secret)
            .is_some_and(|given| given.ct_eq(&Digest::hmac_sha256(&self.key, id.0.as_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_bind_ids_to_the_key() {
        let keys = ProverKeys { key: [1; 32] };
        let other = ProverKeys { key: [2; 32] };
        let id = ProverId("prv-1".into());
        let secret = keys.secret(&id);
        assert!(keys.check(&id, &secret));
        assert!(!keys.check(&ProverId("prv-2".into()), &secret));
        assert!(!other.check(&id, &secret), "another store's key");
        for bad in ["", "zz", &secret[..62]] {
            assert!(!keys.check(&id, bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn coordinators_starting_together_share_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
        let (a, b) = (
            proofmill_store::open_store(&url).await.unwrap(),
            proofmill_store::open_store(&url).await.unwrap(),
        );
        let (ka, kb) = tokio::join!(
            ProverKeys::load_or_create(a.as_ref()),
            ProverKeys::load_or_create(b.as_ref())
        );
        let (ka, kb) = (ka.unwrap(), kb.unwrap());
        assert_eq!(ka.key, kb.key, "a secret from one must pass the other");
        let again = ProverKeys::load_or_create(a.as_ref()).await.unwrap();
        assert_eq!(again.key, ka.key, "kept across restarts");
    }
}
