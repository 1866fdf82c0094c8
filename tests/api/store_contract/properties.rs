//! Properties of the ledger and of paging, over many generated cases (proptest), on the store
//! under test: where a fuzzer would only find crashes, these check the arithmetic.
//!
//! - Any sequence of charges, refunds and grants, made by two writers that each remember their
//!   own (often stale) position, as two nodes' credit actors do, gives exactly the balance a
//!   plain model gives: every change the model can afford lands, every other is refused, and the
//!   ledger's chain (`seq` 1, 2, 3…, each `balance_after` following the one before) holds.
//! - Paging through a ledger with any page size yields every entry once, newest first, and a
//!   page is followed by another exactly when it is full.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use switchboard::services::credits::ledger::{self, CreditError, Position};
use switchboard::services::paging::{Page, PageLimit};
use switchboard::store::*;

use super::{change, insert_new_user};
use crate::support::store::open_test_store;
use crate::support::store::{TestStore, test_store};

/// One generated change: which writer makes it, what kind, how much.
#[derive(Debug, Clone)]
struct Step {
    writer: usize,
    kind: ServiceType,
    amount: i64,
}

/// Charges of a chat or an image, refunds, and grants that may be negative (an admin's
/// take-back); never zero.
fn step() -> impl Strategy<Value = Step> {
    let kind = prop_oneof![
        Just((ServiceType::Chat, -1i64, -1i64)),
        Just((ServiceType::Image, -15, -5)),
        Just((ServiceType::Refund, 1, 10)),
        Just((ServiceType::Grant, -20, 30)),
    ];
    (0..2usize, kind)
        .prop_flat_map(|(writer, (kind, low, high))| {
            (Just(writer), Just(kind), (low..=high).prop_filter("never zero", |a| *a != 0))
        })
        .prop_map(|(writer, kind, amount)| Step { writer, kind, amount })
}

/// A runner (fewer cases on FerretDB: each case writes to real storage) and a runtime to drive
/// the store in.
fn runner() -> (TestRunner, tokio::runtime::Runtime) {
    let cases = if matches!(test_store(), TestStore::Mongo(_)) { 24 } else { 96 };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    (TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() }), runtime)
}

#[test]
fn two_writers_with_stale_positions_give_exactly_the_models_balance() {
    let (mut runner, runtime) = runner();
    let (store, _dir) = runtime.block_on(open_test_store());
    let strategy = (0..40i64, proptest::collection::vec(step(), 1..24));
    let outcome = runner.run(&strategy, |(initial, steps)| {
        runtime.block_on(async {
            let user = insert_new_user(store.as_ref(), initial).await;
            let mut known: [Option<Position>; 2] = [None, None];
            let mut model = initial;
            let mut landed = 0;
            for (n, step) in steps.iter().enumerate() {
                let requested = change(&user.id, step.kind, step.amount);
                let (outcome, after) = ledger::apply(store.as_ref(), known[step.writer], &requested).await;
                known[step.writer] = after;
                if model + step.amount >= 0 {
                    let entry =
                        outcome.map_err(|e| TestCaseError::fail(format!("step {n} {step:?}: {e}")))?;
                    model += step.amount;
                    landed += 1;
                    prop_assert_eq!(
                        (entry.seq, entry.balance_after),
                        (landed, model),
                        "step {} {:?}",
                        n,
                        step
                    );
                } else {
                    prop_assert!(
                        matches!(outcome, Err(CreditError::Insufficient { balance, .. }) if balance == model),
                        "step {n} {step:?} must be refused at balance {model}: {outcome:?}"
                    );
                }
            }
            let ledger::Position { seq, balance, .. } =
                ledger::position(store.as_ref(), &user.id).await.unwrap();
            prop_assert_eq!((seq, balance), (landed, model), "the balance read afresh");
            let entries = store.ledger_page(&user.id, None, 100).await.unwrap();
            let mut before = initial;
            for (entry, seq) in entries.iter().rev().zip(1..) {
                prop_assert_eq!(entry.seq, seq, "no gap in seq");
                prop_assert_eq!(entry.balance_after, before + entry.amount, "the chain holds at seq {}", seq);
                prop_assert!(entry.balance_after >= 0, "never negative");
                before = entry.balance_after;
            }
            Ok(())
        })
    });
    outcome.unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn paging_a_ledger_with_any_page_size_yields_every_entry_once_newest_first() {
    let (mut runner, runtime) = runner();
    let (store, _dir) = runtime.block_on(open_test_store());
    let outcome = runner.run(&(0..25i64, 1..=12i64), |(entries, size)| {
        runtime.block_on(async {
            let user = insert_new_user(store.as_ref(), 0).await;
            for _ in 0..entries {
                ledger::apply(store.as_ref(), None, &change(&user.id, ServiceType::Grant, 1))
                    .await
                    .0
                    .unwrap();
            }
            let limit = PageLimit::new(Some(size)).unwrap();
            let (mut seen, mut before, mut pages) = (Vec::new(), None, 0);
            loop {
                let items = store.ledger_page(&user.id, before, limit.get()).await.unwrap();
                let page = Page::of(items, limit, |e: &LedgerEntry| Some(e.seq.to_string()));
                pages += 1;
                prop_assert!(page.items.len() as i64 <= size, "a page holds at most its limit");
                let full = page.items.len() as i64 == size;
                prop_assert_eq!(page.next_before.is_some(), full, "a successor exactly after a full page");
                seen.extend(page.items.iter().map(|e| e.seq));
                match page.next_before {
                    Some(cursor) => before = Some(cursor.parse().unwrap()),
                    None => break,
                }
                prop_assert!(pages <= entries + 1, "paging ends");
            }
            let expected: Vec<i64> = (1..=entries).rev().collect();
            prop_assert_eq!(seen, expected, "every entry once, newest first");
            Ok(())
        })
    });
    outcome.unwrap_or_else(|e| panic!("{e}"));
}
