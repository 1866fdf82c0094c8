//! The contract for the credit ledger: charges, grants and refunds as entries, the cached balance,
//! refusals, concurrent charges, paging, and the credits used per service.

use std::collections::BTreeSet;
use std::sync::Arc;

use switchboard::services::credits::ledger::{self, CreditChange, CreditError};
use switchboard::store::*;

use super::{change, insert_new_user};
use crate::support::store::open_test_store;

#[actix_web::test]
async fn a_change_from_a_stale_position_loses_the_race_rereads_and_lands_right() {
    // As when another node changed the balance after this node's credit actor last looked.
    let (store, _dir) = open_test_store().await;
    let user = insert_new_user(store.as_ref(), 20).await;
    let elsewhere =
        ledger::apply(store.as_ref(), None, &change(&user.id, ServiceType::Grant, 5)).await.0.unwrap();
    let stale = ledger::Position { seq: 0, balance: 20, held: 0, day: None };

    let (outcome, after) =
        ledger::apply(store.as_ref(), Some(stale), &change(&user.id, ServiceType::Chat, -3)).await;

    let entry = outcome.expect("the charge lands after rereading");
    assert_eq!((entry.seq, entry.balance_after), (elsewhere.seq + 1, 22), "counted from the real position");
    assert_eq!(after.map(|p| (p.seq, p.balance)), Some((2, 22)), "the position to remember");
    let refused = ledger::apply(store.as_ref(), after, &change(&user.id, ServiceType::Image, -23)).await;
    assert!(matches!(refused.0, Err(CreditError::Insufficient { balance: 22, .. })), "{:?}", refused.0);
    assert_eq!(refused.1, after, "a refusal keeps the position");
}

fn refund(user_id: &str, of: ServiceType, amount: i64) -> CreditChange {
    CreditChange {
        refund_of: Some(of),
        reference: Some("refunded-entry".into()),
        ..change(user_id, ServiceType::Refund, amount)
    }
}

#[actix_web::test]
async fn charges_and_grants_write_entries_and_update_the_cached_credits() {
    let (store, _dir) = open_test_store().await;
    let user = insert_new_user(store.as_ref(), 20).await;
    let admin = insert_new_user(store.as_ref(), 0).await;

    let charge = CreditChange { reference: Some("msg-1".into()), ..change(&user.id, ServiceType::Chat, -5) };
    let charged = ledger::apply(store.as_ref(), None, &charge).await.0.expect("charge within balance");
    assert_eq!(
        (charged.seq, charged.amount, charged.balance_after, charged.service_type),
        (1, -5, 15, ServiceType::Chat),
        "the charge entry"
    );
    let cached = store.user_by_id(&user.id).await.unwrap().unwrap();
    assert_eq!((cached.credits, cached.credits_seq), (15, 1), "cache after the charge");

    let grant = CreditChange {
        reference: Some("welcome bonus".into()),
        actor_id: Some(admin.id.clone()),
        ..change(&user.id, ServiceType::Grant, 10)
    };
    let granted = ledger::apply(store.as_ref(), None, &grant).await.0.expect("grant");
    assert_eq!((granted.seq, granted.balance_after), (2, 25), "the grant entry");
    let cached = store.user_by_id(&user.id).await.unwrap().unwrap();
    assert_eq!((cached.credits, cached.credits_seq), (25, 2), "cache after the grant");

    assert_eq!(
        store.last_ledger_entry(&user.id).await.unwrap(),
        Some(granted.clone()),
        "the last entry reads back exactly"
    );
    assert_eq!(
        store.ledger_page(&user.id, None, 10).await.unwrap(),
        vec![granted, charged],
        "both entries read back exactly"
    );
    assert_eq!(
        store.ledger_page(&admin.id, None, 10).await.unwrap(),
        vec![],
        "the admin's own ledger is empty"
    );
}

#[actix_web::test]
async fn a_charge_above_the_balance_is_refused_without_writing_an_entry() {
    let (store, _dir) = open_test_store().await;
    let user = insert_new_user(store.as_ref(), 20).await;

    let result = ledger::apply(store.as_ref(), None, &change(&user.id, ServiceType::Image, -21)).await.0;
    assert!(matches!(result, Err(CreditError::Insufficient { balance: 20, .. })), "no entry yet: {result:?}");
    assert_eq!(store.last_ledger_entry(&user.id).await.unwrap(), None, "nothing was written");

    ledger::apply(store.as_ref(), None, &change(&user.id, ServiceType::Image, -15))
        .await
        .0
        .expect("within balance");
    let result = ledger::apply(store.as_ref(), None, &change(&user.id, ServiceType::Image, -6)).await.0;
    assert!(
        matches!(result, Err(CreditError::Insufficient { balance: 5, .. })),
        "after a charge: {result:?}"
    );
    assert_eq!(store.ledger_page(&user.id, None, 10).await.unwrap().len(), 1, "still one entry");
    let cached = store.user_by_id(&user.id).await.unwrap().unwrap();
    assert_eq!((cached.credits, cached.credits_seq), (5, 1), "the cache is unchanged by the refusal");

    let exact = ledger::apply(store.as_ref(), None, &change(&user.id, ServiceType::Chat, -5))
        .await
        .0
        .expect("to exactly zero");
    assert_eq!(exact.balance_after, 0, "the balance may reach zero");

    let unknown = ledger::apply(store.as_ref(), None, &change("no-such-user", ServiceType::Grant, 5)).await.0;
    assert!(matches!(unknown, Err(CreditError::UnknownUser)), "unknown user: {unknown:?}");
}

#[actix_web::test]
async fn a_ledger_entry_with_a_taken_sequence_number_is_a_duplicate() {
    let (store, _dir) = open_test_store().await;
    let user = insert_new_user(store.as_ref(), 10).await;
    let entry =
        ledger::apply(store.as_ref(), None, &change(&user.id, ServiceType::Chat, -1)).await.0.unwrap();
    let rival =
        LedgerEntry { id: uuid::Uuid::now_v7().to_string(), amount: -2, balance_after: 8, ..entry.clone() };
    let result = store.insert_ledger_entry(&rival).await;
    assert!(matches!(result, Err(StoreError::Duplicate)), "same (user_id, seq): {result:?}");
    assert_eq!(
        store.ledger_page(&user.id, None, 10).await.unwrap(),
        vec![entry],
        "only the first entry exists"
    );

    let other_user = insert_new_user(store.as_ref(), 10).await;
    let same_seq_elsewhere = LedgerEntry { user_id: other_user.id.clone(), ..rival };
    store.insert_ledger_entry(&same_seq_elsewhere).await.expect("seq 1 of another user is free");
}

#[actix_web::test]
async fn the_cached_balance_never_goes_back_to_an_older_entry() {
    let (store, _dir) = open_test_store().await;
    let user = insert_new_user(store.as_ref(), 10).await;
    ledger::apply(store.as_ref(), None, &change(&user.id, ServiceType::Chat, -1)).await.0.unwrap();
    ledger::apply(store.as_ref(), None, &change(&user.id, ServiceType::Chat, -1)).await.0.unwrap();
    // A slow writer that finished entry 1 only now must not overwrite the cache of entry 2.
    store.cache_balance(&user.id, 1, 9).await.unwrap();
    let cached = store.user_by_id(&user.id).await.unwrap().unwrap();
    assert_eq!((cached.credits, cached.credits_seq), (8, 2), "the cache still shows entry 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn fifty_concurrent_charges_against_twenty_credits_succeed_exactly_twenty_times() {
    let (store, _dir) = open_test_store().await;
    let user = insert_new_user(store.as_ref(), 20).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (store, barrier) = (store.clone(), barrier.clone());
            let charge = CreditChange {
                reference: Some(format!("msg-{i}")),
                ..change(&user.id, ServiceType::Chat, -1)
            };
            tokio::spawn(async move {
                barrier.wait().await;
                ledger::apply(store.as_ref(), None, &charge).await.0
            })
        })
        .collect();
    let (mut succeeded, mut refused) = (0, 0);
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => succeeded += 1,
            Err(CreditError::Insufficient { balance: 0, .. }) => refused += 1,
            Err(other) => panic!("a charge failed for another reason: {other:?}"),
        }
    }
    assert_eq!((succeeded, refused), (20, 30), "20 charges succeed and 30 are refused");

    let ledger::Position { seq, balance, .. } = ledger::position(store.as_ref(), &user.id).await.unwrap();
    assert_eq!((seq, balance), (20, 0), "balance from the ledger");
    let cached = store.user_by_id(&user.id).await.unwrap().unwrap();
    assert_eq!((cached.credits, cached.credits_seq), (0, 20), "the cached balance caught up");

    let mut entries = store.ledger_page(&user.id, None, 100).await.unwrap();
    entries.reverse();
    let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
    let balances: Vec<i64> = entries.iter().map(|e| e.balance_after).collect();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>(), "seq 1..=20 without gaps");
    assert_eq!(balances, (0..20).rev().collect::<Vec<_>>(), "balance_after 19 down to 0");
    let references: BTreeSet<_> = entries.iter().map(|e| e.reference.clone()).collect();
    assert_eq!(references.len(), 20, "each entry belongs to a different charge");
}

#[actix_web::test]
async fn ledger_pages_run_newest_first_and_continue_before_a_sequence_number() {
    let (store, _dir) = open_test_store().await;
    let user = insert_new_user(store.as_ref(), 100).await;
    for _ in 0..7 {
        ledger::apply(store.as_ref(), None, &change(&user.id, ServiceType::Chat, -1)).await.0.unwrap();
    }
    let other = insert_new_user(store.as_ref(), 100).await;
    ledger::apply(store.as_ref(), None, &change(&other.id, ServiceType::Chat, -1)).await.0.unwrap();

    let cases: &[(&str, Option<i64>, i64, &[i64])] = &[
        ("first page", None, 3, &[7, 6, 5]),
        ("continued before 5", Some(5), 3, &[4, 3, 2]),
        ("the last, short page", Some(2), 3, &[1]),
        ("before the first entry", Some(1), 3, &[]),
        ("everything", None, 100, &[7, 6, 5, 4, 3, 2, 1]),
        ("before a number past the end", Some(100), 2, &[7, 6]),
        ("limit 0", None, 0, &[]),
    ];
    for (case, before, limit, expected) in cases {
        let page = store.ledger_page(&user.id, *before, *limit).await.unwrap();
        let seqs: Vec<i64> = page.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, *expected, "{case}");
        assert!(page.iter().all(|e| e.user_id == user.id), "{case}: only the user's own entries");
    }
}

#[actix_web::test]
async fn user_stats_count_credits_used_per_service_net_of_refunds() {
    let (store, _dir) = open_test_store().await;
    let user = insert_new_user(store.as_ref(), 100).await;
    let other = insert_new_user(store.as_ref(), 100).await;
    let fresh = insert_new_user(store.as_ref(), 100).await;
    let changes = [
        change(&user.id, ServiceType::Chat, -1),
        change(&user.id, ServiceType::Chat, -1),
        change(&user.id, ServiceType::Chat, -1),
        change(&user.id, ServiceType::Image, -10),
        change(&user.id, ServiceType::Image, -10),
        refund(&user.id, ServiceType::Image, 10),
        refund(&user.id, ServiceType::Chat, 1),
        change(&user.id, ServiceType::Grant, 50),
        change(&other.id, ServiceType::Chat, -7),
        change(&other.id, ServiceType::Image, -20),
    ];
    for c in &changes {
        ledger::apply(store.as_ref(), None, c).await.0.expect("apply");
    }
    let cases = [
        ("user with charges, refunds and a grant", &user, CreditsUsed { chat: 2, image: 10 }),
        ("another user", &other, CreditsUsed { chat: 7, image: 20 }),
        ("a user without entries", &fresh, CreditsUsed::default()),
    ];
    for (case, u, used) in cases {
        let stats = store.user_stats(&u.id).await.unwrap();
        assert_eq!(stats, UserStats { total_chats: 0, total_images: 0, credits_used: used }, "{case}");
    }
    let refund_entry = store.ledger_page(&user.id, Some(7), 1).await.unwrap();
    assert_eq!(
        refund_entry.first().map(|e| (e.service_type, e.refund_of, e.reference.clone())),
        Some((ServiceType::Refund, Some(ServiceType::Image), Some("refunded-entry".into()))),
        "a refund keeps what it refunds"
    );
}

/// An entry of `user_id` numbered `seq` at `at`, inserted as is (the balance is not checked here).
async fn entry_at(
    store: &dyn Store,
    user_id: &str,
    seq: i64,
    kind: (ServiceType, Option<ServiceType>),
    amount: i64,
    at: time::OffsetDateTime,
) {
    let entry = LedgerEntry {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: user_id.into(),
        seq,
        service_type: kind.0,
        amount,
        balance_after: 1_000 + seq,
        reference: None,
        actor_id: None,
        refund_of: kind.1,
        created_at: at,
        kind: EntryKind::of_legacy(kind.0),
        model: None,
        usage: None,
        held_after: 0,
        day_spent_after: None,
    };
    store.insert_ledger_entry(&entry).await.expect("insert entry");
}

#[actix_web::test]
async fn ledger_days_sum_each_kind_per_utc_day_for_one_user_or_everyone() {
    use ServiceType::*;
    let (store, _dir) = open_test_store().await;
    let (ada, bob) = (insert_new_user(store.as_ref(), 0).await, insert_new_user(store.as_ref(), 0).await);
    let today = utc_day(now()).midnight().assume_utc();
    let (yesterday, two_days_ago) = (today - time::Duration::days(1), today - time::Duration::days(2));
    let last_moment = today - time::Duration::milliseconds(1);
    let entries = [
        (&ada, (Chat, None), -1, two_days_ago),
        (&ada, (Chat, None), -1, yesterday),
        (&ada, (Image, None), -10, last_moment),
        (&ada, (Refund, Some(Image)), 10, last_moment),
        (&ada, (Grant, None), 50, today),
        (&ada, (Chat, None), -1, today),
        (&ada, (Refund, Some(Chat)), 1, today + time::Duration::hours(1)),
        (&bob, (Grant, None), -5, today),
        (&bob, (Chat, None), -2, today),
    ];
    let mut seqs = std::collections::HashMap::new();
    for (user, kind, amount, at) in entries {
        let seq = seqs.entry(user.id.clone()).or_insert(0);
        *seq += 1;
        entry_at(store.as_ref(), &user.id, *seq, kind, amount, at).await;
    }

    let ada_days = store.ledger_days(Some(&ada.id), yesterday).await.unwrap();
    let day = |date: time::Date, chat, image, grant, refund_chat, refund_image| LedgerDay {
        date,
        chat,
        image,
        grant,
        refund_chat,
        refund_image,
        allowance: 0,
    };
    let (d1, d2) = (utc_day(yesterday), utc_day(today));
    assert_eq!(
        ada_days,
        [day(d1, -1, -10, 0, 0, 10), day(d2, -1, 0, 50, 1, 0)],
        "one user's days, oldest first; the last millisecond of a day stays on it; older days are left out"
    );
    let everyone = store.ledger_days(None, yesterday).await.unwrap();
    assert_eq!(everyone, [day(d1, -1, -10, 0, 0, 10), day(d2, -3, 0, 45, 1, 0)], "everyone's days");
    assert!(store.ledger_days(Some("nobody"), yesterday).await.unwrap().is_empty(), "no entries, no days");
}

#[actix_web::test]
async fn repairing_the_cached_balance_is_a_compare_and_set() {
    let (store, _dir) = open_test_store().await;
    let user = insert_new_user(store.as_ref(), 20).await;
    // An entry whose cache refresh never happened, as after a crash between the two writes.
    let entry = LedgerEntry {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: user.id.clone(),
        seq: 1,
        service_type: ServiceType::Grant,
        amount: 5,
        balance_after: 25,
        reference: Some("crash window".into()),
        actor_id: None,
        refund_of: None,
        created_at: now(),
        kind: EntryKind::of_legacy(ServiceType::Grant),
        model: None,
        usage: None,
        held_after: 0,
        day_spent_after: None,
    };
    store.insert_ledger_entry(&entry).await.unwrap();
    let stale = CachedBalance { seq: 0, credits: 20 };
    let fresh = CachedBalance { seq: 1, credits: 25 };
    assert_eq!(store.user_by_id(&user.id).await.unwrap().unwrap().cached_balance(), stale, "the cache lags");

    let wrong_from = CachedBalance { seq: 0, credits: 19 };
    assert!(
        !store.repair_cached_balance(&user.id, wrong_from, fresh).await.unwrap(),
        "a repair from a value the cache does not hold changes nothing"
    );
    assert_eq!(store.user_by_id(&user.id).await.unwrap().unwrap().cached_balance(), stale, "still stale");
    assert!(store.repair_cached_balance(&user.id, stale, fresh).await.unwrap(), "the repair from the cache");
    let repaired = store.user_by_id(&user.id).await.unwrap().unwrap();
    assert_eq!(repaired.cached_balance(), fresh, "the cache holds the newest entry");
    assert_eq!((repaired.email, repaired.first_name), (user.email, user.first_name), "nothing else changed");
    assert!(
        !store.repair_cached_balance("no-such-user", stale, fresh).await.unwrap(),
        "an unknown user is not repaired"
    );
}
