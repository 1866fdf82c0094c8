//! Presence over every node. The node's in-process presence still holds its own sessions (the
//! directory, revocation memory and heartbeat sweep) but tells each change of a user's sessions
//! here instead of to its admins. Three tasks keep the node in step with the others:
//!
//! - **sync** publishes the changes, in order, a batch per script call: the script adds them to
//!   every node's counts and publishes the global events (`joined` on a user's first session on
//!   any node, `left` on their last) on `{sb}:presence`, in the one order Redis gives them; it
//!   also (un)subscribes the user's frame channel as the node gains or loses their sessions;
//! - **beat** marks the node alive every half heartbeat and reaps nodes silent for two and a half
//!   heartbeats, so a dead node's sessions leave (`node_lost`) within three; when the node was
//!   missing from Redis or something may not have reached it, it publishes its whole state again;
//! - **listen** takes everything the node's subscriptions bring: presence events for its admins,
//!   revocations, and frames for its sessions.
//!
//! While Redis is unreachable the node's admins see the node's own changes, as with one node.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use fred::interfaces::{EventInterface, PubsubInterface};
use fred::prelude::Value;
use fred::types::scripts::Script;
use serde::Deserialize;
use std::sync::LazyLock;
use switchboard_actors::presence::{
    ACTIVE_USERS, LeaveReason, LocalChange, PresenceEvent, Relay, Snapshot, UserPresence, WS_SESSIONS,
};
use tokio::sync::mpsc;

use super::bus::{REVOKE_CHANNEL, RevokeMessage, channel_user, parse_frame_message, user_channel};
use super::session_cap::RedisSessionCap;
use super::{RedisLink, arg, num};
use crate::metrics::names::CLUSTER_NODES;
use crate::seams::bus::{Bus, LocalBus};
use crate::seams::presence::{
    Joining, LocalPresence, PresenceRegistry, PresenceUnavailable, SocketCounts, SocketCredential,
};

static SYNC: LazyLock<Script> = LazyLock::new(|| Script::from_lua(include_str!("presence_sync.lua")));
static BEAT: LazyLock<Script> = LazyLock::new(|| Script::from_lua(include_str!("presence_beat.lua")));
static SNAPSHOT: LazyLock<Script> = LazyLock::new(|| Script::from_lua(include_str!("presence_snapshot.lua")));

/// The channel of presence events.
const PRESENCE_CHANNEL: &str = "{sb}:presence";

/// Changes sent in one script call at most.
const SYNC_BATCH: usize = 256;

/// Work for the sync task, in the order it must happen.
enum SyncJob {
    /// One user's sessions on this node changed.
    Change(LocalChange),
    /// Publish the node's whole state; users Redis lists for the node and it no longer holds
    /// leave with this reason.
    Everything(LeaveReason),
}

/// The presence registry of a node in a cluster.
pub struct RedisPresence {
    link: Arc<RedisLink>,
    local: LocalPresence,
    /// Nodes listed in Redis at the last heartbeat.
    nodes: Arc<AtomicUsize>,
}

impl RedisPresence {
    /// Starts the node's in-process presence, relayed through Redis, and the tasks that keep it
    /// in step; answers the registry and the node's own bus (for [`super::RedisBus`]).
    pub fn start(
        link: Arc<RedisLink>,
        heartbeat: Duration,
        cap: Arc<RedisSessionCap>,
    ) -> (RedisPresence, LocalBus) {
        let (jobs, queue) = mpsc::unbounded_channel();
        let relay_jobs = jobs.clone();
        let relay: Relay = Box::new(move |change| {
            let _ = relay_jobs.send(SyncJob::Change(change));
        });
        let (local, bus) = LocalPresence::start(heartbeat, Some(relay));
        tokio::spawn(sync(link.clone(), local.clone(), cap, queue));
        let nodes = Arc::new(AtomicUsize::new(1));
        tokio::spawn(beat(link.clone(), heartbeat, jobs, nodes.clone()));
        tokio::spawn(listen(link.clone(), local.clone(), bus.clone()));
        (RedisPresence { link, local, nodes }, bus)
    }

    /// Everyone online on every node, or `None` when Redis cannot say.
    async fn global_snapshot(&self) -> Option<Snapshot> {
        let flat: Vec<Value> = self.link.eval(&SNAPSHOT, vec![], vec![]).await.ok()?;
        let mut users: Vec<UserPresence> = flat
            .chunks_exact(4)
            .filter_map(|entry| {
                let sessions = entry[2].as_u64()?;
                let since = entry[3].as_string()?.parse::<u64>().ok()?;
                Some(UserPresence {
                    user_id: entry[0].as_string()?.into(),
                    email: entry[1].as_string()?.into(),
                    sessions: usize::try_from(sessions).ok()?,
                    connected_since: UNIX_EPOCH + Duration::from_millis(since),
                })
            })
            .filter(|user| user.sessions > 0)
            .collect();
        users.sort_by_key(|u| u.connected_since);
        let sessions = users.iter().map(|u| u.sessions).sum();
        Some(Snapshot { active_users: users.len(), sessions, users })
    }
}

#[async_trait]
impl PresenceRegistry for RedisPresence {
    fn join(&self, session: Joining) {
        self.local.join(session);
    }

    fn leave(&self, session_id: &str, reason: LeaveReason) {
        self.local.leave(session_id, reason);
    }

    async fn snapshot(&self) -> Result<Snapshot, PresenceUnavailable> {
        match self.global_snapshot().await {
            Some(snapshot) => Ok(snapshot),
            None => self.local.snapshot().await,
        }
    }

    /// The nodes listed at the last heartbeat; while Redis is down this node answers alone, so 1.
    fn nodes(&self) -> usize {
        if self.link.is_up() { self.nodes.load(Ordering::Relaxed) } else { 1 }
    }

    /// This node's sockets only: presence in Redis counts sessions per user and node, not per
    /// login session (docs/SCALING.md, "What stays per node").
    async fn sockets_by_login_session(&self, user_id: &str) -> Result<SocketCounts, PresenceUnavailable> {
        self.local.sockets_by_login_session(user_id).await
    }

    async fn local_sockets(&self) -> Result<Vec<SocketCredential>, PresenceUnavailable> {
        self.local.local_sockets().await
    }

    async fn subscribe(&self, session_id: &str) -> Result<Snapshot, PresenceUnavailable> {
        // Subscribed first, so no event falls between the snapshot and the first event.
        let local = self.local.subscribe(session_id).await?;
        Ok(self.global_snapshot().await.unwrap_or(local))
    }

    fn unsubscribe(&self, session_id: &str) {
        self.local.unsubscribe(session_id);
    }

    async fn close_all(&self) -> usize {
        self.local.close_all().await
    }
}

/// Milliseconds since the epoch, as the scripts store times.
fn millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The script arguments of one change.
fn change_args(args: &mut Vec<Value>, change: &LocalChange) {
    args.push(arg(&*change.user_id));
    args.push(num(i64::try_from(change.sessions).unwrap_or(i64::MAX)));
    args.push(arg(millis(change.since).to_string()));
    args.push(arg(&*change.email));
    args.push(arg(change.reason.map_or("", LeaveReason::as_str)));
}

/// Sets `active_users` and `ws_sessions` to what a script counted over every node.
fn set_global_gauges(users: i64, sessions: i64) {
    metrics::gauge!(ACTIVE_USERS).set(users as f64);
    metrics::gauge!(WS_SESSIONS).set(sessions as f64);
}

/// The sync task: publishes the node's changes in order.
async fn sync(
    link: Arc<RedisLink>,
    local: LocalPresence,
    cap: Arc<RedisSessionCap>,
    mut queue: mpsc::UnboundedReceiver<SyncJob>,
) {
    let mut jobs = Vec::with_capacity(SYNC_BATCH);
    while queue.recv_many(&mut jobs, SYNC_BATCH).await > 0 {
        let mut changes = Vec::new();
        for job in jobs.drain(..) {
            match job {
                SyncJob::Change(change) => changes.push(change),
                SyncJob::Everything(reason) => {
                    publish_changes(&link, &local, std::mem::take(&mut changes)).await;
                    publish_everything(&link, &local, &cap, reason).await;
                }
            }
        }
        publish_changes(&link, &local, changes).await;
    }
}

/// Publishes some changes, and follows the users' frame channels; without Redis, tells this
/// node's admins itself.
async fn publish_changes(link: &RedisLink, local: &LocalPresence, changes: Vec<LocalChange>) {
    if changes.is_empty() {
        return;
    }
    let first_here = |c: &&LocalChange| c.sessions == 1 && c.reason.is_none();
    let joined: Vec<String> = changes.iter().filter(first_here).map(|c| user_channel(&c.user_id)).collect();
    if !joined.is_empty() && link.is_up() {
        let _ = link.subscriber.subscribe(joined).await;
    }
    let mut args = vec![arg(link.node()), arg("delta")];
    for change in &changes {
        change_args(&mut args, change);
    }
    match link.eval::<(i64, i64)>(&SYNC, vec![], args).await {
        Ok((users, sessions)) => set_global_gauges(users, sessions),
        Err(_) => {
            for change in &changes {
                local.announce(change.local_event());
            }
        }
    }
    let left: Vec<String> =
        changes.iter().filter(|c| c.sessions == 0).map(|c| user_channel(&c.user_id)).collect();
    if !left.is_empty() && link.is_up() {
        let _ = link.subscriber.unsubscribe(left).await;
    }
}

/// Publishes the node's whole state (after an outage, or when Redis did not list the node) and
/// subscribes the frame channels of every user it holds.
async fn publish_everything(
    link: &RedisLink,
    local: &LocalPresence,
    cap: &RedisSessionCap,
    gone_reason: LeaveReason,
) {
    let Ok(users) = local.local_users().await else { return };
    let mut args = vec![arg(link.node()), arg(format!("full:{}", gone_reason.as_str()))];
    for user in &users {
        change_args(&mut args, user);
    }
    match link.eval::<(i64, i64)>(&SYNC, vec![], args).await {
        Ok((active, sessions)) => {
            set_global_gauges(active, sessions);
            tracing::info!(node = link.node(), users = users.len(), "published this node's presence");
        }
        Err(_) => return,
    }
    cap.publish_all().await;
    let channels: Vec<String> = users.iter().map(|u| user_channel(&u.user_id)).collect();
    if !channels.is_empty() {
        let _ = link.subscriber.subscribe(channels).await;
    }
}

/// The beat task: keeps the node listed, reaps silent nodes, and asks for a full publication
/// when Redis lost the node or something may have missed it.
async fn beat(
    link: Arc<RedisLink>,
    heartbeat: Duration,
    jobs: mpsc::UnboundedSender<SyncJob>,
    node_count: Arc<AtomicUsize>,
) {
    let stale_after = i64::try_from((heartbeat * 5 / 2).as_millis()).unwrap_or(i64::MAX);
    let mut ticks = tokio::time::interval(heartbeat / 2);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A node that restarts under the same name finds its last life's sessions: they were lost.
    let mut gone_reason = LeaveReason::NodeLost;
    loop {
        ticks.tick().await;
        if !link.is_up() {
            continue;
        }
        let answer =
            link.eval::<(i64, i64, i64, i64)>(&BEAT, vec![], vec![arg(link.node()), num(stale_after)]).await;
        let Ok((listed, users, sessions, nodes)) = answer else { continue };
        set_global_gauges(users, sessions);
        metrics::gauge!(CLUSTER_NODES).set(nodes as f64);
        node_count.store(usize::try_from(nodes).unwrap_or(1).max(1), Ordering::Relaxed);
        if (listed == 0 || link.take_stale()) && jobs.send(SyncJob::Everything(gone_reason)).is_err() {
            return;
        }
        // Later publications follow an outage, in which the users that left simply closed.
        gone_reason = LeaveReason::Closed;
    }
}

/// A presence event as the scripts publish it.
#[derive(Deserialize)]
struct WireEvent {
    #[serde(rename = "type")]
    kind: String,
    user_id: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    sessions: usize,
    #[serde(default)]
    since: f64,
}

impl WireEvent {
    fn into_event(self) -> Option<PresenceEvent> {
        let user_id: Arc<str> = self.user_id.into();
        Some(match self.kind.as_str() {
            "joined" => PresenceEvent::Joined(UserPresence {
                user_id,
                email: self.email.into(),
                sessions: self.sessions,
                connected_since: UNIX_EPOCH + Duration::from_millis(self.since.max(0.0) as u64),
            }),
            "left" => PresenceEvent::Left {
                user_id,
                email: self.email.into(),
                reason: LeaveReason::parse(&self.reason).unwrap_or(LeaveReason::Closed),
            },
            "sessions" => PresenceEvent::Sessions { user_id, sessions: self.sessions },
            _ => return None,
        })
    }
}

/// The listen task: everything the node's subscriptions bring.
async fn listen(link: Arc<RedisLink>, local: LocalPresence, bus: LocalBus) {
    let mut messages = link.subscriber.message_rx();
    // Tracked by the subscriber, so made again after every reconnection.
    let _ = link.subscriber.subscribe(vec![PRESENCE_CHANNEL, REVOKE_CHANNEL]).await;
    let node = link.node().as_bytes().to_vec();
    loop {
        let message = match messages.recv().await {
            Ok(message) => message,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "fell behind the cluster's messages; some were lost");
                RedisLink::count("dropped", usize::try_from(missed).unwrap_or(usize::MAX));
                continue;
            }
            Err(_) => return,
        };
        RedisLink::count("received", 1);
        let Some(bytes) = message.value.as_bytes() else { continue };
        let channel: &str = &message.channel;
        if let Some(user_id) = channel_user(channel) {
            if let Some((origin, frame)) = parse_frame_message(bytes)
                && origin != node
            {
                bus.to_user(user_id, frame);
            }
        } else if channel == PRESENCE_CHANNEL {
            if let Some(event) =
                serde_json::from_slice::<WireEvent>(bytes).ok().and_then(WireEvent::into_event)
            {
                local.announce(event);
            }
        } else if channel == REVOKE_CHANNEL
            && let Ok(revocation) = serde_json::from_slice::<RevokeMessage>(bytes)
            && revocation.origin.as_bytes() != node
            && let Some(revocation) = revocation.into_revocation()
        {
            bus.revoke(&revocation.user_id, revocation.scope, revocation.reason);
        }
    }
}
