//! Frames from the server: [`ServerMessage`], built from domain events and views, and its
//! encoding with `reply_to`.

use serde::Serialize;

use super::{ErrorCode, frames};
use crate::seams::presence::PresenceEvent;
use crate::services::Event;
use crate::services::conversation::RunningGeneration;
use crate::store::Role;
use crate::views::{ChatView, ImageView, MessageView, PresenceSnapshotView, PresenceUserView, UsageView};

/// A user as the `hello` frame shows it.
#[derive(Debug, Clone, Serialize)]
pub struct HelloUser {
    /// User id.
    pub id: String,
    /// Email.
    pub email: String,
    /// `user` or `admin`.
    pub role: Role,
}

/// A generation running for the user, as `hello` lists it (docs/API.md §8).
#[derive(Debug, Clone, Serialize)]
pub struct GenerationView {
    /// `chat` or `image`.
    pub kind: &'static str,
    /// A chat reply's chat.
    pub chat_id: Option<String>,
    /// The reply or image being made.
    pub message_id: String,
    /// A chat reply: the `seq` of its last delta so far.
    pub seq: u64,
}

frames! {
    /// A frame from the server.
    #[derive(Debug, Clone, Serialize)]
    #[serde(tag = "type")]
    pub enum ServerMessage {
        /// First frame of every connection.
        "hello" => Hello {
            /// This connection's id.
            session_id: String,
            /// The server node this connection reached.
            node: String,
            /// Who is connected.
            user: HelloUser,
            /// Balance now.
            credits: i64,
            /// Server ping interval.
            heartbeat_ms: u64,
            /// Largest accepted frame.
            max_message_bytes: usize,
            /// The user's generations running now, on every node.
            generations: Vec<GenerationView>,
        },
        /// Answer to `ping`.
        "pong" => Pong,
        /// Answer to `credits.get`.
        "credits" => Credits {
            /// Balance now.
            credits: i64,
        },
        /// A chat was created.
        "chat.created" => ChatCreated {
            /// The chat.
            chat: ChatView,
        },
        /// The user's chats.
        "chat.list" => ChatList {
            /// Most recently active first.
            chats: Vec<ChatView>,
            /// Pass as `before` for the next page; null on the last page.
            next_before: Option<String>,
        },
        /// Messages of a chat.
        "chat.history" => ChatHistory {
            /// Which chat.
            chat_id: String,
            /// Oldest first.
            messages: Vec<MessageView>,
        },
        /// The user's message was stored.
        "chat.message" => ChatMessage {
            /// Which chat.
            chat_id: String,
            /// The message.
            message: MessageView,
        },
        /// The assistant's reply has started: its hold is made and it is stored as streaming.
        "chat.started" => ChatStarted {
            /// Which chat.
            chat_id: String,
            /// The reply's message id: the generation `chat.stop` and `chat.resume` name.
            message_id: String,
            /// The chat model writing it.
            model: String,
            /// Credits held for it (its worst case).
            held: i64,
            /// Balance after the hold.
            credits: i64,
        },
        "chat.delta" => ChatDelta {
            /// Which chat.
            chat_id: String,
            /// The reply's message id.
            message_id: String,
            /// The delta's place in the reply: 1, 2, 3…
            seq: u64,
            /// The next piece of text.
            delta: String,
        },
        /// The assistant's reply has ended (complete, stopped or failed: its `status`), is stored
        /// and its hold settled.
        "chat.done" => ChatDone {
            /// Which chat.
            chat_id: String,
            /// The reply, with its status, model, charge and usage.
            message: MessageView,
            /// Balance now.
            credits: i64,
            /// Credits charged for it.
            charged: i64,
            /// The tokens it used.
            usage: Option<UsageView>,
        },
        /// An image was generated.
        "image.created" => ImageCreated {
            /// The image.
            image: ImageView,
            /// Balance now.
            credits: i64,
            /// Credits charged for it.
            charged: i64,
        },
        /// Who is online (answer to `presence.subscribe`).
        "presence.snapshot" => PresenceSnapshot(PresenceSnapshotView),
        /// A user opened their first session.
        "presence.joined" => PresenceJoined(PresenceUserView),
        /// A user closed their last session.
        "presence.left" => PresenceLeft {
            /// Who.
            user_id: String,
            /// Their email.
            email: String,
            /// `closed`, `timeout`, `revoked`, `slow`, `shutdown` or (several nodes) `node_lost`.
            reason: &'static str,
        },
        /// A user's session count changed.
        "presence.sessions" => PresenceSessions {
            /// Who.
            user_id: String,
            /// Open sessions now.
            sessions: usize,
        },
        /// Answer to `presence.unsubscribe`.
        "presence.unsubscribed" => PresenceUnsubscribed,
        /// The balance changed.
        "credits.updated" => CreditsUpdated {
            /// Balance now.
            credits: i64,
        },
        /// The session's credential was revoked; close 4001 follows.
        "session.revoked" => SessionRevoked {
            /// Why.
            reason: String,
        },
        /// Something went wrong with a request.
        "error" => Error {
            /// Machine code.
            code: ErrorCode,
            /// Sentence for people.
            message: String,
            /// For `rate_limited`: when to retry.
            #[serde(skip_serializing_if = "Option::is_none")]
            retry_after_ms: Option<u64>,
            /// For `insufficient_credits`: what the request needs.
            #[serde(skip_serializing_if = "Option::is_none")]
            needed: Option<i64>,
            /// For `insufficient_credits`: the balance.
            #[serde(skip_serializing_if = "Option::is_none")]
            balance: Option<i64>,
            /// For `quota_exceeded` by the daily limit: when the day ends (midnight UTC).
            #[serde(skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
            resets_at: Option<time::OffsetDateTime>,
        },
    }
}

impl From<&RunningGeneration> for GenerationView {
    fn from(g: &RunningGeneration) -> GenerationView {
        GenerationView {
            kind: g.kind.as_str(),
            chat_id: g.chat_id.clone(),
            message_id: g.message_id.clone(),
            seq: g.seq,
        }
    }
}

impl From<Event> for ServerMessage {
    fn from(event: Event) -> ServerMessage {
        match event {
            Event::CreditsUpdated { credits } => ServerMessage::CreditsUpdated { credits },
            Event::ChatMessage { chat_id, message } => {
                ServerMessage::ChatMessage { chat_id, message: MessageView::from(&message) }
            }
            Event::ChatStarted { chat_id, message_id, model, held, credits } => {
                ServerMessage::ChatStarted { chat_id, message_id, model, held, credits }
            }
            Event::ChatDelta { chat_id, message_id, seq, delta } => {
                ServerMessage::ChatDelta { chat_id, message_id, seq, delta }
            }
            Event::ChatDone { chat_id, message, credits } => ServerMessage::ChatDone {
                chat_id,
                charged: message.charged.unwrap_or(0),
                usage: message.usage.map(UsageView::from),
                message: MessageView::from(&message),
                credits,
            },
            Event::ImageCreated { image, credits } => ServerMessage::ImageCreated {
                charged: image.charged.unwrap_or(0),
                image: ImageView::from(&image),
                credits,
            },
        }
    }
}

impl From<PresenceEvent> for ServerMessage {
    fn from(event: PresenceEvent) -> ServerMessage {
        match event {
            PresenceEvent::Joined(user) => ServerMessage::PresenceJoined(PresenceUserView::from(&user)),
            PresenceEvent::Left { user_id, email, reason } => ServerMessage::PresenceLeft {
                user_id: user_id.to_string(),
                email: email.to_string(),
                reason: reason.as_str(),
            },
            PresenceEvent::Sessions { user_id, sessions } => {
                ServerMessage::PresenceSessions { user_id: user_id.to_string(), sessions }
            }
        }
    }
}

impl ServerMessage {
    /// The JSON text of this frame, with `reply_to` when the frame answers a request with an id.
    pub fn encode(&self, reply_to: Option<&str>) -> String {
        #[derive(Serialize)]
        struct Envelope<'a> {
            #[serde(flatten)]
            message: &'a ServerMessage,
            #[serde(skip_serializing_if = "Option::is_none")]
            reply_to: Option<&'a str>,
        }
        // Plain structs of strings and numbers always serialise.
        serde_json::to_string(&Envelope { message: self, reply_to }).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_frames_carry_type_and_reply_to() {
        let text = ServerMessage::Credits { credits: 7 }.encode(Some("r1"));
        assert_eq!(text, r#"{"type":"credits","credits":7,"reply_to":"r1"}"#);
        let error = ServerMessage::Error {
            code: ErrorCode::NotFound,
            message: "Not found".into(),
            retry_after_ms: None,
            needed: None,
            balance: None,
            resets_at: None,
        };
        assert_eq!(error.encode(None), r#"{"type":"error","code":"not_found","message":"Not found"}"#);
    }
}
