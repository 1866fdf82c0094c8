//! The model catalogue as a client sees it (`GET /api/models`): what each model costs, for the
//! models the caller's role may use.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::catalogue::{Catalogue, ChatPricing, ImagePricing};
use crate::store::Role;

/// Answer of `GET /api/models`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelsView {
    /// Chat models, the default first.
    pub chat: Vec<ChatModelView>,
    /// Image models, the default first.
    pub image: Vec<ImageModelView>,
}

/// A chat model and its prices; a price that does not apply is null.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatModelView {
    /// What `chat.send` names as `model`.
    pub id: String,
    /// What to show.
    pub name: String,
    /// Credits per 1,000,000 input tokens.
    pub input_price: Option<i64>,
    /// Credits per 1,000,000 output tokens.
    pub output_price: Option<i64>,
    /// Credits per turn, whatever its length.
    pub message_price: Option<i64>,
    /// The longest reply, in tokens (what a turn holds for).
    pub max_output_tokens: u32,
    /// Whether `chat.send` without a model uses it.
    pub default: bool,
}

/// An image model and its prices.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImageModelView {
    /// What `image.generate` names as `model`.
    pub id: String,
    /// What to show.
    pub name: String,
    /// Credits per image by size (`"512x512"`), when the model makes only these sizes.
    pub prices: Option<BTreeMap<String, i64>>,
    /// Credits per image of any size within `sizes`, when the model makes every such size.
    pub price: Option<i64>,
    /// The smallest and largest width or height, with `price`.
    pub sizes: Option<SizeRangeView>,
    /// The size an `image.generate` without one gets.
    pub default_size: String,
    /// Whether `image.generate` without a model uses it.
    pub default: bool,
}

/// Widths and heights from `min` to `max`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SizeRangeView {
    /// Smallest width or height.
    pub min: u32,
    /// Largest width or height.
    pub max: u32,
}

impl ModelsView {
    /// The models of `catalogue` that `role` may use.
    pub fn for_role(catalogue: &Catalogue, role: Role) -> ModelsView {
        let chat = catalogue
            .chat_models()
            .iter()
            .enumerate()
            .filter(|(_, m)| m.allows(role))
            .map(|(n, m)| {
                let (input_price, output_price, message_price) = match m.pricing {
                    ChatPricing::PerToken { input, output } => (Some(input), Some(output), None),
                    ChatPricing::PerTurn(price) => (None, None, Some(price)),
                };
                ChatModelView {
                    id: m.id.clone(),
                    name: m.name.clone(),
                    input_price,
                    output_price,
                    message_price,
                    max_output_tokens: m.max_output_tokens,
                    default: n == 0,
                }
            })
            .collect();
        let image = catalogue
            .image_models()
            .iter()
            .enumerate()
            .filter(|(_, m)| m.allows(role))
            .map(|(n, m)| {
                let (prices, price, sizes) = match &m.pricing {
                    ImagePricing::BySize(prices) => {
                        let prices =
                            prices.iter().map(|((w, h), credits)| (format!("{w}x{h}"), *credits)).collect();
                        (Some(prices), None, None)
                    }
                    ImagePricing::Flat { price, min, max } => {
                        (None, Some(*price), Some(SizeRangeView { min: *min, max: *max }))
                    }
                };
                let (width, height) = m.default_size();
                ImageModelView {
                    id: m.id.clone(),
                    name: m.name.clone(),
                    prices,
                    price,
                    sizes,
                    default_size: format!("{width}x{height}"),
                    default: n == 0,
                }
            })
            .collect();
        ModelsView { chat, image }
    }
}
