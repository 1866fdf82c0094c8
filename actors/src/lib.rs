//! Switchboard's engines below the seams, free of HTTP: the credit and presence actors with their
//! messages, and the rate-limit and failure-throttle tables. The realtime gateway (one session
//! actor per WebSocket, in the server crate) reaches them through the server's seams; they never
//! see an HTTP or WebSocket type, and their messages are plain Rust values that are never
//! serialised.
//!
//! Actors are kept where they give the product its shape: one credit actor serialises one
//! user's balance changes, one presence actor orders a node's joins, leaves and revocations.
//! Where the state is already safe to share, a plain struct serves, since a mailbox would only
//! queue callers that could have run side by side.
//!
//! - [`credit`]: a [`credit::CreditActor`] per user serialises that user's balance changes;
//!   [`credit::CreditRegistry`] finds or starts it and stops it when idle.
//! - [`rate_limit`]: [`rate_limit::RateLimits`], GCRA buckets per key (user or IP) in a
//!   sharded map.
//! - [`throttle`]: [`throttle::Failures`], growing delays after repeated failures (logins, reset
//!   tokens) per account or IP, in a sharded map.
//! - [`presence`]: [`presence::PresenceActor`] knows every session of the node, keeps the
//!   `active_users`/`ws_sessions` gauges, fans presence out to admins and routes pushes to
//!   every session of a user, each through its [`presence::SessionInbox`].

pub mod credit;
pub mod presence;
pub mod rate_limit;
pub mod throttle;
