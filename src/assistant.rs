//! The chat assistant behind `chat.send`: the built-in echo assistant, or a chat model of an
//! OpenAI-compatible upstream (`crate::openai`). Both yield the reply as a stream of text deltas,
//! so each can go out as a `chat.delta` frame as soon as it arrives; an upstream also yields the
//! usage it reports, which the echo assistant leaves to the server's own count.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::stream::{self, BoxStream, StreamExt};

use crate::catalogue::{ChatModel, Upstream};
use crate::openai::OpenAiClient;
pub use crate::openai::{ChatTurn, Chunk, OpenAiError as AssistantError, TurnRole, Usage};

/// The reply as chunks in order: text deltas, and the usage when the upstream reports it. Dropping
/// it drops the upstream request.
pub type ReplyStream = BoxStream<'static, Result<Chunk, AssistantError>>;

/// Something that writes the next assistant turn of a conversation.
#[async_trait]
pub trait Assistant: Send + Sync + 'static {
    /// Starts the reply to `history` (oldest turn first), at most `max_output_tokens` long.
    async fn reply(
        &self,
        history: Vec<ChatTurn>,
        max_output_tokens: u32,
    ) -> Result<ReplyStream, AssistantError>;

    /// How many of the chat's latest messages the assistant wants as `history` (the new user
    /// message included): reading fewer is cheaper, and one is enough for an assistant that
    /// answers only the last message.
    fn context_messages(&self) -> i64 {
        20
    }
}

/// The assistant of a catalogue's chat model.
pub fn for_model(model: &ChatModel) -> Arc<dyn Assistant> {
    match &model.upstream {
        Upstream::BuiltIn => Arc::new(EchoAssistant),
        Upstream::OpenAi { url, api_key } => Arc::new(OpenAiAssistant {
            client: OpenAiClient::new(url, api_key.clone()),
            model: model.id.clone(),
        }),
    }
}

/// The default assistant: answers "You said: <last user message>" word by word, without any network.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoAssistant;

#[async_trait]
impl Assistant for EchoAssistant {
    async fn reply(
        &self,
        history: Vec<ChatTurn>,
        _max_output_tokens: u32,
    ) -> Result<ReplyStream, AssistantError> {
        let last_user_message =
            history.iter().rev().find(|turn| turn.role == TurnRole::User).map_or("", |turn| &turn.content);
        let words = split_into_word_deltas(&format!("You said: {last_user_message}"));
        // Word by word for short replies, at most ECHO_DELTAS pieces for long ones: a stream
        // like a model's, without flooding sockets with thousands of tiny frames.
        let per_delta = words.len().div_ceil(ECHO_DELTAS).max(1);
        let deltas: Vec<String> = words.chunks(per_delta).map(|chunk| chunk.concat()).collect();
        Ok(stream::iter(deltas.into_iter().map(|delta| Ok(Chunk::Delta(delta)))).boxed())
    }

    fn context_messages(&self) -> i64 {
        1
    }
}

/// Most pieces the echo assistant streams a reply in.
const ECHO_DELTAS: usize = 8;

/// Splits text into words, each carrying the whitespace after it, so the pieces join back exactly.
fn split_into_word_deltas(text: &str) -> Vec<String> {
    let mut deltas = Vec::new();
    let mut current = String::new();
    let mut previous_was_space = false;
    for c in text.chars() {
        if previous_was_space && !c.is_whitespace() {
            deltas.push(std::mem::take(&mut current));
        }
        current.push(c);
        previous_was_space = c.is_whitespace();
    }
    if !current.is_empty() {
        deltas.push(current);
    }
    deltas
}

/// A chat model of an OpenAI-compatible upstream.
#[derive(Debug)]
pub struct OpenAiAssistant {
    client: OpenAiClient,
    model: String,
}

#[async_trait]
impl Assistant for OpenAiAssistant {
    async fn reply(
        &self,
        history: Vec<ChatTurn>,
        max_output_tokens: u32,
    ) -> Result<ReplyStream, AssistantError> {
        self.client.stream_chat(&self.model, &history, max_output_tokens).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history() -> Vec<ChatTurn> {
        vec![
            ChatTurn { role: TurnRole::User, content: "Hello there".into() },
            ChatTurn { role: TurnRole::Assistant, content: "You said: Hello there".into() },
            ChatTurn { role: TurnRole::User, content: "What is the weather like?".into() },
        ]
    }

    /// The text deltas of a reply (the echo assistant reports no usage).
    async fn texts(stream: ReplyStream) -> Vec<String> {
        let chunks: Vec<_> = stream.collect().await;
        chunks
            .into_iter()
            .map(|chunk| match chunk.unwrap() {
                Chunk::Delta(text) => text,
                usage => panic!("the echo assistant reports no usage: {usage:?}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn the_echo_assistant_streams_the_last_user_message_in_several_deltas() {
        let deltas = texts(EchoAssistant.reply(history(), 64).await.unwrap()).await;
        assert_eq!(deltas, ["You ", "said: ", "What ", "is ", "the ", "weather ", "like?"]);
        assert_eq!(deltas.concat(), "You said: What is the weather like?");
    }

    #[tokio::test]
    async fn the_echo_assistant_gives_two_deltas_even_for_an_empty_history() {
        let deltas = texts(EchoAssistant.reply(Vec::new(), 64).await.unwrap()).await;
        assert!(deltas.len() >= 2, "{deltas:?}");
        assert_eq!(deltas.concat(), "You said: ");
    }
}
