//! The bus over Redis. A user's frames go at once to their sessions on this node, and through
//! the user's channel `sb:u:<user>` to the nodes that hold their other sessions (a node is
//! subscribed to a user's channel while it holds one of their sessions; the presence seam keeps
//! the subscriptions). Revocations go to every node on `sb:revoke`, since the sockets they cover
//! may still be opening on a node that holds no session of the user yet.
//!
//! A message names the node it came from, and a node skips its own: it delivered them already.
//! Publishing goes through one task that sends whatever is waiting in one pipeline, in order,
//! so a user's frames reach the other nodes in the order they were made. Revocations have a queue
//! of their own that is never dropped: they go first, and wait (retried) while Redis is down,
//! while frames for other nodes are dropped rather than held without bound.

use std::sync::Arc;
use std::time::Duration;

use fred::interfaces::PubsubInterface;
use fred::prelude::Value;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::RedisLink;
use crate::seams::bus::{Bus, Frame, LocalBus, RevokeScope};

/// Messages waiting to be published; beyond this, frames for other nodes are dropped (and
/// counted) rather than held without bound while Redis is slow.
const PUBLISH_QUEUE: usize = 65_536;

/// Messages sent in one pipeline at most.
const PUBLISH_BATCH: usize = 512;

/// The channel of revocations.
pub(super) const REVOKE_CHANNEL: &str = "sb:revoke";

/// The channel of a user's frames.
pub(super) fn user_channel(user_id: &str) -> String {
    format!("sb:u:{user_id}")
}

/// The user a frame channel belongs to.
pub(super) fn channel_user(channel: &str) -> Option<&str> {
    channel.strip_prefix("sb:u:")
}

/// A frame on a user's channel: the origin node, a line break, the frame as sent to clients.
pub(super) fn frame_message(origin: &str, frame: &Frame) -> Vec<u8> {
    let mut message = Vec::with_capacity(origin.len() + 1 + frame.len());
    message.extend_from_slice(origin.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(frame.as_bytes());
    message
}

/// The origin and frame of a message on a user's channel.
pub(super) fn parse_frame_message(message: &[u8]) -> Option<(&[u8], Frame)> {
    let split = message.iter().position(|b| *b == b'\n')?;
    let frame = std::str::from_utf8(&message[split + 1..]).ok()?;
    Some((&message[..split], Frame::from(frame)))
}

/// A revocation between nodes.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct RevokeMessage {
    pub origin: String,
    pub user_id: String,
    /// `all`, `api_keys`, or `login:` and the login session id.
    pub scope: String,
    pub reason: String,
}

/// A revocation another node published, for this node's sessions.
#[derive(Debug, PartialEq)]
pub(super) struct Revocation {
    pub user_id: String,
    pub scope: RevokeScope,
    pub reason: &'static str,
}

impl RevokeMessage {
    /// The revocation for this node's sessions (`None` for a scope it does not know). Reasons
    /// are turned back into the server's own static names; an unknown one reads `revoked`.
    pub fn into_revocation(self) -> Option<Revocation> {
        let scope = match self.scope.as_str() {
            "all" => RevokeScope::All,
            "api_keys" => RevokeScope::ApiKeys,
            other => RevokeScope::LoginSession(other.strip_prefix("login:")?.into()),
        };
        let known = crate::seams::bus::REVOKE_REASONS.iter().find(|r| **r == self.reason);
        Some(Revocation { user_id: self.user_id, scope, reason: known.copied().unwrap_or("revoked") })
    }
}

/// How long a revocation waits before its publication is tried again while Redis is down.
const REVOCATION_RETRY: Duration = Duration::from_millis(250);

/// The bus of a node in a cluster: this node's own bus for its sessions, and Redis for the others.
pub struct RedisBus {
    link: Arc<RedisLink>,
    local: LocalBus,
    outgoing: mpsc::Sender<(String, Vec<u8>)>,
    revocations: mpsc::UnboundedSender<Vec<u8>>,
}

impl RedisBus {
    /// A bus over this node's `local` one, publishing through `link`.
    pub fn new(link: Arc<RedisLink>, local: LocalBus) -> RedisBus {
        let (outgoing, frames) = mpsc::channel(PUBLISH_QUEUE);
        let (revocations, revocation_queue) = mpsc::unbounded_channel();
        tokio::spawn(publish(link.clone(), frames, revocation_queue));
        RedisBus { link, local, outgoing, revocations }
    }

    fn publish(&self, channel: String, message: Vec<u8>) {
        if !self.link.is_up() {
            return;
        }
        if self.outgoing.try_send((channel, message)).is_err() {
            RedisLink::count("dropped", 1);
        }
    }
}

impl Bus for RedisBus {
    fn to_user(&self, user_id: &str, frame: Frame) {
        self.publish(user_channel(user_id), frame_message(self.link.node(), &frame));
        self.local.to_user(user_id, frame);
    }

    fn revoke(&self, user_id: &str, scope: RevokeScope, reason: &'static str) {
        let wire_scope = match &scope {
            RevokeScope::All => "all".to_owned(),
            RevokeScope::ApiKeys => "api_keys".to_owned(),
            RevokeScope::LoginSession(id) => format!("login:{id}"),
        };
        let message = RevokeMessage {
            origin: self.link.node().to_owned(),
            user_id: user_id.to_owned(),
            scope: wire_scope,
            reason: reason.to_owned(),
        };
        if let Ok(json) = serde_json::to_vec(&message) {
            // Revocations are rare and must arrive: never dropped, also while Redis is down.
            let _ = self.revocations.send(json);
        }
        self.local.revoke(user_id, scope, reason);
    }
}

/// Publishes what is queued, in order, a pipeline at a time: revocations first, kept and tried
/// again until Redis takes them; then frames.
async fn publish(
    link: Arc<RedisLink>,
    mut frames: mpsc::Receiver<(String, Vec<u8>)>,
    mut revocations: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    let mut pending: Vec<Vec<u8>> = Vec::new();
    loop {
        tokio::select! {
            biased;
            Some(revocation) = revocations.recv() => {
                pending.push(revocation);
                while let Ok(revocation) = revocations.try_recv() {
                    pending.push(revocation);
                }
            }
            received = frames.recv_many(&mut batch, PUBLISH_BATCH), if pending.is_empty() => {
                if received == 0 {
                    return;
                }
                send(&link, std::mem::take(&mut batch)).await;
            }
            () = tokio::time::sleep(REVOCATION_RETRY), if !pending.is_empty() => {}
        }
        if !pending.is_empty() && link.is_up() {
            let messages = pending.iter().map(|m| (REVOKE_CHANNEL.to_owned(), m.clone())).collect();
            if send(&link, messages).await {
                pending.clear();
            }
        }
    }
}

/// Publishes `messages` in one pipeline; false when Redis did not take them.
async fn send(link: &RedisLink, messages: Vec<(String, Vec<u8>)>) -> bool {
    let sent = messages.len();
    let pipeline = link.client.pipeline();
    for (channel, message) in messages {
        let _: Result<(), _> = pipeline.publish(channel, Value::Bytes(message.into())).await;
    }
    match pipeline.all::<Vec<Value>>().await {
        Ok(_) => {
            RedisLink::count("published", sent);
            true
        }
        Err(e) => {
            link.failed(&e);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_message_carries_its_origin_and_the_frame_unchanged() {
        let frame = Frame::from("{\"type\":\"chat.delta\",\"delta\":\"a\\nb\"}");
        let message = frame_message("node-1", &frame);
        let (origin, parsed) = parse_frame_message(&message).expect("parses");
        assert_eq!((origin, parsed), (&b"node-1"[..], frame));
        assert!(parse_frame_message(b"no line break").is_none());
        assert_eq!(channel_user(&user_channel("u-1")), Some("u-1"));
    }

    #[test]
    fn revocations_keep_their_scope_and_known_reasons() {
        let message = |scope: &str, reason: &str| RevokeMessage {
            origin: "a".into(),
            user_id: "u".into(),
            scope: scope.into(),
            reason: reason.into(),
        };
        let revoke = message("login:l-1", "logout").into_revocation().expect("known scope");
        assert_eq!((revoke.scope, revoke.reason), (RevokeScope::LoginSession("l-1".into()), "logout"));
        let revoke = message("all", "made-up").into_revocation().expect("known scope");
        assert_eq!((revoke.scope, revoke.reason), (RevokeScope::All, "revoked"));
        let revoke = message("api_keys", "api_key_regenerated").into_revocation().expect("known scope");
        assert_eq!(revoke.scope, RevokeScope::ApiKeys);
        assert!(message("something-else", "logout").into_revocation().is_none());
    }
}
