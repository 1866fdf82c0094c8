//! Switchboard's actor system, free of HTTP: the credit, rate-limit and presence actors and
//! their messages. The realtime gateway (one session actor per WebSocket, in the server crate)
//! talks to these actors; they never see an HTTP or WebSocket type, and their messages are plain
//! Rust values that are never serialised.
//!
//! - [`credit`]: a [`credit::CreditActor`] per user serialises that user's balance changes;
//!   [`credit::CreditRegistry`] finds or starts it and stops it when idle.
//! - [`rate_limit`]: [`rate_limit::RateLimiterActor`], GCRA buckets per key (user or IP).
//! - [`throttle`]: [`throttle::FailureThrottleActor`], growing delays after repeated failures
//!   (logins, reset tokens) per account or IP.
//! - [`presence`]: [`presence::PresenceActor`] knows every session of the node, keeps the
//!   `active_users`/`ws_sessions` gauges, fans presence out to admins and routes pushes to
//!   every session of a user, each through its [`presence::SessionInbox`].

pub mod credit;
pub mod presence;
pub mod rate_limit;
pub mod throttle;
