//! Frames from the client: [`ClientMessage`] and [`parse`], which takes a text frame apart into
//! its `id` and message, describing what was wrong without echoing input.

use serde::Deserialize;
use serde_json::Value;

use super::{MAX_ID_CHARS, frames};

frames! {
    /// A frame from the client, after its `id` was taken off. Variants without fields are empty
    /// structs, not unit variants, because serde's `deny_unknown_fields` does not reach unit
    /// variants of an internally tagged enum (`{"type":"ping","x":1}` would pass).
    #[derive(Debug, Clone, PartialEq, Deserialize)]
    #[serde(tag = "type", deny_unknown_fields)]
    pub enum ClientMessage {
        /// Liveness check.
        "ping" => Ping {},
        /// The balance now.
        "credits.get" => CreditsGet {},
        /// Start a chat.
        "chat.create" => ChatCreate {
            /// Optional title (default "New chat").
            #[serde(default)]
            title: Option<String>,
        },
        /// The user's chats, a page at a time.
        "chat.list" => ChatList {
            /// The `next_before` of the previous page.
            #[serde(default)]
            before: Option<String>,
            /// At most this many (1 to 100, default 50).
            #[serde(default)]
            limit: Option<i64>,
        },
        /// Messages of a chat, oldest first.
        "chat.history" => ChatHistory {
            /// Which chat.
            chat_id: String,
            /// Only messages before this message id.
            #[serde(default)]
            before: Option<String>,
            /// At most this many (1 to 100, default 50).
            #[serde(default)]
            limit: Option<i64>,
        },
        /// Send a message (paid) and stream the assistant's reply.
        "chat.send" => ChatSend {
            /// Which chat.
            chat_id: String,
            /// The message.
            content: String,
            /// The chat model (`GET /api/models`); the default without one.
            #[serde(default)]
            model: Option<String>,
            /// Retries with the same key (within 24 hours) are charged once and answered with
            /// the first request's reply.
            #[serde(default)]
            idempotency_key: Option<String>,
        },
        /// Stop a running reply, from any session of its user.
        "chat.stop" => ChatStop {
            /// The reply's message id (`chat.started`).
            message_id: String,
        },
        /// Generate an image (paid).
        "image.generate" => ImageGenerate {
            /// What to draw.
            prompt: String,
            /// Width in pixels (256 to 1024, default 512).
            #[serde(default)]
            width: Option<u32>,
            /// Height in pixels (256 to 1024, default 512).
            #[serde(default)]
            height: Option<u32>,
            /// The image model (`GET /api/models`); the default without one.
            #[serde(default)]
            model: Option<String>,
            /// Retries with the same key (within 24 hours) are charged once and answered with
            /// the first request's image.
            #[serde(default)]
            idempotency_key: Option<String>,
        },
        /// Admins: follow who is online.
        "presence.subscribe" => PresenceSubscribe {},
        /// Stop following presence.
        "presence.unsubscribe" => PresenceUnsubscribe {},
    }
}

/// Why a text frame could not be read, with the `id` when it was readable.
#[derive(Debug, Clone, PartialEq)]
pub struct BadFrame {
    /// The client's `id`, to echo as `reply_to`.
    pub id: Option<String>,
    /// What was wrong (no input echoed).
    pub problem: String,
}

/// Parses a text frame into its `id` and message.
pub fn parse(text: &str) -> Result<(Option<String>, ClientMessage), BadFrame> {
    let bad = |id: Option<String>, problem: &str| BadFrame { id, problem: problem.to_owned() };
    let mut value: Value = serde_json::from_str(text).map_err(|_| bad(None, "frame is not valid JSON"))?;
    let object = value.as_object_mut().ok_or_else(|| bad(None, "frame must be a JSON object"))?;
    let id = match object.remove("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if id.chars().count() <= MAX_ID_CHARS => Some(id),
        Some(_) => return Err(bad(None, "id must be a string of at most 64 characters")),
    };
    if !object.get("type").is_some_and(Value::is_string) {
        return Err(bad(id, "type must be a string"));
    }
    match serde_json::from_value::<ClientMessage>(value) {
        Ok(message) => Ok((id, message)),
        Err(e) => {
            let text = e.to_string();
            let problem = if text.starts_with("unknown variant") {
                "unknown message type".to_owned()
            } else {
                // serde's text names fields and expected types; it echoes no string values
                // except unknown variant names, handled above.
                text.split(" at line").next().unwrap_or("bad field").to_owned()
            };
            Err(BadFrame { id, problem })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_with_and_without_id() {
        let (id, msg) = parse(r#"{"type":"chat.send","id":"a1","chat_id":"c","content":"hi"}"#).unwrap();
        assert_eq!(id.as_deref(), Some("a1"));
        assert_eq!(
            msg,
            ClientMessage::ChatSend {
                chat_id: "c".into(),
                content: "hi".into(),
                model: None,
                idempotency_key: None
            }
        );
        assert_eq!(parse(r#"{"type":"ping"}"#).unwrap(), (None, ClientMessage::Ping {}));
    }

    #[test]
    fn bad_frames_are_described_and_keep_their_id() {
        let cases = [
            ("not JSON", "{", None),
            ("array", "[]", None),
            ("unknown type", r#"{"type":"nope","id":"x"}"#, Some("x")),
            ("missing field", r#"{"type":"chat.send","id":"y","chat_id":"c"}"#, Some("y")),
            ("wrong type", r#"{"type":"chat.send","chat_id":5,"content":"a"}"#, None),
            ("unknown field", r#"{"type":"chat.list","id":"z","admin":true}"#, Some("z")),
            ("long id", &format!(r#"{{"type":"ping","id":"{}"}}"#, "i".repeat(65)), None),
            ("operator object", r#"{"type":"chat.history","chat_id":{"$gt":""}}"#, None),
        ];
        for (case, text, id) in cases {
            let err = parse(text).expect_err(case);
            assert_eq!(err.id.as_deref(), id, "{case}");
            assert!(!err.problem.is_empty(), "{case}");
        }
    }
}
