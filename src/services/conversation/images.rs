//! Images as metered generations: the price of the model and size is held before drawing and
//! settled after (charged the price when the image is stored, 0 when anything fails); the user's
//! gallery a page at a time, one image and its PNG, and deleting one (owners, or admins who
//! moderate).

use super::paid::Begun;
use super::{Caller, ConversationError, ConversationService, GenerationKind, RunningGeneration, new_id};
use crate::services::credits::HoldRequest;
use crate::services::idempotency;
use crate::services::paging::PageLimit;
use crate::services::{Event, Notify};
use crate::store::{IdempotentOutcome, Image, ServiceType};

/// Longest image prompt, characters.
const MAX_PROMPT_CHARS: usize = 1_000;

/// What a new image should be.
#[derive(Debug, Clone)]
pub struct ImageRequest {
    /// What to draw (1 to 1,000 characters).
    pub prompt: String,
    /// Width in pixels (the model's default size without one).
    pub width: Option<u32>,
    /// Height in pixels.
    pub height: Option<u32>,
    /// The image model; the default without one.
    pub model: Option<String>,
    /// The client's key for retries (1 to 64 characters).
    pub idempotency_key: Option<String>,
}

impl ConversationService {
    /// Holds the price of an image, draws it, stores it and settles; `ImageCreated` follows. A
    /// size the model does not price is `Invalid`; an `idempotency_key` works as for
    /// [`Self::send`].
    pub async fn generate_image(
        &self,
        caller: Caller<'_>,
        request: ImageRequest,
        notify: &dyn Notify,
    ) -> Result<Option<Event>, ConversationError> {
        let user_id = caller.user_id;
        let prompt = request.prompt.trim().to_owned();
        if prompt.is_empty() || prompt.chars().count() > MAX_PROMPT_CHARS {
            return Err(ConversationError::Invalid("prompt must be 1 to 1000 characters".into()));
        }
        let model = self.models.catalogue().image_model(request.model.as_deref(), caller.role)?.clone();
        let (default_width, default_height) = model.default_size();
        let (width, height) =
            (request.width.unwrap_or(default_width), request.height.unwrap_or(default_height));
        let Some(price) = model.price(width, height) else {
            return Err(ConversationError::Invalid(format!(
                "the image model {:?} does not make {width}x{height} images",
                model.id
            )));
        };
        let image_id = new_id();
        let key = request.idempotency_key.as_deref().map(|key| {
            let (w, h) = (width.to_string(), height.to_string());
            let fingerprint = idempotency::fingerprint("image.generate", &[&prompt, &w, &h, &model.id]);
            (key, fingerprint, IdempotentOutcome::Image { image_id: image_id.clone() })
        });
        let claim = match self.begin_paid(user_id, key).await? {
            Begun::Replay(answer) => return Ok(Some(answer)),
            Begun::Run(claim) => claim,
        };
        let hold = match self
            .credits
            .hold(HoldRequest {
                user_id,
                service: ServiceType::Image,
                model: &model.id,
                reference: &image_id,
                amount: price,
                daily_limit: None,
            })
            .await
        {
            Ok(hold) => hold,
            Err(e) => {
                self.release(claim).await;
                return Err(e.into());
            }
        };
        let running = RunningGeneration {
            user_id: user_id.to_owned(),
            chat_id: None,
            message_id: image_id.clone(),
            kind: GenerationKind::Image,
            content: String::new(),
            seq: 0,
        };
        let registration = self.generations.start(running, hold.amount);
        let image = Image {
            id: image_id,
            user_id: user_id.to_owned(),
            prompt,
            width,
            height,
            created_at: crate::store::now(),
            model: Some(model.id.clone()),
            charged: Some(price),
        };
        let made = async {
            let png =
                self.models.generator(&model).generate(&image.prompt, width, height).await.map_err(|e| {
                    tracing::warn!(error = %e, "image generation failed");
                    ConversationError::Unavailable("The image could not be generated; nothing was charged")
                })?;
            self.store.insert_image(&image, &png).await.map_err(|e| {
                tracing::warn!(error = %e, "could not store an image");
                ConversationError::Unavailable("The image could not be stored; nothing was charged")
            })
        };
        let outcome = made.await;
        let charged = if outcome.is_ok() { price } else { 0 };
        let settled = self.credits.settle(&hold, charged, None).await;
        drop(registration);
        let status = if outcome.is_ok() { "complete" } else { "failed" };
        crate::metrics::record_generation_end(GenerationKind::Image.as_str(), status);
        if let Err(e) = outcome {
            self.release(claim).await;
            return Err(e);
        }
        let credits = match settled {
            Some(entry) => entry.balance_after,
            None => self.credits.balance(user_id).await.unwrap_or(hold.balance_after),
        };
        notify.notify(user_id, Event::ImageCreated { image, credits });
        self.complete(claim).await;
        Ok(None)
    }

    /// A page of the user's images (records), newest first, before image `before`.
    pub async fn images(
        &self,
        user_id: &str,
        before: Option<&str>,
        limit: PageLimit,
    ) -> Result<Vec<Image>, ConversationError> {
        Ok(self.store.images_of(user_id, before, limit.get()).await?)
    }

    /// Image `id` if `viewer` owns it or `may_see_all`; else `NotFound`.
    pub async fn image(&self, viewer: &str, may_see_all: bool, id: &str) -> Result<Image, ConversationError> {
        match self.store.image(id).await? {
            Some(image) if image.user_id == viewer || may_see_all => Ok(image),
            _ => Err(ConversationError::NotFound),
        }
    }

    /// Deletes image `id` with its PNG if `viewer` owns it or `may_delete_any` (admins, who
    /// moderate); else `NotFound`. Answers the deleted image's record.
    pub async fn delete_image(
        &self,
        viewer: &str,
        may_delete_any: bool,
        id: &str,
    ) -> Result<Image, ConversationError> {
        let image = self.image(viewer, may_delete_any, id).await?;
        if !self.store.delete_image(&image.id).await? {
            return Err(ConversationError::NotFound);
        }
        Ok(image)
    }

    /// The PNG of an image already found with [`ConversationService::image`].
    pub async fn image_png(&self, image: &Image) -> Result<Vec<u8>, ConversationError> {
        self.store.image_png(&image.id).await?.ok_or(ConversationError::NotFound)
    }
}
