//! Per-user credit actors. One [`CreditActor`] per user with a pending change processes that
//! user's charges, grants and refunds one at a time ([`AtomicResponse`]), so one user's
//! requests never race each other on this node. Between changes the actor remembers where its
//! user's ledger stands (the [`Ledger::Position`]: for the store, the last sequence number and
//! balance), so a change is one insert, not a read and an insert. Across nodes the ledger itself
//! (an insert under a unique `(user_id, seq)` index) keeps the balance exact: a change that loses
//! a race to another node reloads the position and tries again.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use dashmap::DashMap;

/// The future a [`Ledger`] returns: the outcome, and the position to remember after it (`None`
/// to forget it, so the next change reads it afresh).
pub type LedgerFuture<A, E, P> = Pin<Box<dyn Future<Output = (Result<A, E>, Option<P>)> + Send>>;

/// Where balance changes are made durable. The server implements it over its store.
pub trait Ledger: Send + Sync + 'static {
    /// A requested change (amount, reason…).
    type Change: Clone + Send + 'static;
    /// What a successful change returns (the new entry, the balance…).
    type Applied: Send + 'static;
    /// Why a change was refused or failed.
    type Error: Send + 'static;
    /// Where a user's ledger stands, remembered by the actor between changes.
    type Position: Clone + Send + Unpin + 'static;

    /// Applies one change of `user_id`'s balance atomically, starting from `position` when the
    /// actor knows it.
    fn apply(
        &self,
        user_id: &str,
        position: Option<Self::Position>,
        change: Self::Change,
    ) -> LedgerFuture<Self::Applied, Self::Error, Self::Position>;
}

/// Apply one change to the actor's user.
pub struct ApplyChange<C, A, E> {
    /// The change.
    pub change: C,
    _result: std::marker::PhantomData<fn() -> (A, E)>,
}

impl<C: 'static, A: 'static, E: 'static> Message for ApplyChange<C, A, E> {
    type Result = Result<A, E>;
}

/// Serialises the balance changes of one user.
pub struct CreditActor<L: Ledger> {
    user_id: Arc<str>,
    ledger: Arc<L>,
    registry: Arc<CreditRegistry<L>>,
    position: Option<L::Position>,
    last_used: Instant,
}

impl<L: Ledger> Actor for CreditActor<L> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let idle = self.registry.idle_after;
        ctx.run_interval(idle / 2, move |actor, ctx| {
            if actor.last_used.elapsed() >= idle {
                actor.registry.forget(&actor.user_id, &ctx.address());
                ctx.stop();
            }
        });
    }
}

impl<L: Ledger> Handler<ApplyChange<L::Change, L::Applied, L::Error>> for CreditActor<L> {
    type Result = AtomicResponse<Self, Result<L::Applied, L::Error>>;

    fn handle(
        &mut self,
        msg: ApplyChange<L::Change, L::Applied, L::Error>,
        _: &mut Context<Self>,
    ) -> Self::Result {
        self.last_used = Instant::now();
        // AtomicResponse: no other change of this user starts until this one is stored.
        let work = self.ledger.apply(&self.user_id, self.position.take(), msg.change);
        AtomicResponse::new(Box::pin(work.into_actor(self).map(|(outcome, position), actor, _| {
            actor.position = position;
            outcome
        })))
    }
}

/// Why [`CreditRegistry::apply`] failed.
#[derive(Debug)]
pub enum CreditFailure<E> {
    /// The ledger refused or failed.
    Ledger(E),
    /// The actor could not be reached (the system is stopping).
    Unreachable,
}

/// Finds the credit actor of a user, starting one when needed; actors remove themselves
/// after `idle_after` without work.
pub struct CreditRegistry<L: Ledger> {
    actors: DashMap<Arc<str>, Addr<CreditActor<L>>>,
    ledger: Arc<L>,
    idle_after: Duration,
}

impl<L: Ledger> CreditRegistry<L> {
    /// A registry whose actors apply changes through `ledger`.
    pub fn new(ledger: Arc<L>, idle_after: Duration) -> Arc<CreditRegistry<L>> {
        Arc::new(CreditRegistry { actors: DashMap::new(), ledger, idle_after })
    }

    /// Applies `change` to `user_id`'s balance through that user's actor.
    pub async fn apply(
        self: &Arc<Self>,
        user_id: &str,
        change: L::Change,
    ) -> Result<L::Applied, CreditFailure<L::Error>> {
        // An actor that stopped for idleness between lookup and send is replaced once.
        for _ in 0..3 {
            let addr = self.actor_for(user_id);
            let message = ApplyChange { change: change.clone(), _result: std::marker::PhantomData };
            match addr.send(message).await {
                Ok(result) => return result.map_err(CreditFailure::Ledger),
                Err(_) => self.forget(user_id, &addr),
            }
        }
        Err(CreditFailure::Unreachable)
    }

    /// Number of live credit actors (for tests and metrics).
    pub fn len(&self) -> usize {
        self.actors.len()
    }

    /// True when no credit actor is live.
    pub fn is_empty(&self) -> bool {
        self.actors.is_empty()
    }

    fn actor_for(self: &Arc<Self>, user_id: &str) -> Addr<CreditActor<L>> {
        if let Some(addr) = self.actors.get(user_id).filter(|a| a.connected()) {
            return addr.clone();
        }
        let user_id: Arc<str> = user_id.into();
        self.actors
            .entry(user_id.clone())
            .and_modify(|addr| {
                if !addr.connected() {
                    *addr = self.start(user_id.clone());
                }
            })
            .or_insert_with(|| self.start(user_id.clone()))
            .clone()
    }

    fn start(self: &Arc<Self>, user_id: Arc<str>) -> Addr<CreditActor<L>> {
        let actor = CreditActor {
            user_id,
            ledger: self.ledger.clone(),
            registry: self.clone(),
            position: None,
            last_used: Instant::now(),
        };
        actor.start()
    }

    fn forget(&self, user_id: &str, addr: &Addr<CreditActor<L>>) {
        self.actors.remove_if(user_id, |_, current| current == addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A ledger in memory that yields between reading and writing the balance, so callers that
    /// were not serialised would overdraw it.
    #[derive(Default)]
    struct MemoryLedger {
        state: Arc<Mutex<(i64, Vec<i64>)>>,
    }

    impl Ledger for MemoryLedger {
        type Change = i64;
        type Applied = i64;
        type Error = i64;
        /// The balance the actor last saw.
        type Position = i64;

        fn apply(&self, _: &str, known: Option<i64>, amount: i64) -> LedgerFuture<i64, i64, i64> {
            let state = self.state.clone();
            Box::pin(async move {
                let current = match known {
                    Some(balance) => balance,
                    None => state.lock().unwrap().0,
                };
                tokio::time::sleep(Duration::from_millis(1)).await;
                if current + amount < 0 {
                    return (Err(current), Some(current));
                }
                let mut state = state.lock().unwrap();
                state.0 = current + amount;
                state.1.push(amount);
                (Ok(current + amount), Some(current + amount))
            })
        }
    }

    #[actix::test]
    async fn concurrent_charges_of_one_user_are_serialised_and_never_overdraw() {
        let ledger = MemoryLedger::default();
        ledger.state.lock().unwrap().0 = 10;
        let state = ledger.state.clone();
        let registry = CreditRegistry::new(Arc::new(ledger), Duration::from_secs(60));
        let tasks: Vec<_> = (0..25)
            .map(|_| {
                let registry = registry.clone();
                actix::spawn(async move { registry.apply("u1", -1).await })
            })
            .collect();
        let mut succeeded = 0;
        for task in tasks {
            if task.await.unwrap().is_ok() {
                succeeded += 1;
            }
        }
        assert_eq!(succeeded, 10, "exactly the balance is spent");
        assert_eq!(state.lock().unwrap().0, 0, "balance");
        assert_eq!(state.lock().unwrap().1.len(), 10, "one entry per charge");
        assert_eq!(registry.len(), 1, "one actor for the user");
    }

    #[actix::test]
    async fn an_idle_credit_actor_stops_and_a_new_one_serves_the_next_change() {
        let registry = CreditRegistry::new(Arc::new(MemoryLedger::default()), Duration::from_millis(40));
        assert_eq!(registry.apply("u1", 5).await.ok(), Some(5));
        assert_eq!(registry.len(), 1);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(registry.is_empty(), "the idle actor removed itself");
        assert_eq!(registry.apply("u1", 1).await.ok(), Some(6), "a new actor applies the next change");
    }
}
