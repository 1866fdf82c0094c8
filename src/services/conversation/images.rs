//! Images: generating one (charged first, refunded if drawing or storing fails), the user's
//! gallery a page at a time, one image and its PNG, and deleting one (owners, or admins who
//! moderate).

use super::{Begun, ConversationError, ConversationService, new_id};
use crate::images;
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
    /// Width in pixels (256 to 1,024, default 512).
    pub width: Option<u32>,
    /// Height in pixels (256 to 1,024, default 512).
    pub height: Option<u32>,
    /// The client's key for retries (1 to 64 characters).
    pub idempotency_key: Option<String>,
}

impl ConversationService {
    /// Charges the price of an image, draws it and stores it; `ImageCreated` follows. A failure
    /// before the image is stored is refunded. An `idempotency_key` works as for [`Self::send`].
    pub async fn generate_image(
        &self,
        user_id: &str,
        request: ImageRequest,
        notify: &dyn Notify,
    ) -> Result<Option<Event>, ConversationError> {
        let prompt = request.prompt.trim().to_owned();
        if prompt.is_empty() || prompt.chars().count() > MAX_PROMPT_CHARS {
            return Err(ConversationError::Invalid("prompt must be 1 to 1000 characters".into()));
        }
        let size = |v: Option<u32>| v.unwrap_or(images::DEFAULT_SIZE);
        let (width, height) = (size(request.width), size(request.height));
        let allowed = images::MIN_SIZE..=images::MAX_SIZE;
        if !allowed.contains(&width) || !allowed.contains(&height) {
            return Err(ConversationError::Invalid("width and height must be 256 to 1024".into()));
        }
        let image_id = new_id();
        let key = request.idempotency_key.as_deref().map(|key| {
            let (w, h) = (width.to_string(), height.to_string());
            let fingerprint = idempotency::fingerprint("image.generate", &[&prompt, &w, &h]);
            (key, fingerprint, IdempotentOutcome::Image { image_id: image_id.clone() })
        });
        let (charged, claim) = match self.begin_paid(user_id, ServiceType::Image, &image_id, key).await? {
            Begun::Replay(answer) => return Ok(Some(answer)),
            Begun::Charged { balance, claim } => (balance, claim),
        };
        let image = Image {
            id: image_id.clone(),
            user_id: user_id.to_owned(),
            prompt,
            width,
            height,
            created_at: crate::store::now(),
        };
        let made = async {
            let png = self.images.generate(&image.prompt, width, height).await.map_err(|e| {
                tracing::warn!(error = %e, "image generation failed");
                ConversationError::Unavailable("image generator failed")
            })?;
            self.store.insert_image(&image, &png).await?;
            // Stored: from here on nothing is refunded (see `converse`).
            Ok::<i64, ConversationError>(self.credits.balance(user_id).await.unwrap_or(charged))
        };
        match made.await {
            Ok(credits) => {
                notify.notify(user_id, Event::ImageCreated { image, credits });
                if let Some(guard) = claim {
                    self.idempotency.complete(guard).await;
                }
                Ok(None)
            }
            Err(_) => {
                self.undo_paid(user_id, ServiceType::Image, &image_id, claim).await;
                Err(ConversationError::Unavailable(
                    "The image could not be generated; your credits were refunded",
                ))
            }
        }
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
