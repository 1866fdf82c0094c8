//! The requests a session hands off to a task: anything that touches storage, credits, the
//! assistant or the image generator. Answers go back to the asking session ([`Reply`]); chat
//! and image events go to every session of the user.

use std::sync::Arc;

use actix::Recipient;
use actix_web::web::Data;
use futures_util::StreamExt;

use super::protocol::{ChatView, ClientMessage, ErrorCode, ImageView, MessageView, ServerMessage};
use super::session::Reply;
use crate::assistant::{ChatTurn, TurnRole};
use crate::images;
use crate::startup::AppState;
use crate::store::ledger::{self, CreditChange, CreditError};
use crate::store::{Chat, ChatMessage, Image, MessageRole, ServiceType, StoreError};

/// Longest chat message, characters.
const MAX_CONTENT_CHARS: usize = 16_000;
/// Longest image prompt, characters.
const MAX_PROMPT_CHARS: usize = 1_000;
/// Longest chat title, characters.
const MAX_TITLE_CHARS: usize = 200;
/// Messages of context sent to the assistant.
const CONTEXT_MESSAGES: i64 = 20;

/// One request handed off by a session.
pub struct Request {
    /// Shared state.
    pub state: Data<AppState>,
    /// Who asked.
    pub user_id: String,
    /// The asking session.
    pub session: Recipient<Reply>,
    /// The request's `id`.
    pub reply_to: Option<Arc<str>>,
}

impl Request {
    fn reply(&self, message: ServerMessage) {
        self.session.do_send(Reply(message, self.reply_to.clone()));
    }

    fn push(&self, message: &ServerMessage) {
        self.state.realtime.push(&self.user_id, message, self.reply_to.as_deref());
    }
}

/// Why a request failed, as the client will be told.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// Bad field.
    #[error("{0}")]
    Invalid(String),
    /// Balance below the price.
    #[error("Not enough credits: this costs {price} and the balance is {balance}")]
    InsufficientCredits {
        /// The price.
        price: i64,
        /// The balance.
        balance: i64,
    },
    /// Too many paid messages.
    #[error("Too many paid messages; retry in {retry_after_ms} ms")]
    RateLimited {
        /// When to retry.
        retry_after_ms: u64,
    },
    /// No such thing, or not the user's.
    #[error("Not found")]
    NotFound,
    /// A per-user cap on stored things (chats) is reached.
    #[error("{0}")]
    QuotaExceeded(String),
    /// Storage or an upstream service failed.
    #[error("{0}")]
    Unavailable(&'static str),
    /// A bug.
    #[error("Internal error")]
    Internal(String),
}

impl WsError {
    fn into_message(self) -> ServerMessage {
        let (code, retry_after_ms) = match &self {
            WsError::Invalid(_) => (ErrorCode::InvalidMessage, None),
            WsError::InsufficientCredits { .. } => (ErrorCode::InsufficientCredits, None),
            WsError::RateLimited { retry_after_ms } => (ErrorCode::RateLimited, Some(*retry_after_ms)),
            WsError::NotFound => (ErrorCode::NotFound, None),
            WsError::QuotaExceeded(_) => (ErrorCode::QuotaExceeded, None),
            WsError::Unavailable(_) => (ErrorCode::Unavailable, None),
            WsError::Internal(cause) => {
                tracing::error!(%cause, "internal error in a WebSocket request");
                (ErrorCode::Internal, None)
            }
        };
        ServerMessage::Error { code, message: self.to_string(), retry_after_ms }
    }
}

impl From<StoreError> for WsError {
    fn from(e: StoreError) -> WsError {
        match e {
            StoreError::Unavailable(cause) => {
                tracing::warn!(%cause, "storage unavailable");
                WsError::Unavailable("Storage is unavailable; try again")
            }
            other => WsError::Internal(other.to_string()),
        }
    }
}

/// Runs one handed-off request and answers errors to the asking session.
pub async fn handle(request: Request, message: ClientMessage) {
    let result = match limit_free(&request, &message).await {
        Err(refused) => Err(refused),
        Ok(()) => run(&request, message).await,
    };
    if let Err(e) = result {
        request.reply(e.into_message());
    }
}

/// Counts a free request that touches storage against the user's free budget, so no client
/// can make the server read or write without bound for nothing.
async fn limit_free(request: &Request, message: &ClientMessage) -> Result<(), WsError> {
    let free = matches!(
        message,
        ClientMessage::CreditsGet {}
            | ClientMessage::ChatCreate { .. }
            | ClientMessage::ChatList {}
            | ClientMessage::ChatHistory { .. }
    );
    if !free {
        return Ok(());
    }
    let decision = request.state.realtime.free_limit.check(&request.user_id).await;
    if decision.allowed {
        return Ok(());
    }
    crate::metrics::record_rate_limited("ws_free");
    Err(WsError::RateLimited { retry_after_ms: decision.retry_after.as_millis().max(1) as u64 })
}

async fn run(request: &Request, message: ClientMessage) -> Result<(), WsError> {
    match message {
        ClientMessage::CreditsGet {} => credits_get(request).await,
        ClientMessage::ChatCreate { title } => chat_create(request, title).await,
        ClientMessage::ChatList {} => chat_list(request).await,
        ClientMessage::ChatHistory { chat_id, before, limit } => {
            chat_history(request, chat_id, before, limit).await
        }
        ClientMessage::ChatSend { chat_id, content } => chat_send(request, chat_id, content).await,
        ClientMessage::ImageGenerate { prompt, width, height } => {
            image_generate(request, prompt, width, height).await
        }
        ClientMessage::Ping {}
        | ClientMessage::PresenceSubscribe {}
        | ClientMessage::PresenceUnsubscribe {} => Ok(()),
    }
}

async fn credits_get(request: &Request) -> Result<(), WsError> {
    let credits = current_balance(request).await?;
    request.reply(ServerMessage::Credits { credits });
    Ok(())
}

async fn current_balance(request: &Request) -> Result<i64, WsError> {
    match ledger::balance(&*request.state.store, &request.user_id).await {
        Ok((_, balance)) => Ok(balance),
        Err(CreditError::Store(e)) => Err(e.into()),
        Err(e) => Err(WsError::Internal(e.to_string())),
    }
}

async fn chat_create(request: &Request, title: Option<String>) -> Result<(), WsError> {
    let title =
        title.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).unwrap_or_else(|| "New chat".into());
    if title.chars().count() > MAX_TITLE_CHARS || title.chars().any(char::is_control) {
        return Err(WsError::Invalid(
            "title must be at most 200 characters without control characters".into(),
        ));
    }
    let cap = i64::from(request.state.config.max_chats_per_user);
    if request.state.store.chat_count(&request.user_id).await? >= cap {
        return Err(WsError::QuotaExceeded(format!(
            "You have reached the limit of {cap} chats; delete one to start another"
        )));
    }
    let now = crate::store::now();
    let chat = Chat {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: request.user_id.clone(),
        title,
        created_at: now,
        updated_at: now,
    };
    request.state.store.insert_chat(&chat).await?;
    request.reply(ServerMessage::ChatCreated { chat: chat_view(&chat) });
    Ok(())
}

async fn chat_list(request: &Request) -> Result<(), WsError> {
    let chats = request.state.store.chats_of(&request.user_id, 100).await?;
    request.reply(ServerMessage::ChatList { chats: chats.iter().map(chat_view).collect() });
    Ok(())
}

async fn chat_history(
    request: &Request,
    chat_id: String,
    before: Option<String>,
    limit: Option<i64>,
) -> Result<(), WsError> {
    let limit = limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(WsError::Invalid("limit must be 1 to 100".into()));
    }
    own_chat(request, &chat_id).await?;
    let messages = request.state.store.messages_page(&chat_id, before.as_deref(), limit).await?;
    request
        .reply(ServerMessage::ChatHistory { chat_id, messages: messages.iter().map(message_view).collect() });
    Ok(())
}

async fn own_chat(request: &Request, chat_id: &str) -> Result<Chat, WsError> {
    match request.state.store.chat(chat_id).await? {
        Some(chat) if chat.user_id == request.user_id => Ok(chat),
        _ => Err(WsError::NotFound),
    }
}

async fn chat_send(request: &Request, chat_id: String, content: String) -> Result<(), WsError> {
    let length = content.chars().count();
    if content.trim().is_empty() || length > MAX_CONTENT_CHARS {
        return Err(WsError::Invalid("content must be 1 to 16000 characters".into()));
    }
    own_chat(request, &chat_id).await?;
    let price = request.state.config.price_chat_message;
    let message_id = uuid::Uuid::now_v7().to_string();
    let charged_balance = charge(request, ServiceType::Chat, price, &message_id).await?;
    if let Err(e) = converse(request, &chat_id, &message_id, content, charged_balance).await {
        refund(request, ServiceType::Chat, price, &message_id).await;
        tracing::warn!(error = %e, "chat reply failed; charge refunded");
        return Err(WsError::Unavailable("The assistant could not answer; your credits were refunded"));
    }
    Ok(())
}

/// Stores the user's message, streams the assistant's reply to every session, stores it.
async fn converse(
    request: &Request,
    chat_id: &str,
    message_id: &str,
    content: String,
    charged_balance: i64,
) -> Result<(), WsError> {
    let store = &request.state.store;
    let user_message = ChatMessage {
        id: message_id.to_owned(),
        chat_id: chat_id.to_owned(),
        user_id: request.user_id.clone(),
        role: MessageRole::User,
        content,
        created_at: crate::store::now(),
    };
    store.insert_message(&user_message).await?;
    request.push(&ServerMessage::ChatMessage {
        chat_id: chat_id.to_owned(),
        message: message_view(&user_message),
    });

    let history = store.messages_page(chat_id, None, CONTEXT_MESSAGES).await?;
    let turns = history
        .into_iter()
        .map(|m| ChatTurn {
            role: if m.role == MessageRole::User { TurnRole::User } else { TurnRole::Assistant },
            content: m.content,
        })
        .collect();
    let reply_id = uuid::Uuid::now_v7().to_string();
    let mut deltas = request.state.realtime.assistant.reply(turns).await.map_err(|e| {
        tracing::warn!(error = %e, "assistant request failed");
        WsError::Unavailable("assistant failed")
    })?;
    let mut reply = String::new();
    while let Some(delta) = deltas.next().await {
        let delta = delta.map_err(|e| {
            tracing::warn!(error = %e, "assistant stream failed");
            WsError::Unavailable("assistant failed")
        })?;
        reply.push_str(&delta);
        request.push(&ServerMessage::ChatDelta {
            chat_id: chat_id.to_owned(),
            message_id: reply_id.clone(),
            delta,
        });
    }
    let now = crate::store::now();
    let assistant_message = ChatMessage {
        id: reply_id,
        chat_id: chat_id.to_owned(),
        user_id: request.user_id.clone(),
        role: MessageRole::Assistant,
        content: reply,
        created_at: now,
    };
    store.insert_message(&assistant_message).await?;
    // The reply is stored: from here on nothing is refunded, so failures only cost freshness.
    if let Err(e) = store.touch_chat(chat_id, now).await {
        tracing::warn!(error = %e, "could not touch the chat");
    }
    // Other charges of the user may have landed meanwhile, so the balance is read again; if that
    // read fails, the balance right after this message's charge is still true enough to show.
    let credits = match current_balance(request).await {
        Ok(credits) => credits,
        Err(_) => charged_balance,
    };
    request.push(&ServerMessage::ChatDone {
        chat_id: chat_id.to_owned(),
        message: message_view(&assistant_message),
        credits,
    });
    Ok(())
}

async fn image_generate(
    request: &Request,
    prompt: String,
    width: Option<u32>,
    height: Option<u32>,
) -> Result<(), WsError> {
    let prompt = prompt.trim().to_owned();
    if prompt.is_empty() || prompt.chars().count() > MAX_PROMPT_CHARS {
        return Err(WsError::Invalid("prompt must be 1 to 1000 characters".into()));
    }
    let size = |v: Option<u32>| v.unwrap_or(images::DEFAULT_SIZE);
    let (width, height) = (size(width), size(height));
    let allowed = images::MIN_SIZE..=images::MAX_SIZE;
    if !allowed.contains(&width) || !allowed.contains(&height) {
        return Err(WsError::Invalid("width and height must be 256 to 1024".into()));
    }
    let price = request.state.config.price_image;
    let image_id = uuid::Uuid::now_v7().to_string();
    let charged_balance = charge(request, ServiceType::Image, price, &image_id).await?;
    let image = Image {
        id: image_id.clone(),
        user_id: request.user_id.clone(),
        prompt,
        width,
        height,
        created_at: crate::store::now(),
    };
    let made = async {
        let png =
            request.state.realtime.images.generate(&image.prompt, width, height).await.map_err(|e| {
                tracing::warn!(error = %e, "image generation failed");
                WsError::Unavailable("image generator failed")
            })?;
        request.state.store.insert_image(&image, &png).await?;
        // Stored: from here on nothing is refunded (see `converse`).
        Ok::<i64, WsError>(current_balance(request).await.unwrap_or(charged_balance))
    };
    match made.await {
        Ok(credits) => {
            request.push(&ServerMessage::ImageCreated { image: image_view(&image), credits });
            Ok(())
        }
        Err(_) => {
            refund(request, ServiceType::Image, price, &image_id).await;
            Err(WsError::Unavailable("The image could not be generated; your credits were refunded"))
        }
    }
}

/// Charges before the work (after the rate limit); nothing is charged when refused. Answers the
/// balance after the charge.
async fn charge(
    request: &Request,
    service: ServiceType,
    price: i64,
    reference: &str,
) -> Result<i64, WsError> {
    let decision = request.state.realtime.paid_limit.check(&request.user_id).await;
    if !decision.allowed {
        crate::metrics::record_rate_limited("ws");
        return Err(WsError::RateLimited { retry_after_ms: decision.retry_after.as_millis().max(1) as u64 });
    }
    if price == 0 {
        return current_balance(request).await;
    }
    let change = CreditChange {
        user_id: request.user_id.clone(),
        service_type: service,
        amount: -price,
        reference: Some(reference.to_owned()),
        actor_id: None,
        refund_of: None,
    };
    match request.state.realtime.change_credits(change).await {
        Ok(entry) => {
            crate::metrics::record_credit_usage(service.as_str(), price as u64);
            Ok(entry.balance_after)
        }
        Err(CreditError::Insufficient { balance }) => {
            crate::metrics::record_insufficient(service.as_str());
            Err(WsError::InsufficientCredits { price, balance })
        }
        Err(CreditError::Store(e)) => Err(e.into()),
        Err(CreditError::UnknownUser) => Err(WsError::NotFound),
    }
}

/// Gives a charge back after failed work; a failure here is logged loudly (the ledger stays exact).
async fn refund(request: &Request, service: ServiceType, price: i64, reference: &str) {
    if price == 0 {
        return;
    }
    let change = CreditChange {
        user_id: request.user_id.clone(),
        service_type: ServiceType::Refund,
        amount: price,
        reference: Some(reference.to_owned()),
        actor_id: None,
        refund_of: Some(service),
    };
    // A refund is never refused for the balance, so every failure is transient: try again a
    // few times (a lost answer is checked against the ledger, so a retry never refunds twice).
    for (attempt, pause_ms) in [0u64, 100, 500, 2000].into_iter().enumerate() {
        tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
        match request.state.realtime.change_credits(change.clone()).await {
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, user_id = %request.user_id, reference, attempt, "refund failed")
            }
        }
    }
    tracing::error!(user_id = %request.user_id, reference, "refund given up after retries");
}

/// The wire view of a chat.
pub fn chat_view(chat: &Chat) -> ChatView {
    ChatView {
        id: chat.id.clone(),
        title: chat.title.clone(),
        created_at: chat.created_at,
        updated_at: chat.updated_at,
    }
}

/// The wire view of a message.
pub fn message_view(m: &ChatMessage) -> MessageView {
    MessageView {
        id: m.id.clone(),
        chat_id: m.chat_id.clone(),
        role: m.role,
        content: m.content.clone(),
        created_at: m.created_at,
    }
}

/// The wire view of an image.
pub fn image_view(image: &Image) -> ImageView {
    ImageView {
        id: image.id.clone(),
        prompt: image.prompt.clone(),
        width: image.width,
        height: image.height,
        url: format!("/api/images/{}/content", image.id),
        created_at: image.created_at,
    }
}
