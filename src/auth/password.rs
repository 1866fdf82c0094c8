//! Password hashing with argon2id (OWASP parameters: m = 19 MiB, t = 2, p = 1), run on the
//! blocking pool behind a semaphore so a login storm cannot occupy every thread.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use tokio::sync::Semaphore;

/// The 10,000 most common passwords (see `assets/README.md` for the source and licence).
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("../../assets/common-passwords.txt").lines().map(str::trim).collect());

/// True when `password` (compared case-insensitively) is one of the 10,000 most common.
pub fn is_common(password: &str) -> bool {
    COMMON_PASSWORDS.contains(password.to_lowercase().as_str())
}

/// Errors of hashing itself (not a wrong password).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Hashes and verifies passwords with a bound on how many run at once.
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// A real hash of a random password: verifying against it costs what a real check costs,
    /// so a login for an unknown email takes as long as one with a wrong password.
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    /// A hasher allowing `concurrency` hashes at once.
    pub fn new(concurrency: usize) -> Result<PasswordHasher, HashError> {
        let dummy = hash_blocking(&uuid::Uuid::new_v4().to_string())?;
        Ok(PasswordHasher { permits: Arc::new(Semaphore::new(concurrency.max(1))), dummy_hash: dummy.into() })
    }

    /// The PHC string of `password`.
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let password = password.to_owned();
        self.run(move || hash_blocking(&password)).await?
    }

    /// Whether `password` matches `hash`; with no hash (unknown account) it spends the same
    /// time on the dummy hash and answers false.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, HashError> {
        let (password, known) = (password.to_owned(), hash.is_some());
        let hash = hash.map_or_else(|| self.dummy_hash.to_string(), str::to_owned);
        let matches = self.run(move || verify_blocking(&password, &hash)).await?;
        Ok(known && matches)
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, HashError> {
        let _permit = self.permits.acquire().await.map_err(|e| HashError(e.to_string()))?;
        tokio::task::spawn_blocking(f).await.map_err(|e| HashError(e.to_string()))
    }
}

fn hash_blocking(password: &str) -> Result<String, HashError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

fn verify_blocking(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_only_its_own_password() {
        let hasher = PasswordHasher::new(1).unwrap();
        let hash = hasher.hash("correct horse battery staple").await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "OWASP parameters: {hash}");
        assert!(hasher.verify("correct horse battery staple", Some(&hash)).await.unwrap());
        assert!(!hasher.verify("correct horse battery stapl", Some(&hash)).await.unwrap());
        assert!(!hasher.verify("correct horse battery staple", None).await.unwrap());
    }

    #[test]
    fn common_passwords_are_recognised_case_insensitively() {
        assert!(is_common("password"));
        assert!(is_common("Password1"));
        assert!(!is_common("tangerine-otter-lamp-42"));
        assert!(COMMON_PASSWORDS.len() >= 9_000, "the list has {} entries", COMMON_PASSWORDS.len());
    }
}
