//! What every paid request does before its work: claim its `idempotency_key` (a retry is answered
//! with the first request's stored result instead of doing the work again) and pass the
//! paid-message limit. The claim is marked completed once the result is stored, and released when
//! the request is refused or its work failed, so that a retry runs afresh.

use super::{ConversationError, ConversationService};
use crate::services::Event;
use crate::services::idempotency::{Claim, ClaimGuard};
use crate::store::{IdempotentOutcome, MessageStatus};

/// A paid request once begun.
pub(super) enum Begun {
    /// Its key's first request stored this result: the answer (for the asking session alone).
    Replay(Event),
    /// Do the work, holding the key's claim if there is a key.
    Run(Option<ClaimGuard>),
}

/// A key, the request's fingerprint and where its result will be stored.
pub(super) type Key<'a> = (&'a str, String, IdempotentOutcome);

impl ConversationService {
    /// Claims `key` (when there is one), then takes one paid request from the user's limit.
    pub(super) async fn begin_paid(
        &self,
        user_id: &str,
        key: Option<Key<'_>>,
    ) -> Result<Begun, ConversationError> {
        let claim = match key {
            Some((key, fingerprint, outcome)) => {
                match self.idempotency.claim(user_id, key, fingerprint, outcome).await? {
                    Claim::Replay(outcome) => return Ok(Begun::Replay(self.replay(user_id, outcome).await?)),
                    Claim::Run(guard) => Some(guard),
                }
            }
            None => None,
        };
        let decision = self.paid_limit.check(user_id).await;
        if !decision.allowed {
            crate::metrics::record_rate_limited("ws");
            self.release(claim).await;
            return Err(ConversationError::RateLimited { retry_after: decision.retry_after });
        }
        Ok(Begun::Run(claim))
    }

    /// The request's result is stored: a retry of its key is answered with it.
    pub(super) async fn complete(&self, claim: Option<ClaimGuard>) {
        if let Some(guard) = claim {
            self.idempotency.complete(guard).await;
        }
    }

    /// The request was refused or its work failed: its key is free for a retry.
    pub(super) async fn release(&self, claim: Option<ClaimGuard>) {
        if let Some(guard) = claim {
            self.idempotency.release(guard).await;
        }
    }

    /// The event that answers a retry: the stored result of the key's first request, with the
    /// balance now.
    async fn replay(&self, user_id: &str, outcome: IdempotentOutcome) -> Result<Event, ConversationError> {
        let credits = self.credits.balance(user_id).await?;
        match outcome {
            IdempotentOutcome::Chat { chat_id, reply_id } => {
                let message = self.store.message(&reply_id).await?.ok_or(ConversationError::NotFound)?;
                if message.status == MessageStatus::Streaming {
                    // The claim is only answered once its reply ended; this one was cut off
                    // (its node died) and is ended by recovery.
                    return Err(ConversationError::Unavailable(
                        "The first request with this idempotency_key is still running; try again",
                    ));
                }
                Ok(Event::ChatDone { chat_id, message, credits })
            }
            IdempotentOutcome::Image { image_id } => {
                let image = self.store.image(&image_id).await?.ok_or(ConversationError::NotFound)?;
                Ok(Event::ImageCreated { image, credits })
            }
        }
    }
}
