//! A cap on open connections per client IP, counted on this node: a place is reserved when a
//! connection opens and given back when it is dropped. Two caps use it: open WebSockets per IP
//! (`SWITCHBOARD_WS_MAX_PER_IP`, reserved before the upgrade, held for the session's life) and
//! plain HTTP connections per IP (`SWITCHBOARD_HTTP_MAX_PER_IP`, see [`super::connections`]).
//! With several nodes each counts its own, so a client can hold a cap on every node
//! (docs/RELIABILITY.md); the upgrades-per-minute limit beside them goes through the `Limiter`
//! seam and is global with Redis.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Open connections by client IP key (IPv6 grouped by /64, as every per-IP limit).
pub struct IpCap {
    max: usize,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One open connection's place under its IP's cap, given back when dropped.
pub struct IpPlace {
    key: String,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl IpCap {
    /// A cap of `max` open connections per IP key.
    pub fn new(max: usize) -> IpCap {
        IpCap { max, open: Arc::default() }
    }

    /// Takes a place for one more connection of `key`, or `None` when it has `max` open.
    pub fn reserve(&self, key: String) -> Option<IpPlace> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(key.clone()).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpPlace { key, open: self.open.clone() })
    }
}

impl Drop for IpPlace {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_capped_per_ip_and_given_back_when_dropped() {
        let cap = IpCap::new(2);
        let (a, b) = (cap.reserve("1.1.1.1".into()), cap.reserve("1.1.1.1".into()));
        assert!(a.is_some() && b.is_some(), "two places");
        assert!(cap.reserve("1.1.1.1".into()).is_none(), "the third is refused");
        assert!(cap.reserve("2.2.2.2".into()).is_some(), "another IP has its own places");
        drop(a);
        let c = cap.reserve("1.1.1.1".into());
        assert!(c.is_some(), "a closed socket frees its place");
        drop(b);
        assert_eq!(cap.open.lock().unwrap().get("1.1.1.1"), Some(&1), "counts follow the places");
    }
}
