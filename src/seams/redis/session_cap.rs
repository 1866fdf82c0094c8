//! The per-user session cap over every node. Each node keeps its own count of places (the
//! in-process cap, without its maximum) and mirrors it in Redis; a reservation sums the user's
//! places on every node in one script and takes one there if the total is under the cap.
//! While Redis is unreachable the node applies the cap to its own places only.

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use fred::types::scripts::Script;

use super::{RedisLink, arg, num};
use crate::seams::session_cap::{LocalSessionCap, SessionCap, SessionPlace};

static SESSION_CAP: LazyLock<Script> = LazyLock::new(|| Script::from_lua(include_str!("session_cap.lua")));

/// The session cap of a node in a cluster.
pub struct RedisSessionCap {
    link: Arc<RedisLink>,
    local: LocalSessionCap,
}

impl RedisSessionCap {
    /// At most `max` sessions per user over every node.
    pub fn new(link: Arc<RedisLink>, max: usize) -> RedisSessionCap {
        RedisSessionCap { link, local: LocalSessionCap::new(max) }
    }

    /// Writes this node's whole count to Redis again (after an outage, or when Redis lost it).
    pub async fn publish_all(&self) {
        let mut args = vec![arg(self.link.node()), arg("sync")];
        for (user, count) in self.local.all() {
            args.push(arg(&*user));
            args.push(num(i64::try_from(count).unwrap_or(i64::MAX)));
        }
        let _: Result<i64, _> = self.link.eval(&SESSION_CAP, vec![], args).await;
    }
}

#[async_trait]
impl SessionCap for RedisSessionCap {
    async fn reserve(&self, user_id: &str) -> Option<SessionPlace> {
        let max = i64::try_from(self.local.max()).unwrap_or(i64::MAX);
        let args = vec![arg(self.link.node()), arg("reserve"), arg(user_id), num(max)];
        // Redis checked the cap over every node; without Redis, this node checks its own places.
        let local_max = match self.link.eval::<i64>(&SESSION_CAP, vec![], args).await {
            Ok(0) => return None,
            Ok(_) => None,
            Err(_) => Some(self.local.max()),
        };
        let local = self.local.take(user_id, local_max)?;
        let release = Release { link: self.link.clone(), user_id: user_id.to_owned() };
        Some(SessionPlace::new((local, release)))
    }
}

/// Gives a place back in Redis when it is dropped (the local count gives itself back). If Redis
/// is unreachable then, the node's next full publication corrects the count.
struct Release {
    link: Arc<RedisLink>,
    user_id: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        if !self.link.is_up() {
            return;
        }
        let link = self.link.clone();
        let args = vec![arg(link.node()), arg("release"), arg(std::mem::take(&mut self.user_id))];
        tokio::spawn(async move {
            let _: Result<i64, _> = link.eval(&SESSION_CAP, vec![], args).await;
        });
    }
}
