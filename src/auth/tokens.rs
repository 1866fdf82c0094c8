//! Random secrets (API keys, refresh and reset tokens) and the hashes they are stored as.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// API keys start with this, so leaked keys are easy to recognise and scan for.
pub const API_KEY_PREFIX: &str = "sk_";

/// Characters of an API key shown after creation.
pub const API_KEY_SHOWN_CHARS: usize = 10;

/// 32 random bytes, URL-safe base64 (43 characters).
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A new API key: `sk_` and 32 random bytes.
pub fn new_api_key() -> String {
    format!("{API_KEY_PREFIX}{}", random_secret())
}

/// A void API key's stored hash and prefix: the hash of a secret nobody is told, so no key
/// matches it, and an empty prefix, which views show as no key.
pub fn void_api_key() -> (String, String) {
    (sha256_hex(&random_secret()), String::new())
}

/// The part of an API key that may be shown again.
pub fn api_key_prefix(key: &str) -> String {
    key.chars().take(API_KEY_SHOWN_CHARS).collect()
}

/// A short fingerprint of an API key, from its stored hash: what a ws ticket bought with the key
/// carries, so the ticket is refused once the key is replaced. 64 bits are plenty to tell a
/// user's keys apart, and reveal nothing usable about the key.
pub fn api_key_fingerprint(api_key_hash: &str) -> String {
    api_key_hash.chars().take(16).collect()
}

/// SHA-256, hex: how high-entropy secrets are stored (a slow hash adds nothing for 256 random bits).
pub fn sha256_hex(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// HMAC-SHA-256 of `message` under `key`, URL-safe base64: binds a CSRF token to a session.
pub fn hmac_token(key: &[u8], message: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Compares secrets in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_are_long_random_and_prefixed() {
        let (a, b) = (new_api_key(), new_api_key());
        assert!(a.starts_with("sk_") && a.len() == 46, "{a}");
        assert_ne!(a, b);
        assert_eq!(api_key_prefix(&a).len(), 10);
    }

    #[test]
    fn hashes_and_macs_are_stable_and_keyed() {
        assert_eq!(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        // RFC 4231, test case 2: HMAC-SHA-256 of "what do ya want for nothing?" under "Jefe" is
        // 5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843, here in URL-safe
        // base64 without padding.
        assert_eq!(
            hmac_token(b"Jefe", "what do ya want for nothing?"),
            "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM"
        );
        assert_eq!(hmac_token(b"k", "s"), hmac_token(b"k", "s"));
        assert_ne!(hmac_token(b"k", "s"), hmac_token(b"other", "s"));
        assert!(
            constant_time_eq("abc", "abc") && !constant_time_eq("abc", "abd") && !constant_time_eq("a", "ab")
        );
    }
}
