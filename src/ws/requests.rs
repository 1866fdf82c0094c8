//! The requests a session hands off to a task: anything that touches storage, credits, the
//! assistant or the image generator. Each is one call to a service; its answer goes back to the
//! asking session, its events to every session of the user through the bus, and its error
//! becomes an error frame.

use std::sync::Arc;

use actix::{Message, Recipient};
use actix_web::web::Data;

use super::error::RequestError;
use super::protocol::{ClientMessage, ServerMessage};
use crate::seams::bus::Bus;
use crate::services::conversation::{Caller, ChatRequest, ImageRequest};
use crate::services::paging::PageLimit;
use crate::services::text::ChatTitle;
use crate::services::{Event, Notify};
use crate::state::AppState;
use crate::store::Role;
use crate::views::{ChatView, MessageView};

/// A frame produced by a request's task for the asking session only.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reply(pub ServerMessage, pub Option<Arc<str>>);

/// Where a request's task sends its answer: the asking session.
#[derive(Clone)]
pub struct ReplyTo(pub Recipient<Reply>);

impl ReplyTo {
    /// Queues `message` (with `reply_to`) for the session; a session that has ended drops it.
    pub fn send(&self, message: ServerMessage, reply_to: Option<Arc<str>>) {
        self.0.do_send(Reply(message, reply_to));
    }
}

/// One request handed off by a session.
pub struct Request {
    /// Shared state.
    pub state: Data<AppState>,
    /// Who asked.
    pub user_id: String,
    /// Their role when the session opened (which models they may use).
    pub role: Role,
    /// The asking session.
    pub session: ReplyTo,
    /// The request's `id`.
    pub reply_to: Option<Arc<str>>,
}

impl Request {
    fn reply(&self, message: ServerMessage) {
        self.session.send(message, self.reply_to.clone());
    }

    /// Events of this request, marked with its `id`, for every session of the user.
    fn events(&self) -> Frames {
        Frames { bus: self.state.realtime.bus.clone(), reply_to: self.reply_to.clone() }
    }
}

/// Turns service [`Event`]s into frames for every session of the user, through the bus; the
/// frames of a request carry its `reply_to`.
pub struct Frames {
    bus: Arc<dyn Bus>,
    reply_to: Option<Arc<str>>,
}

impl Frames {
    /// Events that answer no request (`credits.updated` after a grant, for example).
    pub fn unrequested(bus: Arc<dyn Bus>) -> Frames {
        Frames { bus, reply_to: None }
    }
}

impl Notify for Frames {
    fn notify(&self, user_id: &str, event: Event) {
        let message = ServerMessage::from(event);
        crate::metrics::record_ws_message("out", message.kind());
        self.bus.to_user(user_id, message.encode(self.reply_to.as_deref()).into());
    }
}

/// Runs one handed-off request and answers errors to the asking session.
pub async fn handle(request: Request, message: ClientMessage) {
    let result = match limit_free(&request, &message).await {
        Ok(()) => run(&request, message).await,
        Err(refused) => Err(refused),
    };
    if let Err(e) = result {
        request.reply(e.frame());
    }
}

/// Counts a free request that touches storage against the user's free budget, so no client
/// can make the server read or write without bound for nothing. A paid request with an
/// `idempotency_key` counts too: a replay of its key is answered from storage without a charge or
/// the paid limit, so it is free work like any read.
async fn limit_free(request: &Request, message: &ClientMessage) -> Result<(), RequestError> {
    let free = match message {
        ClientMessage::CreditsGet {}
        | ClientMessage::ChatCreate { .. }
        | ClientMessage::ChatList { .. }
        | ClientMessage::ChatHistory { .. } => true,
        ClientMessage::ChatSend { idempotency_key, .. }
        | ClientMessage::ImageGenerate { idempotency_key, .. } => idempotency_key.is_some(),
        ClientMessage::Ping {}
        | ClientMessage::ChatStop { .. }
        | ClientMessage::PresenceSubscribe {}
        | ClientMessage::PresenceUnsubscribe {} => false,
    };
    if !free {
        return Ok(());
    }
    let decision = request.state.ws_free_limit.check(&request.user_id).await;
    if decision.allowed {
        return Ok(());
    }
    crate::metrics::record_rate_limited("ws_free");
    Err(RequestError::FreeLimit { retry_after: decision.retry_after })
}

async fn run(request: &Request, message: ClientMessage) -> Result<(), RequestError> {
    let (state, user_id) = (&request.state, request.user_id.as_str());
    let caller = Caller { user_id, role: request.role };
    let conversation = &state.conversation;
    match message {
        ClientMessage::CreditsGet {} => {
            let credits = state.credits.balance(user_id).await?;
            request.reply(ServerMessage::Credits { credits });
        }
        ClientMessage::ChatCreate { title } => {
            // A missing or blank title is the default one.
            let title = title.filter(|t| !t.trim().is_empty());
            let title = title
                .map(|t| ChatTitle::parse(&t))
                .transpose()
                .map_err(|problem| RequestError::Invalid(format!("title {problem}")))?;
            let chat = conversation.create_chat(user_id, title).await?;
            request.reply(ServerMessage::ChatCreated { chat: ChatView::from(&chat) });
        }
        ClientMessage::ChatList { before, limit } => {
            let page = conversation.chats(user_id, before.as_deref(), page_limit(limit)?).await?;
            let chats = page.items.iter().map(ChatView::from).collect();
            request.reply(ServerMessage::ChatList { chats, next_before: page.next_before });
        }
        ClientMessage::ChatHistory { chat_id, before, limit } => {
            let limit = page_limit(limit)?;
            let messages = conversation.history(user_id, &chat_id, before.as_deref(), limit).await?;
            let messages = messages
                .iter()
                .map(|(message, seq)| MessageView { seq: *seq, ..MessageView::from(message) })
                .collect();
            request.reply(ServerMessage::ChatHistory { chat_id, messages });
        }
        ClientMessage::ChatSend { chat_id, content, model, idempotency_key } => {
            let turn = ChatRequest { chat_id, content, model, idempotency_key };
            let replayed = conversation.send(caller, turn, &request.events()).await?;
            // A retry's answer goes to the asking session alone.
            if let Some(event) = replayed {
                request.reply(ServerMessage::from(event));
            }
        }
        ClientMessage::ChatStop { message_id } => {
            // A reply that ended is answered with its chat.done again; a running one's own
            // chat.done follows for every session.
            if let Some(event) = conversation.stop(caller, &message_id).await? {
                request.reply(ServerMessage::from(event));
            }
        }
        ClientMessage::ImageGenerate { prompt, width, height, model, idempotency_key } => {
            let image = ImageRequest { prompt, width, height, model, idempotency_key };
            if let Some(event) = conversation.generate_image(caller, image, &request.events()).await? {
                request.reply(ServerMessage::from(event));
            }
        }
        // Answered by the session itself.
        ClientMessage::Ping {}
        | ClientMessage::PresenceSubscribe {}
        | ClientMessage::PresenceUnsubscribe {} => {}
    }
    Ok(())
}

fn page_limit(limit: Option<i64>) -> Result<PageLimit, RequestError> {
    PageLimit::new(limit).map_err(|problem| RequestError::Invalid(format!("limit {problem}")))
}
