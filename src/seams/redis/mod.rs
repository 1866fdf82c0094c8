//! The seams over Redis, for several nodes acting as one server (`REDIS_URL`). Every Redis
//! implementation keeps the in-process one beside it and falls back to it while Redis cannot be
//! reached: the node serves its own sessions with per-node limits, says so once in the log, in
//! `/readyz` and in `cluster_redis_up`, and publishes its whole presence again when Redis is back.
//!
//! What lives in Redis (keys under the `{sb}` hash tag share one slot, so the presence scripts
//! also run on a Redis Cluster):
//! - `{sb}:nodes`, a sorted set of nodes by their last heartbeat (Redis's clock);
//! - per node, `{sb}:n:<node>:u` (user → sessions), `:i` (user → oldest start and email) and
//!   `:c` (user → places under the session cap);
//! - `{sb}:users` (user → sessions on every node) and `{sb}:sessions`, kept by the scripts;
//! - `sb:rl:<scope>:<key>` GCRA buckets and `sb:ft:<scope>:<key>` failure throttles.
//!
//! Channels: `sb:u:<user>` carries a user's frames to the nodes holding their sessions (each node
//! subscribes while it holds one), `sb:revoke` every revocation, `{sb}:presence` every presence
//! change. docs/SCALING.md says why.

mod bus;
mod limits;
mod presence;
mod session_cap;
mod stops;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::interfaces::{ClientLike, EventInterface, LuaInterface};
use fred::prelude::{Builder, Client, Config, FromValue, ReconnectPolicy, Value};
use fred::types::scripts::Script;
use tokio::sync::watch;

pub use self::bus::RedisBus;
pub use self::limits::{RedisFailureThrottle, RedisLimiter};
pub use self::presence::RedisPresence;
pub use self::session_cap::RedisSessionCap;
pub use self::stops::RedisStops;
use crate::metrics::names::{CLUSTER_MESSAGES_TOTAL, CLUSTER_PUBSUB_UP, CLUSTER_REDIS_UP};

/// How long one command may take before the node treats Redis as unreachable for that call.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);

/// How long start-up waits for the first connection; without it the node starts on its own.
const FIRST_CONNECT: Duration = Duration::from_secs(3);

/// Pause between reconnection attempts, milliseconds.
const RECONNECT_DELAY_MS: u32 = 250;

/// The node's connections to Redis and its name there.
pub struct RedisLink {
    client: Client,
    subscriber: SubscriberClient,
    node: Arc<str>,
    /// Whether the node has said that Redis is unreachable (and not yet that it is back).
    down: AtomicBool,
    /// Whether something this node holds may be missing from Redis (a call failed or was not
    /// made): its next heartbeat publishes its whole state again.
    stale: AtomicBool,
    /// Whether the subscription connection is up (revocations and other nodes' frames arrive).
    pubsub_up: AtomicBool,
    /// Counts the subscription's returns after a loss; see [`RedisLink::resubscriptions`].
    resubscribed: watch::Sender<u64>,
}

/// A Redis call did not complete (unreachable, timed out, or refused).
#[derive(Debug, Clone, Copy)]
pub struct Unreachable;

impl RedisLink {
    /// Connects to `url` as `node`: one connection for commands, one for subscriptions, each
    /// reconnecting by itself. If Redis does not answer within a few seconds the node starts
    /// anyway, on its own, and joins when Redis comes.
    pub async fn connect(url: &str, node: String) -> Result<Arc<RedisLink>, String> {
        let mut config = Config::from_url(url).map_err(|e| format!("REDIS_URL: {}", e.details()))?;
        // Retry the first connection too, instead of failing start-up.
        config.fail_fast = false;
        let mut builder = Builder::from_config(config);
        builder
            .set_policy(ReconnectPolicy::new_constant(0, RECONNECT_DELAY_MS))
            .with_connection_config(|c| {
                c.connection_timeout = COMMAND_TIMEOUT;
                c.internal_command_timeout = COMMAND_TIMEOUT;
                c.max_command_attempts = 1;
            })
            .with_performance_config(|p| p.default_command_timeout = COMMAND_TIMEOUT);
        let client = builder.build().map_err(|e| format!("REDIS_URL: {}", e.details()))?;
        let subscriber =
            builder.build_subscriber_client().map_err(|e| format!("REDIS_URL: {}", e.details()))?;
        for direction in ["published", "received", "dropped"] {
            let _ = metrics::counter!(CLUSTER_MESSAGES_TOTAL, "direction" => direction);
        }
        let link = Arc::new(RedisLink {
            client,
            subscriber,
            node: node.into(),
            down: AtomicBool::new(false),
            stale: AtomicBool::new(false),
            pubsub_up: AtomicBool::new(false),
            resubscribed: watch::Sender::new(0),
        });
        // Subscriptions are made again after every reconnection (see `watch_subscriptions`),
        // which listens before the first connection: fred announces that one too.
        link.watch_subscriptions();
        link.client.connect();
        link.subscriber.connect();
        let connected = tokio::time::timeout(FIRST_CONNECT, link.client.wait_for_connect()).await;
        if !matches!(connected, Ok(Ok(()))) {
            link.went_down("no answer at start-up");
        } else {
            metrics::gauge!(CLUSTER_REDIS_UP).set(1.0);
            tracing::info!(node = %link.node, "joined the cluster through Redis");
        }
        link.watch_connection();
        Ok(link)
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether commands can be sent now.
    pub fn is_up(&self) -> bool {
        self.client.is_connected()
    }

    /// Whether this node's subscription to the cluster's channels is up: while it is down,
    /// revocations and other nodes' frames for this node's sockets are missed.
    pub fn pubsub_up(&self) -> bool {
        self.pubsub_up.load(Ordering::Acquire)
    }

    /// Changes each time the subscription is made again after it was lost: whatever was
    /// published meanwhile (a revocation among it) never reached this node, so what depends on
    /// it must be checked again.
    pub fn resubscriptions(&self) -> watch::Receiver<u64> {
        self.resubscribed.subscribe()
    }

    /// Follows the subscription connection: subscribes again after every reconnection, then
    /// says so through [`RedisLink::resubscriptions`]; `cluster_pubsub_up` follows its state.
    fn watch_subscriptions(self: &Arc<Self>) {
        let link = self.clone();
        let mut errors = self.subscriber.error_rx();
        let mut reconnects = self.subscriber.reconnect_rx();
        metrics::gauge!(CLUSTER_PUBSUB_UP).set(0.0);
        tokio::spawn(async move {
            let mut first = true;
            loop {
                tokio::select! {
                    error = errors.recv() => match error {
                        Ok((error, _)) => link.subscription_lost(error.details()),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => return,
                    },
                    server = reconnects.recv() => match server {
                        Ok(_) => {
                            if let Err(e) = link.subscriber.resubscribe_all().await {
                                link.subscription_lost(e.details());
                                continue;
                            }
                            link.pubsub_up.store(true, Ordering::Release);
                            metrics::gauge!(CLUSTER_PUBSUB_UP).set(1.0);
                            // The first connection is no return: nothing was missed before it.
                            if !std::mem::take(&mut first) {
                                tracing::info!(node = %link.node, "subscribed to the cluster again");
                                link.resubscribed.send_modify(|returns| *returns += 1);
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => return,
                    },
                }
            }
        });
    }

    fn subscription_lost(&self, why: &str) {
        metrics::gauge!(CLUSTER_PUBSUB_UP).set(0.0);
        if self.pubsub_up.swap(false, Ordering::AcqRel) {
            tracing::warn!(node = %self.node, why, "the subscription to the cluster is down: revocations are checked again when it is back");
        }
    }

    /// Runs `script`, loading it first if Redis does not know it (a fresh or restarted Redis).
    /// Fails at once while Redis is unreachable, so callers fall back without waiting.
    async fn eval<R: FromValue>(
        &self,
        script: &Script,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> Result<R, Unreachable> {
        if !self.is_up() {
            self.went_down("not connected");
            return Err(Unreachable);
        }
        let result = match self.client.evalsha(script.sha1().clone(), keys.clone(), args.clone()).await {
            Err(e) if e.details().starts_with("NOSCRIPT") => match script.load(&self.client).await {
                Ok(()) => self.client.evalsha(script.sha1().clone(), keys, args).await,
                Err(e) => Err(e),
            },
            result => result,
        };
        result.map_err(|e| {
            self.failed(&e);
            Unreachable
        })
    }

    /// Whether something may be missing from Redis since the last call; clears the mark.
    fn take_stale(&self) -> bool {
        self.stale.swap(false, Ordering::AcqRel)
    }

    /// Records a failed call: a refusal by Redis is a bug to log; a lost connection is an outage.
    fn failed(&self, error: &fred::error::Error) {
        if self.is_up() && !matches!(error.kind(), fred::error::ErrorKind::Timeout) {
            self.stale.store(true, Ordering::Release);
            tracing::error!(error = %error, "a Redis command failed");
        } else {
            self.went_down(error.details());
        }
    }

    /// Says once per outage that Redis cannot be reached.
    fn went_down(&self, why: &str) {
        self.stale.store(true, Ordering::Release);
        metrics::gauge!(CLUSTER_REDIS_UP).set(0.0);
        if !self.down.swap(true, Ordering::AcqRel) {
            tracing::warn!(node = %self.node, why, "Redis is unreachable: this node serves its own sessions with per-node limits until it is back");
        }
    }

    /// Follows the command connection: an error while it was up starts an outage; a
    /// reconnection ends it (the presence seam then publishes the node's state again).
    fn watch_connection(self: &Arc<Self>) {
        let link = self.clone();
        let mut errors = self.client.error_rx();
        let mut reconnects = self.client.reconnect_rx();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    error = errors.recv() => match error {
                        Ok((error, _)) => link.went_down(error.details()),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => return,
                    },
                    server = reconnects.recv() => match server {
                        Ok(_) => link.came_back(),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => return,
                    },
                }
            }
        });
    }

    fn came_back(&self) {
        metrics::gauge!(CLUSTER_REDIS_UP).set(1.0);
        if self.down.swap(false, Ordering::AcqRel) {
            tracing::info!(node = %self.node, "Redis is back: this node rejoins the cluster");
        }
    }

    /// Counts messages this node sent to or took from the channels.
    fn count(direction: &'static str, messages: usize) {
        metrics::counter!(CLUSTER_MESSAGES_TOTAL, "direction" => direction).increment(messages as u64);
    }
}

/// A string argument of a script.
fn arg(value: impl Into<String>) -> Value {
    Value::String(value.into().into())
}

/// A number argument of a script.
fn num(value: impl Into<i64>) -> Value {
    Value::Integer(value.into())
}
