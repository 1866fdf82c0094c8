//! Password hashing with argon2id (OWASP parameters: m = 19 MiB, t = 2, p = 1), run on a few
//! dedicated low-priority threads so a login storm can neither occupy every thread, nor take
//! the cores from sessions, nor make every thread of the blocking pool keep a 19 MiB block in
//! its allocator arena.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, LazyLock, Mutex, mpsc};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use tokio::sync::oneshot;

/// The list as shipped: one lower-cased password a line, most common first. The pages fetch it
/// (`/assets/common-passwords.txt`) to show the rule while a new password is typed.
pub const COMMON_PASSWORDS_TEXT: &str = include_str!("../../assets/common-passwords.txt");

/// The 10,000 most common passwords (see `assets/README.md` for the source and licence).
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| COMMON_PASSWORDS_TEXT.lines().map(str::trim).collect());

/// True when `password` (compared case-insensitively) is one of the 10,000 most common.
pub fn is_common(password: &str) -> bool {
    COMMON_PASSWORDS.contains(password.to_lowercase().as_str())
}

/// Errors of hashing itself (not a wrong password).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Work for a hashing thread.
type Job = Box<dyn FnOnce() + Send>;

/// Hashes and verifies passwords on `concurrency` dedicated threads; requests beyond that wait
/// in line. The threads end when the last clone of the hasher is dropped.
#[derive(Clone)]
pub struct PasswordHasher {
    jobs: mpsc::Sender<Job>,
    /// A real hash of a random password: verifying against it costs what a real check costs,
    /// so a login for an unknown email takes as long as one with a wrong password.
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    /// A hasher with `concurrency` hashing threads.
    pub fn new(concurrency: usize) -> Result<PasswordHasher, HashError> {
        let dummy = hash_blocking(&uuid::Uuid::new_v4().to_string())?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..concurrency.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || hash_worker(&queue))
                .map_err(|e| HashError(e.to_string()))?;
        }
        Ok(PasswordHasher { jobs, dummy_hash: dummy.into() })
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
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = answer.send(f());
        });
        self.jobs.send(job).map_err(|_| HashError("the hashing threads have stopped".into()))?;
        answered.await.map_err(|_| HashError("a hashing job failed".into()))
    }
}

/// One hashing thread: takes jobs until every sender is gone. It runs at the lowest priority
/// (niceness 19), so during a login storm the scheduler still gives the runtime's threads the
/// cores they ask for: sessions and requests keep their latency and logins take what is left.
fn hash_worker(queue: &Mutex<mpsc::Receiver<Job>>) {
    if let Err(e) = thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min) {
        tracing::warn!(error = ?e, "could not lower the priority of a password hashing thread");
    }
    loop {
        // The lock is held only while waiting for the next job, never while hashing.
        let next = queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).recv();
        let Ok(job) = next else { return };
        // A panicking job drops its answer (the caller sees an error); the thread stays.
        let _ = catch_unwind(AssertUnwindSafe(job));
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
