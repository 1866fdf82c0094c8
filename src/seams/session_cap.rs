//! The per-user cap on open WebSocket sessions. A place is reserved atomically before the
//! upgrade, so parallel upgrades cannot pass the cap together, and given back when the
//! [`SessionPlace`] is dropped: when the session ends, or when the upgrade fails after reserving.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

/// Reserves session places per user.
#[async_trait]
pub trait SessionCap: Send + Sync + 'static {
    /// A place for one more session of `user_id`, or `None` when all are taken.
    async fn reserve(&self, user_id: &str) -> Option<SessionPlace>;
}

/// One reserved place; dropping it gives the place back.
pub struct SessionPlace {
    _release: Box<dyn Send + Sync>,
}

impl SessionPlace {
    /// A place whose release is `guard`'s `Drop`.
    pub fn new(guard: impl Send + Sync + 'static) -> SessionPlace {
        SessionPlace { _release: Box::new(guard) }
    }
}

/// Counts per user in this process.
type Counts = Arc<Mutex<HashMap<Arc<str>, usize>>>;

/// The cap for one process: a count per user with an open or opening session.
pub struct LocalSessionCap {
    max: usize,
    counts: Counts,
}

impl LocalSessionCap {
    /// At most `max` sessions per user.
    pub fn new(max: usize) -> LocalSessionCap {
        LocalSessionCap { max, counts: Counts::default() }
    }

    /// Open or opening sessions of `user_id`.
    pub fn count(&self, user_id: &str) -> usize {
        lock(&self.counts).get(user_id).copied().unwrap_or(0)
    }
}

fn lock(counts: &Counts) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, usize>> {
    // Every update is a single statement, so a panic elsewhere cannot leave the map half-changed.
    counts.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LocalSessionCap {
    /// Takes a place for `user_id`, refused at `max` places when there is a maximum (a cap
    /// shared by several nodes checks its own maximum first and counts here without one).
    pub(super) fn take(&self, user_id: &str, max: Option<usize>) -> Option<LocalPlace> {
        let user_id: Arc<str> = user_id.into();
        {
            let mut counts = lock(&self.counts);
            let count = counts.entry(user_id.clone()).or_insert(0);
            if max.is_some_and(|max| *count >= max) {
                return None;
            }
            *count += 1;
        }
        Some(LocalPlace { counts: self.counts.clone(), user_id })
    }

    /// Every user with places here, and how many.
    pub(super) fn all(&self) -> Vec<(Arc<str>, usize)> {
        lock(&self.counts).iter().map(|(user, count)| (user.clone(), *count)).collect()
    }

    /// The most places a user may hold.
    pub(super) fn max(&self) -> usize {
        self.max
    }
}

#[async_trait]
impl SessionCap for LocalSessionCap {
    async fn reserve(&self, user_id: &str) -> Option<SessionPlace> {
        self.take(user_id, Some(self.max)).map(SessionPlace::new)
    }
}

/// A place held in a [`LocalSessionCap`]; users without places leave the map.
pub(super) struct LocalPlace {
    counts: Counts,
    user_id: Arc<str>,
}

impl Drop for LocalPlace {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        if let Some(count) = counts.get_mut(&self.user_id) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.user_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn places_are_counted_per_user_up_to_the_cap_and_given_back_on_drop() {
        let cap = LocalSessionCap::new(2);
        let first = cap.reserve("ada").await.expect("first place");
        let second = cap.reserve("ada").await.expect("second place");
        assert!(cap.reserve("ada").await.is_none(), "the third is refused");
        assert!(cap.reserve("bob").await.is_some(), "another user has their own places");
        drop(first);
        let third = cap.reserve("ada").await.expect("a freed place is given back");
        drop((second, third));
        assert_eq!(cap.count("ada"), 0);
        assert!(lock(&cap.counts).is_empty(), "users without places leave no entry");
    }
}
