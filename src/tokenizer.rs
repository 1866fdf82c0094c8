//! Counting tokens where an upstream reports none (the echo assistant, a reply stopped before its
//! usage chunk): a real BPE tokenizer (tiktoken's `o200k_base`, the vocabulary of OpenAI's current
//! models), never characters divided by four. Counting takes CPU time in proportion to the text,
//! so callers run it off the async workers ([`count_blocking`]).

use std::sync::LazyLock;

use tiktoken_rs::CoreBPE;

/// Tokens one chat message costs beyond its text in OpenAI's chat format (role and separators).
const PER_MESSAGE: u64 = 3;
/// Tokens that prime the assistant's reply after the last message.
const REPLY_PRIMING: u64 = 3;

/// The vocabulary, loaded on first use (a few tenths of a second; [`warm`] does it at start).
static BPE: LazyLock<&'static CoreBPE> = LazyLock::new(tiktoken_rs::o200k_base_singleton);

/// Loads the vocabulary now, so the first chat turn does not wait for it.
pub fn warm() {
    LazyLock::force(&BPE);
}

/// The tokens of `text`.
pub fn count(text: &str) -> u64 {
    BPE.encode_ordinary(text).len() as u64
}

/// The tokens of a chat prompt of `messages`, as OpenAI counts them: each message's text and its
/// framing, and the priming of the reply.
pub fn count_messages<'a>(messages: impl IntoIterator<Item = &'a str>) -> u64 {
    messages.into_iter().map(|text| count(text) + PER_MESSAGE).sum::<u64>() + REPLY_PRIMING
}

/// [`count`] on a blocking thread.
pub async fn count_blocking(text: String) -> u64 {
    run_blocking(move || count(&text)).await
}

/// [`count_messages`] on a blocking thread.
pub async fn count_messages_blocking(messages: Vec<String>) -> u64 {
    run_blocking(move || count_messages(messages.iter().map(String::as_str))).await
}

async fn run_blocking(counting: impl FnOnce() -> u64 + Send + 'static) -> u64 {
    match tokio::task::spawn_blocking(counting).await {
        Ok(tokens) => tokens,
        // Only a runtime that is shutting down loses the thread: the tokenizer panics on no input.
        Err(e) => {
            tracing::error!(error = %e, "a token count was lost");
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_texts_have_their_known_counts() {
        // Reference counts of o200k_base (the `tiktoken` Python package gives the same).
        assert_eq!(count("hello world"), 2);
        assert_eq!(count(""), 0);
        assert_eq!(count_messages(["hello world"]), 2 + PER_MESSAGE + REPLY_PRIMING);
    }
}
