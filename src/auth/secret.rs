//! The secrets the server hands out (login cookies, app tokens, session
//! ids) and the hash they are kept under. It depends on nothing else in
//! edgeim, so the store and the login table can both use it.

use blake2::{Blake2s256, Digest};

/// The hash under which a token, cookie or session id is stored.
pub type SecretHash = [u8; 32];

pub fn hash_secret(secret: &str) -> SecretHash {
    Blake2s256::digest(secret.as_bytes()).into()
}

/// A fresh random secret: 244 random bits as 64 hex characters.
pub fn new_secret() -> String {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    format!("{}{}", a.simple(), b.simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_distinct_and_hashes_fixed() {
        assert_ne!(new_secret(), new_secret());
        assert_eq!(new_secret().len(), 64);
        assert_eq!(hash_secret("a"), hash_secret("a"));
        assert_ne!(hash_secret("a"), hash_secret("b"));
    }
}
