//! Stops relayed between nodes over Redis: one channel, `sb:stop`, that every node listens to;
//! the node running the generation stops it, the others find nothing to stop. A stop published
//! while Redis is down is lost, as the client's `chat.stop` would be on a dropped connection: the
//! user can press Stop again.

use std::sync::Arc;

use fred::interfaces::{EventInterface, PubsubInterface};
use fred::prelude::Value;
use serde::{Deserialize, Serialize};

use super::RedisLink;
use crate::seams::stops::{OnStop, StopRelay};

/// The channel of relayed stops.
const STOP_CHANNEL: &str = "sb:stop";

#[derive(Debug, Serialize, Deserialize)]
struct StopMessage {
    user_id: String,
    message_id: String,
}

/// The relay of a node in a cluster.
pub struct RedisStops {
    link: Arc<RedisLink>,
}

impl RedisStops {
    /// Listens for stops on `link`, handing each to `on_stop`, and relays this node's.
    pub fn start(link: Arc<RedisLink>, on_stop: OnStop) -> RedisStops {
        let listening = link.clone();
        tokio::spawn(async move {
            let mut messages = listening.subscriber.message_rx();
            // Tracked by the subscriber, so made again after every reconnection.
            let _ = listening.subscriber.subscribe(STOP_CHANNEL).await;
            loop {
                let message = match messages.recv().await {
                    Ok(message) => message,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                };
                if message.channel != STOP_CHANNEL {
                    continue;
                }
                if let Some(stop) = message
                    .value
                    .as_bytes()
                    .and_then(|bytes| serde_json::from_slice::<StopMessage>(bytes).ok())
                {
                    on_stop(&stop.user_id, &stop.message_id);
                }
            }
        });
        RedisStops { link }
    }
}

impl StopRelay for RedisStops {
    fn relay(&self, user_id: &str, message_id: &str) {
        let stop = StopMessage { user_id: user_id.to_owned(), message_id: message_id.to_owned() };
        let Ok(message) = serde_json::to_vec(&stop) else { return };
        let link = self.link.clone();
        tokio::spawn(async move {
            let published: Result<i64, _> =
                link.client.publish(STOP_CHANNEL, Value::Bytes(message.into())).await;
            if let Err(e) = published {
                link.failed(&e);
            }
        });
    }
}
