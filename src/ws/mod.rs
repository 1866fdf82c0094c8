//! The realtime gateway: `GET /ws` upgrades to a session actor speaking the JSON protocol of
//! API.md §5.

pub mod frame_guard;
pub mod hub;
pub mod protocol;
pub mod session;
pub mod upgrade;
pub mod work;
