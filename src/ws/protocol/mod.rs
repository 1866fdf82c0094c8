//! The WebSocket wire protocol (docs/API.md §5): the grammar of frames. What clients send is in
//! [`client`] (`ClientMessage` and `parse`), what the server sends in [`server`] (`ServerMessage`
//! and its encoding); the limits, close codes and error codes are here. The JSON views that frames
//! share with REST live in `crate::views`. Each frame's `type` is written once, beside its variant
//! (see [`frames!`]), and `kind()` answers it for metrics.

pub mod client;
pub mod server;

use serde::Serialize;

pub use self::client::{BadFrame, ClientMessage, parse};
pub use self::server::{GenerationView, HelloUser, ServerMessage};

/// Declares a frame enum whose variants are each named once on the wire: `"chat.send" =>
/// ChatSend { … }` becomes the variant renamed `"chat.send"` for serde, and `kind()`
/// answers `"chat.send"` for it. Attributes and doc comments pass through.
macro_rules! frames {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(
                $(#[$variant_meta:meta])*
                $wire:literal => $variant:ident $({ $($fields:tt)* })? $(( $($tuple:tt)* ))?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $(
                $(#[$variant_meta])*
                #[serde(rename = $wire)]
                $variant $({ $($fields)* })? $(( $($tuple)* ))?,
            )*
        }

        impl $name {
            /// The frame's `type`, as a static label (for metrics).
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Self::$variant { .. } => $wire,)*
                }
            }
        }
    };
}
pub(crate) use frames;

/// Largest accepted frame (and reassembled message), bytes; larger ones close with 1009.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Longest accepted `id`.
pub const MAX_ID_CHARS: usize = 64;

/// Close codes the server uses.
pub mod close {
    /// The server is stopping.
    pub const SHUTDOWN: u16 = 1001;
    /// A frame above [`super::MAX_MESSAGE_BYTES`].
    pub const TOO_BIG: u16 = 1009;
    /// The session's credential was revoked (logout, password change, deactivation, role change).
    pub const REVOKED: u16 = 4001;
    /// The client stopped reading and its outbound queue filled up.
    pub const SLOW: u16 = 4002;
    /// No frame from the client for three heartbeat intervals.
    pub const TIMEOUT: u16 = 4003;
}

/// Error codes of `{"type":"error"}` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Bad JSON, unknown type, missing or bad field, binary frame.
    InvalidMessage,
    /// The balance is below the price.
    InsufficientCredits,
    /// Too many paid messages; see `retry_after_ms`.
    RateLimited,
    /// No such chat (or not yours).
    NotFound,
    /// A per-user cap on stored things is reached (chats); delete some to make room.
    QuotaExceeded,
    /// Not allowed for this role.
    Forbidden,
    /// Storage or the assistant/image service failed; any charge was refunded.
    Unavailable,
    /// A bug; logged.
    Internal,
}
