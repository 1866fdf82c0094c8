//! The generations running on this node: chat replies and images being made, each a job of the
//! node, not of the socket that asked for it. Each is registered while it runs, with what a stop,
//! a resumed client and the gauges need: whose it is, the text so far and its last `seq`, and the
//! signal that stops it. Stopping is the upstream request being dropped: the generation's task
//! selects on the signal beside the upstream stream, and dropping the stream drops the request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

/// What kind of generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenerationKind {
    /// A chat reply.
    Chat,
    /// An image.
    Image,
}

impl GenerationKind {
    /// The wire and metric spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            GenerationKind::Chat => "chat",
            GenerationKind::Image => "image",
        }
    }
}

/// A running generation as others may see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningGeneration {
    /// Whose.
    pub user_id: String,
    /// Chat replies: their chat.
    pub chat_id: Option<String>,
    /// The assistant message or image being made.
    pub message_id: String,
    /// Chat or image.
    pub kind: GenerationKind,
    /// The reply so far (empty for an image).
    pub content: String,
    /// The `seq` of the last delta `content` includes (0 before the first).
    pub seq: u64,
}

struct Entry {
    generation: RunningGeneration,
    held: i64,
    stop: watch::Sender<bool>,
}

/// The generations running on this node.
#[derive(Clone, Default)]
pub struct Generations {
    running: Arc<Mutex<HashMap<String, Entry>>>,
}

/// A running generation's hold on its registration: it records the deltas, hears a stop, and
/// leaves the registry when dropped (whatever ended the generation).
pub struct Registration {
    generations: Generations,
    message_id: String,
    stop: watch::Receiver<bool>,
}

impl Generations {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // Every change is a single statement, so a panic elsewhere cannot leave it half-made.
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a generation that holds `held` credits.
    pub fn start(&self, generation: RunningGeneration, held: i64) -> Registration {
        let (stop, stopped) = watch::channel(false);
        let message_id = generation.message_id.clone();
        self.map().insert(message_id.clone(), Entry { generation, held, stop });
        self.update_gauges();
        Registration { generations: self.clone(), message_id, stop: stopped }
    }

    /// Stops `user_id`'s chat reply `message_id` if it runs here; false when it does not (or is
    /// another user's, or an image: images are not stopped).
    pub fn stop(&self, user_id: &str, message_id: &str) -> bool {
        let map = self.map();
        match map.get(message_id) {
            Some(entry)
                if entry.generation.user_id == user_id && entry.generation.kind == GenerationKind::Chat =>
            {
                let _ = entry.stop.send(true);
                true
            }
            _ => false,
        }
    }

    /// `user_id`'s generation `message_id`, if it runs here.
    pub fn get(&self, user_id: &str, message_id: &str) -> Option<RunningGeneration> {
        self.map().get(message_id).filter(|e| e.generation.user_id == user_id).map(|e| e.generation.clone())
    }

    /// Every generation of `user_id` running here.
    pub fn of_user(&self, user_id: &str) -> Vec<RunningGeneration> {
        self.map()
            .values()
            .filter(|e| e.generation.user_id == user_id)
            .map(|e| e.generation.clone())
            .collect()
    }

    /// How many generations run here, and the credits they hold.
    pub fn totals(&self) -> (usize, i64) {
        let map = self.map();
        (map.len(), map.values().map(|e| e.held).sum())
    }

    fn update_gauges(&self) {
        let (running, held) = self.totals();
        crate::metrics::set_generations_running(running, held);
    }
}

impl Registration {
    /// Appends a delta to the text so far; answers its `seq`.
    pub fn delta(&self, text: &str) -> u64 {
        let mut map = self.generations.map();
        match map.get_mut(&self.message_id) {
            Some(entry) => {
                entry.generation.content.push_str(text);
                entry.generation.seq += 1;
                entry.generation.seq
            }
            None => 0,
        }
    }

    /// Resolves once the generation is asked to stop (never, if it is not).
    pub async fn stopped(&mut self) {
        if *self.stop.borrow_and_update() {
            return;
        }
        while self.stop.changed().await.is_ok() {
            if *self.stop.borrow_and_update() {
                return;
            }
        }
        // The registry dropped the sender: nobody can stop it any more.
        std::future::pending::<()>().await;
    }

    /// The text so far and its `seq`.
    pub fn so_far(&self) -> (String, u64) {
        let map = self.generations.map();
        map.get(&self.message_id)
            .map_or((String::new(), 0), |e| (e.generation.content.clone(), e.generation.seq))
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.generations.map().remove(&self.message_id);
        self.generations.update_gauges();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(user: &str, id: &str) -> RunningGeneration {
        RunningGeneration {
            user_id: user.into(),
            chat_id: Some("c".into()),
            message_id: id.into(),
            kind: GenerationKind::Chat,
            content: String::new(),
            seq: 0,
        }
    }

    #[tokio::test]
    async fn a_generation_counts_its_deltas_hears_its_own_users_stop_and_leaves_when_dropped() {
        let generations = Generations::default();
        let mut running = generations.start(reply("ada", "m1"), 7);
        assert_eq!((running.delta("Hel"), running.delta("lo")), (1, 2));
        assert_eq!(running.so_far(), ("Hello".to_owned(), 2));
        assert_eq!(generations.totals(), (1, 7));
        assert!(!generations.stop("eve", "m1"), "another user cannot stop it");
        assert!(generations.stop("ada", "m1"));
        tokio::time::timeout(std::time::Duration::from_secs(1), running.stopped()).await.expect("stopped");
        assert_eq!(generations.get("ada", "m1").map(|g| g.seq), Some(2));
        drop(running);
        assert_eq!(generations.totals(), (0, 0), "gone once it ends");
        assert!(!generations.stop("ada", "m1"), "an ended generation is not running");
    }
}
