//! The realtime gateway: `GET /ws` upgrades to a session actor speaking the JSON protocol of
//! docs/API.md §5.
//!
//! - [`upgrade`]: the per-IP limits, the credential and the origin of cookie connections, the
//!   per-user session cap, then the actor and its writer.
//! - [`ip_cap`]: open sockets per client IP on this node.
//! - [`session`]: `WsSession`, one actor per connection: parsing, heartbeat, presence, closing.
//! - [`requests`]: requests handed to services in their own tasks, and events turned into frames.
//! - [`protocol`]: the wire protocol, its views, error and close codes.
//! - [`outbox`]: the byte-budget outbound queue and the writer task.
//! - [`frame_guard`]: ends a connection at the header of an oversized frame.

pub mod error;
pub mod frame_guard;
pub mod outbox;
pub mod protocol;
pub mod requests;
pub mod session;
pub mod upgrade;
