//! Stopping a reply that runs on another node (docs/API.md §5 `chat.stop`): the node that took the
//! `chat.stop` finds the reply still streaming in storage but not among its own generations, and
//! relays the stop; the node running it stops it as if asked itself, and its `chat.done` reaches
//! every session of the user through the bus. In one process there is no other node to ask.

use std::sync::Arc;

/// What a node does with a stop relayed to it: stop `user_id`'s generation `message_id` if it
/// runs there.
pub type OnStop = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// Relays stops to the other nodes.
pub trait StopRelay: Send + Sync + 'static {
    /// Asks every other node to stop `user_id`'s generation `message_id`.
    fn relay(&self, user_id: &str, message_id: &str);
}

/// One process: nothing runs elsewhere.
pub struct LocalStops;

impl StopRelay for LocalStops {
    fn relay(&self, _user_id: &str, _message_id: &str) {}
}
