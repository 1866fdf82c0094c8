//! Seams: the interfaces through which the node reaches what several nodes must share — limits
//! and the per-user session cap. Each is a trait with the in-process implementation beside it,
//! built on the actors of `switchboard-actors`; callers hold the trait, never an actor address,
//! and each implementation states once what happens when its engine cannot answer.

pub mod limiter;
pub mod session_cap;
