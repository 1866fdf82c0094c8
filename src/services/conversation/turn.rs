//! A chat turn as a metered generation (docs/API.md §8). The turn counts the tokens of what it
//! sends upstream and holds its worst case (that input and `max_output_tokens` at the model's
//! prices) before the upstream starts; it stores the user's message and the reply (`streaming`)
//! at once, streams the deltas with their `seq`, and ends in one of three ways — complete, stopped
//! (`chat.stop`: the upstream request is dropped at once) or failed — each settling the hold once:
//! `charged = min(held, cost(usage))` for a complete or stopped reply, 0 for a failed one. Usage
//! is the upstream's own figures when it reports them, else the server's count (`estimated`).
//!
//! The reply is stored before its hold is settled: a crash between the two leaves a stored reply
//! and its charge, which recovery settles; the other order could charge for a reply that is lost.

use futures_util::StreamExt;

use super::generations::Registration;
use super::paid::Begun;
use super::{Caller, ConversationError, ConversationService, GenerationKind, RunningGeneration, new_id};
use crate::assistant::{Assistant, ChatTurn, Chunk, TurnRole, Usage};
use crate::catalogue::ChatModel;
use crate::services::credits::HoldRequest;
use crate::services::idempotency;
use crate::services::{Event, Notify};
use crate::store::{
    Chat, ChatMessage, IdempotentOutcome, MessageEnd, MessageRole, MessageStatus, ServiceType, TokenUsage,
};

/// Longest chat message, characters.
const MAX_CONTENT_CHARS: usize = 16_000;

/// Longest a reply may run; then it ends as if stopped (billed for what it wrote). Below
/// `check-ledger`'s smallest `--hold-age`, so a repair never settles a hold whose reply still
/// runs (its own settle would then give the credits back a second time).
pub const MAX_REPLY_DURATION: std::time::Duration = std::time::Duration::from_secs(600);

/// What a client asks of a chat turn.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// Which chat.
    pub chat_id: String,
    /// The user's message.
    pub content: String,
    /// The chat model; the default without one.
    pub model: Option<String>,
    /// The client's key for retries.
    pub idempotency_key: Option<String>,
}

/// How the streaming of a reply ended.
enum Ending {
    /// The upstream finished.
    Complete,
    /// A `chat.stop` came.
    Stopped,
    /// The upstream failed.
    Failed,
}

impl ConversationService {
    /// One chat turn. With an `idempotency_key` that the user's earlier request holds, nothing
    /// is held or done: the answer is that request's `ChatDone` (returned, for the asking session
    /// alone), once its reply has ended.
    pub async fn send(
        &self,
        caller: Caller<'_>,
        request: ChatRequest,
        notify: &dyn Notify,
    ) -> Result<Option<Event>, ConversationError> {
        let ChatRequest { chat_id, content, model, idempotency_key } = request;
        if content.trim().is_empty() || content.chars().count() > MAX_CONTENT_CHARS {
            return Err(ConversationError::Invalid("content must be 1 to 16000 characters".into()));
        }
        let model = self.models.catalogue().chat_model(model.as_deref(), caller.role)?.clone();
        let chat = self.own_chat(caller.user_id, &chat_id).await?;
        // Both ids are chosen now: the reply's is where a retry will find the result.
        let (message_id, reply_id) = (new_id(), new_id());
        let key = idempotency_key.as_deref().map(|key| {
            let fingerprint = idempotency::fingerprint("chat.send", &[&chat_id, &content, &model.id]);
            (
                key,
                fingerprint,
                IdempotentOutcome::Chat { chat_id: chat_id.clone(), reply_id: reply_id.clone() },
            )
        });
        let claim = match self.begin_paid(caller.user_id, key).await? {
            Begun::Replay(answer) => return Ok(Some(answer)),
            Begun::Run(claim) => claim,
        };
        let user_message = ChatMessage::new(message_id, &chat, MessageRole::User, content);
        match self.turn(&chat, &model, user_message, reply_id, notify).await {
            Ok(()) => {
                self.complete(claim).await;
                Ok(None)
            }
            Err(e) => {
                self.release(claim).await;
                Err(e)
            }
        }
    }

    /// Stops the user's reply `message_id`: if it runs here, its upstream request is dropped and
    /// its own `chat.done` (status `stopped`) follows; if it is stored as streaming but runs
    /// elsewhere, the stop is relayed to the other nodes and the running one's `chat.done`
    /// follows; an ended reply answers with its `chat.done` again; anything else is `NotFound`.
    pub async fn stop(
        &self,
        caller: Caller<'_>,
        message_id: &str,
    ) -> Result<Option<Event>, ConversationError> {
        if self.generations.stop(caller.user_id, message_id) {
            return Ok(None);
        }
        match self.store.message(message_id).await? {
            Some(message) if message.user_id == caller.user_id && message.role == MessageRole::Assistant => {
                if message.status == MessageStatus::Streaming {
                    self.stops.relay(caller.user_id, message_id);
                    return Ok(None);
                }
                let credits = self.credits.balance(caller.user_id).await?;
                Ok(Some(Event::ChatDone { chat_id: message.chat_id.clone(), message, credits }))
            }
            _ => Err(ConversationError::NotFound),
        }
    }

    /// Holds, stores, streams, stores the reply, settles and tells the user (see the module).
    async fn turn(
        &self,
        chat: &Chat,
        model: &ChatModel,
        user_message: ChatMessage,
        reply_id: String,
        notify: &dyn Notify,
    ) -> Result<(), ConversationError> {
        let user_id = chat.user_id.as_str();
        let assistant = self.models.assistant(model);
        let history = self.prompt(&*assistant, chat, &user_message).await?;
        let input_tokens =
            crate::tokenizer::count_messages_blocking(history.iter().map(|t| t.content.clone()).collect())
                .await;
        let hold = self
            .credits
            .hold(HoldRequest {
                user_id,
                service: ServiceType::Chat,
                model: &model.id,
                reference: &reply_id,
                amount: model.hold(input_tokens),
                daily_limit: None,
            })
            .await?;
        // From here on, whatever happens settles the hold once.
        let reply = ChatMessage {
            status: MessageStatus::Streaming,
            model: Some(model.id.clone()),
            ..ChatMessage::new(reply_id, chat, MessageRole::Assistant, String::new())
        };
        let (user_stored, reply_stored) =
            futures_util::join!(self.store.insert_message(&user_message), self.store.insert_message(&reply));
        if let Err(e) = user_stored.and(reply_stored) {
            tracing::warn!(error = %e, "could not store a chat turn's messages");
            self.credits.settle(&hold, 0, None).await;
            return Err(ConversationError::Unavailable("Storage is unavailable; nothing was charged"));
        }
        let chat_id = chat.id.clone();
        notify
            .notify(user_id, Event::ChatMessage { chat_id: chat_id.clone(), message: user_message.clone() });
        notify.notify(
            user_id,
            Event::ChatStarted {
                chat_id: chat_id.clone(),
                message_id: reply.id.clone(),
                model: model.id.clone(),
                held: hold.amount,
                credits: hold.balance_after,
            },
        );
        let running = RunningGeneration {
            user_id: user_id.to_owned(),
            chat_id: Some(chat_id.clone()),
            message_id: reply.id.clone(),
            kind: GenerationKind::Chat,
            content: String::new(),
            seq: 0,
        };
        let mut registration = self.generations.start(running, hold.amount);
        let (ending, reported) =
            stream_reply(&*assistant, history, model.max_output_tokens, &mut registration, |seq, delta| {
                let event =
                    Event::ChatDelta { chat_id: chat_id.clone(), message_id: reply.id.clone(), seq, delta };
                notify.notify(user_id, event);
            })
            .await;
        let (content, _) = registration.so_far();
        let usage = match reported {
            Some(usage) => TokenUsage {
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                estimated: false,
            },
            None => TokenUsage {
                input_tokens,
                output_tokens: crate::tokenizer::count_blocking(content.clone()).await,
                estimated: true,
            },
        };
        let (status, charged) = match ending {
            Ending::Complete => {
                (MessageStatus::Complete, model.charge(hold.amount, usage.input_tokens, usage.output_tokens))
            }
            Ending::Stopped => {
                (MessageStatus::Stopped, model.charge(hold.amount, usage.input_tokens, usage.output_tokens))
            }
            Ending::Failed => (MessageStatus::Failed, 0),
        };
        let end = MessageEnd { content, status, charged, usage: Some(usage) };
        let stored = self.end_reply(&reply, &end, &user_message).await;
        let settled = self.credits.settle(&hold, if stored.is_ok() { charged } else { 0 }, Some(usage)).await;
        drop(registration);
        crate::metrics::record_generation_end(GenerationKind::Chat.as_str(), status.as_str());
        stored?;
        let credits = match settled {
            Some(entry) => entry.balance_after,
            None => self.credits.balance(user_id).await.unwrap_or(hold.balance_after),
        };
        let message =
            ChatMessage { content: end.content, status, charged: Some(charged), usage: end.usage, ..reply };
        notify.notify(user_id, Event::ChatDone { chat_id, message, credits });
        match ending {
            Ending::Failed => {
                Err(ConversationError::Unavailable("The assistant failed; nothing was charged"))
            }
            Ending::Complete | Ending::Stopped => Ok(()),
        }
    }

    /// Writes how the reply ended and touches its chat. If the chat was deleted meanwhile, the
    /// turn takes its messages back (`NotFound`): either the deletion came after the reply and took
    /// it along, or the touch finds no chat, so no message outlives its chat. A reply that cannot
    /// be stored is `Unavailable` (and charged nothing).
    async fn end_reply(
        &self,
        reply: &ChatMessage,
        end: &MessageEnd,
        user_message: &ChatMessage,
    ) -> Result<(), ConversationError> {
        let finished = match self.store.finish_message(&reply.id, end).await {
            Ok(finished) => finished,
            Err(e) => {
                tracing::error!(error = %e, reply_id = %reply.id, "could not store a reply's end");
                return Err(ConversationError::Unavailable(
                    "The reply could not be stored; nothing was charged",
                ));
            }
        };
        let chat_exists = finished
            && self.store.touch_chat(&reply.chat_id, crate::store::now()).await.unwrap_or_else(|e| {
                // A failed touch only costs the chat its place in the list.
                tracing::warn!(error = %e, "could not touch the chat");
                true
            });
        if !chat_exists {
            for id in [&user_message.id, &reply.id] {
                self.store.delete_message(id).await?;
            }
            return Err(ConversationError::NotFound);
        }
        Ok(())
    }

    /// What is sent upstream: the chat's latest messages the assistant wants (ended replies with
    /// text, and the user's messages) and the new message.
    async fn prompt(
        &self,
        assistant: &dyn Assistant,
        chat: &Chat,
        message: &ChatMessage,
    ) -> Result<Vec<ChatTurn>, ConversationError> {
        let context = assistant.context_messages();
        let earlier = if context <= 1 {
            Vec::new()
        } else {
            self.store.messages_page(&chat.id, None, context - 1).await?
        };
        let turns = earlier
            .into_iter()
            .filter(|m| m.status != MessageStatus::Streaming && !m.content.is_empty())
            .chain(std::iter::once(message.clone()))
            .map(|m| ChatTurn {
                role: if m.role == MessageRole::User { TurnRole::User } else { TurnRole::Assistant },
                content: m.content,
            })
            .collect();
        Ok(turns)
    }
}

/// Streams the reply of `assistant` to `history` into `registration`, calling `on_delta` with
/// each delta and its `seq`, until it ends, fails or is stopped; a stop drops the upstream request
/// at once (before its answer started, too). Answers how it ended and the usage the upstream
/// reported, if any.
async fn stream_reply(
    assistant: &dyn Assistant,
    history: Vec<ChatTurn>,
    max_output_tokens: u32,
    registration: &mut Registration,
    mut on_delta: impl FnMut(u64, String),
) -> (Ending, Option<Usage>) {
    let deadline = tokio::time::sleep(MAX_REPLY_DURATION);
    tokio::pin!(deadline);
    let mut stream = tokio::select! {
        biased;
        () = registration.stopped() => return (Ending::Stopped, None),
        () = &mut deadline => return (Ending::Stopped, None),
        started = assistant.reply(history, max_output_tokens) => match started {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "the assistant failed");
                return (Ending::Failed, None);
            }
        },
    };
    let mut usage = None;
    let ending = loop {
        tokio::select! {
            biased;
            () = registration.stopped() => break Ending::Stopped,
            () = &mut deadline => {
                tracing::warn!(limit = ?MAX_REPLY_DURATION, "a reply ran past its longest time and was stopped");
                break Ending::Stopped;
            }
            chunk = stream.next() => match chunk {
                None => break Ending::Complete,
                Some(Ok(Chunk::Delta(text))) => {
                    let seq = registration.delta(&text);
                    on_delta(seq, text);
                }
                Some(Ok(Chunk::Usage(reported))) => usage = Some(reported),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "the assistant failed part-way");
                    break Ending::Failed;
                }
            },
        }
    };
    // Dropping the stream drops the upstream request: a stopped reply stops upstream too.
    drop(stream);
    (ending, usage)
}
