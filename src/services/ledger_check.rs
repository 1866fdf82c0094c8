//! `switchboard check-ledger` (docs/API.md §7): walks every user's ledger and checks what the credits
//! design promises — `seq` runs 1, 2, 3… without a gap, each `balance_after` is the previous one
//! plus the entry's amount (starting from the user's starting credits), no balance is negative —
//! and that the balance cached on the user is the newest entry's. A stale cache is not damage
//! (every view reads the ledger; a crash between an insert and the cache refresh leaves one), and
//! `--repair` rewrites it with a compare-and-set, so the check is safe beside a running server.
//! Gaps, broken chains and negative balances are damage it cannot repair.
//!
//! Holds (docs/API.md §8) are checked too: `held_after` must follow from the holds and settles
//! before it, and a hold without its settle older than `--hold-age` (longer than any generation
//! runs) is damage: its generation's node died or its settle kept failing. `--repair` settles it
//! through the credits service, with what its stored reply or image was charged (a reply still
//! marked streaming is ended `interrupted` and charged 0), so no credits stay held for nothing.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::credits::{CreditService, Hold};
use super::{Event, Notify};
use crate::store::{
    CachedBalance, DynStore, EntryKind, LedgerEntry, MessageEnd, MessageStatus, Store, StoreError, User,
};

/// Users read per page.
const USER_PAGE: i64 = 500;
/// Ledger entries read per page.
const ENTRY_PAGE: i64 = 1_000;
/// Attempts of one repair when a running server changes the balance meanwhile.
const REPAIR_ATTEMPTS: usize = 5;

/// What is wrong with one user's ledger or cached balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// An entry's `seq` is not the one after the previous entry's.
    Gap {
        /// The `seq` that was expected.
        expected: i64,
        /// The `seq` found.
        found: i64,
    },
    /// An entry's `balance_after` does not follow from the previous balance and its amount.
    BrokenChain {
        /// The entry.
        seq: i64,
        /// Previous balance plus amount.
        expected: i64,
        /// Its `balance_after`.
        found: i64,
    },
    /// A balance below zero.
    Negative {
        /// The entry.
        seq: i64,
        /// Its `balance_after`.
        balance: i64,
    },
    /// An entry's `held_after` does not follow from the holds and settles before it.
    BrokenHeld {
        /// The entry.
        seq: i64,
        /// What the holds and settles add up to.
        expected: i64,
        /// Its `held_after`.
        found: i64,
    },
    /// A hold without its settle, older than `--hold-age`. `repaired` is what its settle charged
    /// when `--repair` closed it.
    OpenHold {
        /// The hold's entry.
        seq: i64,
        /// Its generation.
        reference: String,
        /// Credits it holds.
        held: i64,
        /// What `--repair` charged when it settled it.
        repaired: Option<i64>,
    },
    /// The balance cached on the user is not the newest entry's (not damage: views read the
    /// ledger). `repaired` says whether `--repair` rewrote it.
    StaleCache {
        /// What the user record holds.
        cached: CachedBalance,
        /// What the ledger says.
        ledger: CachedBalance,
        /// Rewritten by `--repair`.
        repaired: bool,
    },
}

impl Problem {
    /// Damage that no repair can undo (everything but a stale cache).
    pub fn is_damage(&self) -> bool {
        !matches!(self, Problem::StaleCache { .. } | Problem::OpenHold { repaired: Some(_), .. })
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Gap { expected, found } => write!(f, "gap in seq: expected {expected}, found {found}"),
            Problem::BrokenChain { seq, expected, found } => {
                write!(f, "broken chain at seq {seq}: balance_after {found}, expected {expected}")
            }
            Problem::Negative { seq, balance } => write!(f, "negative balance {balance} at seq {seq}"),
            Problem::BrokenHeld { seq, expected, found } => {
                write!(f, "broken held chain at seq {seq}: held_after {found}, expected {expected}")
            }
            Problem::OpenHold { seq, reference, held, repaired } => {
                write!(f, "hold of {held} at seq {seq} for {reference} has no settle")?;
                match repaired {
                    Some(charged) => write!(f, ": settled, charged {charged}"),
                    None => Ok(()),
                }
            }
            Problem::StaleCache { cached, ledger, repaired } => write!(
                f,
                "stale cached balance {} (seq {}), ledger says {} (seq {}){}",
                cached.credits,
                cached.seq,
                ledger.credits,
                ledger.seq,
                if *repaired { ": repaired" } else { "" }
            ),
        }
    }
}

/// One problem of one user.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Whose.
    pub user_id: String,
    /// What.
    pub problem: Problem,
}

/// What a check found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Users checked.
    pub users: usize,
    /// Ledger entries checked.
    pub entries: usize,
    /// Every problem, in user order.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Problems that remain damage.
    pub fn damaged(&self) -> usize {
        self.findings.iter().filter(|f| f.problem.is_damage()).count()
    }

    /// Stale cached balances found, repaired or not.
    pub fn stale(&self) -> usize {
        self.findings.iter().filter(|f| !f.problem.is_damage()).count()
    }

    /// Stale cached balances rewritten and open holds settled.
    pub fn repaired(&self) -> usize {
        let repaired = |f: &&Finding| {
            matches!(
                f.problem,
                Problem::StaleCache { repaired: true, .. } | Problem::OpenHold { repaired: Some(_), .. }
            )
        };
        self.findings.iter().filter(repaired).count()
    }

    /// The report's lines: one per finding, then the summary.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> =
            self.findings.iter().map(|f| format!("user {}: {}", f.user_id, f.problem)).collect();
        lines.push(format!(
            "checked {} users, {} ledger entries: {} damaged, {} stale cached balances, {} repaired (cached balances and holds)",
            self.users,
            self.entries,
            self.damaged(),
            self.stale(),
            self.repaired()
        ));
        lines
    }
}

/// How the check runs.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Rewrite stale cached balances and settle open holds.
    pub repair: bool,
    /// How old a hold without its settle must be to count as left open.
    pub hold_age: time::Duration,
}

/// Tells nobody: `check-ledger` runs beside the servers, whose sockets it does not hold.
struct Nobody;

impl Notify for Nobody {
    fn notify(&self, _: &str, _: Event) {}
}

/// Checks every user's ledger; with `repair`, rewrites stale cached balances and settles holds
/// left open.
pub async fn check_ledger(store: DynStore, options: Options) -> Result<Report, StoreError> {
    let credits = CreditService::new(store.clone(), Arc::new(Nobody));
    let mut report = Report::default();
    let mut offset = 0;
    loop {
        let (users, _) = store.list_users(None, USER_PAGE, offset).await?;
        for user in &users {
            check_user(&*store, &credits, user, options, &mut report).await?;
        }
        if (users.len() as i64) < USER_PAGE {
            return Ok(report);
        }
        offset += USER_PAGE;
    }
}

/// Checks one user: the chain of entries, the holds, then the cached balance.
async fn check_user(
    store: &dyn Store,
    credits: &CreditService,
    user: &User,
    options: Options,
    report: &mut Report,
) -> Result<(), StoreError> {
    // The user is read before the entries, so a server running beside the check can only make
    // the cache look older than the ledger, never newer.
    let entries = all_entries(store, &user.id).await?;
    report.users += 1;
    report.entries += entries.len();
    let mut problems = chain_problems(user.initial_credits, &entries);
    for hold in open_holds(&entries, crate::store::now() - options.hold_age) {
        let repaired = if options.repair { settle_open(store, credits, hold).await? } else { None };
        let reference = hold.reference.clone().unwrap_or_default();
        problems.push(Problem::OpenHold { seq: hold.seq, reference, held: -hold.amount, repaired });
    }
    let ledger = entries.last().map_or(CachedBalance { seq: 0, credits: user.initial_credits }, |last| {
        CachedBalance { seq: last.seq, credits: last.balance_after }
    });
    if user.cached_balance() != ledger {
        let repaired = options.repair && repair_cache(store, user, ledger).await?;
        problems.push(Problem::StaleCache { cached: user.cached_balance(), ledger, repaired });
    }
    report.findings.extend(problems.into_iter().map(|problem| Finding { user_id: user.id.clone(), problem }));
    Ok(())
}

/// The holds of `entries` that have no settle and were made before `older_than`.
fn open_holds(entries: &[LedgerEntry], older_than: time::OffsetDateTime) -> Vec<&LedgerEntry> {
    let settled: std::collections::HashSet<&str> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::Settle)
        .filter_map(|e| e.reference.as_deref())
        .collect();
    entries
        .iter()
        .filter(|e| e.kind == EntryKind::Hold && e.created_at < older_than)
        .filter(|e| !e.reference.as_deref().is_some_and(|r| settled.contains(r)))
        .collect()
}

/// Settles a hold left open with what its generation was charged, as stored: an ended reply's or
/// a stored image's charge; a reply still marked streaming is ended `interrupted` (its text so far
/// kept) and charged 0, like anything whose result was never stored. Answers the charge.
async fn settle_open(
    store: &dyn Store,
    credits: &CreditService,
    hold: &LedgerEntry,
) -> Result<Option<i64>, StoreError> {
    let reference = hold.reference.clone().unwrap_or_default();
    let held = -hold.amount;
    let charged = match store.message(&reference).await? {
        Some(message) if message.status == MessageStatus::Streaming => {
            let end = MessageEnd {
                content: message.content,
                status: MessageStatus::Interrupted,
                charged: 0,
                usage: None,
            };
            store.finish_message(&reference, &end).await?;
            0
        }
        Some(message) => message.charged.unwrap_or(0),
        None => match store.image(&reference).await? {
            Some(image) => image.charged.unwrap_or(held),
            None => 0,
        },
    };
    let open = Hold {
        user_id: hold.user_id.clone(),
        service: hold.service_type,
        model: hold.model.clone().unwrap_or_default(),
        reference,
        amount: held,
        balance_after: hold.balance_after,
    };
    Ok(credits.settle(&open, charged, None).await.map(|_| charged.clamp(0, held)))
}

/// The problems of a chain of entries (oldest first) that starts from `initial` credits.
pub fn chain_problems(initial: i64, entries: &[LedgerEntry]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let (mut expected_seq, mut balance, mut held) = (1, initial, 0);
    let mut holds: HashMap<&str, i64> = HashMap::new();
    for entry in entries {
        match entry.kind {
            EntryKind::Hold => {
                held += -entry.amount;
                if let Some(reference) = &entry.reference {
                    holds.insert(reference, -entry.amount);
                }
            }
            EntryKind::Settle => {
                held -= entry.reference.as_deref().and_then(|r| holds.remove(r)).unwrap_or(0);
            }
            _ => {}
        }
        if entry.held_after != held {
            problems.push(Problem::BrokenHeld { seq: entry.seq, expected: held, found: entry.held_after });
            held = entry.held_after;
        }
        if entry.seq != expected_seq {
            problems.push(Problem::Gap { expected: expected_seq, found: entry.seq });
        }
        let expected = balance.checked_add(entry.amount);
        if expected != Some(entry.balance_after) {
            problems.push(Problem::BrokenChain {
                seq: entry.seq,
                expected: expected.unwrap_or(i64::MAX),
                found: entry.balance_after,
            });
        }
        if entry.balance_after < 0 {
            problems.push(Problem::Negative { seq: entry.seq, balance: entry.balance_after });
        }
        expected_seq = entry.seq.saturating_add(1);
        balance = entry.balance_after;
    }
    problems
}

/// Every entry of a user, oldest first.
async fn all_entries(store: &dyn Store, user_id: &str) -> Result<Vec<LedgerEntry>, StoreError> {
    let mut entries = Vec::new();
    let mut before = None;
    loop {
        let page = store.ledger_page(user_id, before, ENTRY_PAGE).await?;
        let full = page.len() as i64 == ENTRY_PAGE;
        before = page.last().map(|e| e.seq);
        entries.extend(page);
        if !full {
            break;
        }
    }
    entries.reverse();
    Ok(entries)
}

/// Rewrites the cached balance to `ledger`'s; when a running server changed the user meanwhile,
/// reads both again and retries. True when the cache now matches the ledger.
async fn repair_cache(store: &dyn Store, user: &User, ledger: CachedBalance) -> Result<bool, StoreError> {
    let (mut cached, mut ledger) = (user.cached_balance(), ledger);
    for _ in 0..REPAIR_ATTEMPTS {
        if store.repair_cached_balance(&user.id, cached, ledger).await? {
            return Ok(true);
        }
        let Some(now) = store.user_by_id(&user.id).await? else { return Ok(false) };
        cached = now.cached_balance();
        ledger = match store.last_ledger_entry(&user.id).await? {
            Some(last) => CachedBalance { seq: last.seq, credits: last.balance_after },
            None => CachedBalance { seq: 0, credits: now.initial_credits },
        };
        if cached == ledger {
            return Ok(true);
        }
    }
    Ok(false)
}
