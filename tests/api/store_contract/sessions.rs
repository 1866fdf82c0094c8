//! The contract for sessions, refresh tokens, password reset tokens and once keys: each is read
//! back, revoked, used or consumed exactly once, also under concurrent callers.

use std::collections::BTreeSet;
use std::sync::Arc;

use switchboard::store::*;
use time::Duration;

use super::{insert_new_user, unique_hex};
use crate::support::store::open_test_store;

fn session_for(user_id: &str) -> Session {
    let at = now();
    Session {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: user_id.into(),
        created_at: at,
        revoked_at: None,
        last_used_at: at,
        ip: None,
        user_agent: None,
    }
}

#[actix_web::test]
async fn a_sessions_origin_and_use_read_back_and_only_open_recent_ones_are_listed() {
    let (store, _dir) = open_test_store().await;
    let user = insert_new_user(store.as_ref(), 0).await;
    let bystander = insert_new_user(store.as_ref(), 0).await;
    let at = now();
    let stale = Session { last_used_at: at - Duration::days(40), ..session_for(&user.id) };
    let recent = Session {
        ip: Some("2001:db8::7".into()),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0".into()),
        last_used_at: at - Duration::hours(1),
        ..session_for(&user.id)
    };
    let ended = Session { revoked_at: Some(at), ..session_for(&user.id) };
    let others = session_for(&bystander.id);
    for s in [&stale, &recent, &ended, &others] {
        store.insert_session(s).await.unwrap();
    }
    assert_eq!(store.session(&recent.id).await.unwrap(), Some(recent.clone()), "ip and user agent read back");

    let window = at - Duration::days(30);
    let listed = store.open_sessions(&user.id, window).await.unwrap();
    assert_eq!(listed, std::slice::from_ref(&recent), "only the open session used within the window");

    store.touch_session(&stale.id, at).await.unwrap();
    store.touch_session("no-such-session", at).await.expect("touching an unknown session does nothing");
    let listed: Vec<String> =
        store.open_sessions(&user.id, window).await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(
        listed,
        [stale.id.clone(), recent.id.clone()],
        "a touched session is back, most recently used first"
    );
    let all = store.open_sessions(&user.id, time::OffsetDateTime::UNIX_EPOCH).await.unwrap();
    assert_eq!(all.len(), 2, "the revoked session is never listed");
    assert!(store.open_sessions("nobody", window).await.unwrap().is_empty(), "an unknown user has none");
}

#[actix_web::test]
async fn a_session_reads_back_and_is_revoked_only_once() {
    let (store, _dir) = open_test_store().await;
    let user = insert_new_user(store.as_ref(), 0).await;
    let session = session_for(&user.id);
    store.insert_session(&session).await.unwrap();
    assert_eq!(store.session(&session.id).await.unwrap(), Some(session.clone()), "reads back");

    let first = now();
    assert!(store.revoke_session(&session.id, first).await.unwrap(), "the first revocation revokes");
    let revoked = Session { revoked_at: Some(first), ..session.clone() };
    assert_eq!(store.session(&session.id).await.unwrap(), Some(revoked.clone()), "revoked_at is set");

    let later = first + Duration::seconds(10);
    assert!(!store.revoke_session(&session.id, later).await.unwrap(), "the second revocation reports false");
    assert_eq!(
        store.session(&session.id).await.unwrap(),
        Some(revoked),
        "the second revocation keeps the first time"
    );

    assert!(
        !store.revoke_session("no-such-session", now()).await.unwrap(),
        "an unknown session is not revoked"
    );
    assert_eq!(store.session("no-such-session").await.unwrap(), None, "an unknown session is absent");
}

#[actix_web::test]
async fn revoking_a_users_sessions_returns_exactly_the_open_ones() {
    let (store, _dir) = open_test_store().await;
    let user = insert_new_user(store.as_ref(), 0).await;
    let bystander = insert_new_user(store.as_ref(), 0).await;
    let open: Vec<Session> = (0..3).map(|_| session_for(&user.id)).collect();
    let earlier = now() - Duration::hours(1);
    let closed = Session { revoked_at: Some(earlier), ..session_for(&user.id) };
    let other = session_for(&bystander.id);
    for s in open.iter().chain([&closed, &other]) {
        store.insert_session(s).await.unwrap();
    }

    let at = now();
    let revoked: BTreeSet<String> =
        store.revoke_user_sessions(&user.id, at).await.unwrap().into_iter().collect();
    let expected: BTreeSet<String> = open.iter().map(|s| s.id.clone()).collect();
    assert_eq!(revoked, expected, "exactly the open sessions of the user");
    for s in &open {
        assert_eq!(
            store.session(&s.id).await.unwrap().unwrap().revoked_at,
            Some(at),
            "open session {} is revoked now",
            s.id
        );
    }
    assert_eq!(
        store.session(&closed.id).await.unwrap(),
        Some(closed),
        "an already revoked session keeps its time"
    );
    assert_eq!(store.session(&other.id).await.unwrap(), Some(other), "another user's session is untouched");
    assert_eq!(
        store.revoke_user_sessions(&user.id, now()).await.unwrap(),
        Vec::<String>::new(),
        "nothing is left to revoke"
    );
}

#[actix_web::test]
async fn a_refresh_token_is_unknown_then_fresh_then_reused() {
    let (store, _dir) = open_test_store().await;
    let user = insert_new_user(store.as_ref(), 0).await;
    let session = session_for(&user.id);
    store.insert_session(&session).await.unwrap();
    let token = RefreshToken {
        token_hash: unique_hex(),
        session_id: session.id.clone(),
        user_id: user.id.clone(),
        expires_at: now() + Duration::days(30),
        used_at: None,
    };
    assert_eq!(
        store.use_refresh_token(&token.token_hash, now()).await.unwrap(),
        RefreshUse::Unknown,
        "before insert"
    );
    store.insert_refresh_token(&token).await.unwrap();
    let duplicate = store.insert_refresh_token(&token).await;
    assert!(matches!(duplicate, Err(StoreError::Duplicate)), "the same hash twice: {duplicate:?}");

    let first_use = now();
    assert_eq!(
        store.use_refresh_token(&token.token_hash, first_use).await.unwrap(),
        RefreshUse::Fresh(token.clone()),
        "first use"
    );
    let used = RefreshToken { used_at: Some(first_use), ..token.clone() };
    for attempt in ["second use", "third use"] {
        let result = store.use_refresh_token(&token.token_hash, now() + Duration::seconds(1)).await.unwrap();
        assert_eq!(
            result,
            RefreshUse::Reused(used.clone()),
            "{attempt}: reused, carrying the first use time"
        );
    }
    assert_eq!(
        store.use_refresh_token(&unique_hex(), now()).await.unwrap(),
        RefreshUse::Unknown,
        "another hash"
    );
}

// The races run on several worker threads so the writers truly overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn one_refresh_token_used_by_ten_tasks_at_once_is_fresh_exactly_once() {
    let (store, _dir) = open_test_store().await;
    let user = insert_new_user(store.as_ref(), 0).await;
    let token = RefreshToken {
        token_hash: unique_hex(),
        session_id: uuid::Uuid::now_v7().to_string(),
        user_id: user.id.clone(),
        expires_at: now() + Duration::days(30),
        used_at: None,
    };
    store.insert_refresh_token(&token).await.unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(10));
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (store, barrier, hash) = (store.clone(), barrier.clone(), token.token_hash.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.use_refresh_token(&hash, now()).await
            })
        })
        .collect();
    let mut fresh = 0;
    let mut reused = 0;
    for task in tasks {
        match task.await.expect("task").expect("use_refresh_token") {
            RefreshUse::Fresh(_) => fresh += 1,
            RefreshUse::Reused(_) => reused += 1,
            RefreshUse::Unknown => panic!("the token exists"),
        }
    }
    assert_eq!((fresh, reused), (1, 9), "exactly one of ten concurrent uses is fresh");
}

#[actix_web::test]
async fn reset_tokens_are_replaced_consumed_once_and_refused_when_expired() {
    let (store, _dir) = open_test_store().await;
    let user = insert_new_user(store.as_ref(), 0).await;
    let bystander = insert_new_user(store.as_ref(), 0).await;
    let token = |user_id: &str, expires_in: Duration| ResetToken {
        token_hash: unique_hex(),
        user_id: user_id.into(),
        expires_at: now() + expires_in,
        created_at: now(),
    };

    let older = token(&user.id, Duration::hours(1));
    let others = token(&bystander.id, Duration::hours(1));
    let newer = token(&user.id, Duration::hours(1));
    store.replace_reset_token(&older).await.unwrap();
    store.replace_reset_token(&others).await.unwrap();
    store.replace_reset_token(&newer).await.unwrap();

    assert_eq!(
        store.consume_reset_token(&older.token_hash, now()).await.unwrap(),
        None,
        "a replaced token is void"
    );
    assert_eq!(
        store.consume_reset_token(&newer.token_hash, now()).await.unwrap(),
        Some(user.id.clone()),
        "the newest works"
    );
    assert_eq!(store.consume_reset_token(&newer.token_hash, now()).await.unwrap(), None, "and only once");
    assert_eq!(
        store.consume_reset_token(&others.token_hash, now()).await.unwrap(),
        Some(bystander.id.clone()),
        "another user's token survives the replacement"
    );
    assert_eq!(store.consume_reset_token(&unique_hex(), now()).await.unwrap(), None, "an unknown token");

    let expiring = token(&user.id, Duration::minutes(10));
    store.replace_reset_token(&expiring).await.unwrap();
    let after_expiry = expiring.expires_at + Duration::seconds(1);
    assert_eq!(
        store.consume_reset_token(&expiring.token_hash, after_expiry).await.unwrap(),
        None,
        "an expired token"
    );
    assert_eq!(
        store.consume_reset_token(&expiring.token_hash, expiring.expires_at).await.unwrap(),
        None,
        "a token at the very moment it expires"
    );
}

#[actix_web::test]
async fn consume_once_accepts_each_key_once() {
    let (store, _dir) = open_test_store().await;
    let expires = now() + Duration::minutes(1);
    let key = unique_hex();
    assert!(store.consume_once(&key, expires).await.unwrap(), "first sight of a key");
    assert!(!store.consume_once(&key, expires).await.unwrap(), "second sight of the same key");
    assert!(
        !store.consume_once(&key, expires + Duration::minutes(5)).await.unwrap(),
        "a later expiry does not reopen it"
    );
    assert!(store.consume_once(&unique_hex(), expires).await.unwrap(), "another key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn single_use_records_are_won_by_exactly_one_of_ten_concurrent_callers() {
    let (store, _dir) = open_test_store().await;
    let user = insert_new_user(store.as_ref(), 0).await;
    // Several rounds, because a race shows itself only sometimes.
    for round in 1..=5 {
        let session = session_for(&user.id);
        store.insert_session(&session).await.unwrap();
        let reset = ResetToken {
            token_hash: unique_hex(),
            user_id: user.id.clone(),
            expires_at: now() + Duration::hours(1),
            created_at: now(),
        };
        store.replace_reset_token(&reset).await.unwrap();
        let once_key = unique_hex();

        for case in ["revoke_session", "consume_reset_token", "consume_once"] {
            let barrier = Arc::new(tokio::sync::Barrier::new(10));
            let tasks: Vec<_> = (0..10i64)
                .map(|i| {
                    let (store, barrier) = (store.clone(), barrier.clone());
                    let (session_id, reset_hash, once_key) =
                        (session.id.clone(), reset.token_hash.clone(), once_key.clone());
                    // Distinct times, so the stored time tells which caller wrote it.
                    let at = now() + Duration::milliseconds(i);
                    tokio::spawn(async move {
                        barrier.wait().await;
                        let won = match case {
                            "revoke_session" => store.revoke_session(&session_id, at).await.unwrap(),
                            "consume_reset_token" => {
                                store.consume_reset_token(&reset_hash, at).await.unwrap().is_some()
                            }
                            _ => store.consume_once(&once_key, at + Duration::minutes(1)).await.unwrap(),
                        };
                        (won, at)
                    })
                })
                .collect();
            let mut winners = Vec::new();
            for task in tasks {
                let (won, at) = task.await.expect("task");
                if won {
                    winners.push(at);
                }
            }
            assert_eq!(winners.len(), 1, "round {round}, {case}: exactly one of ten concurrent callers wins");
            if case == "revoke_session" {
                let stored = store.session(&session.id).await.unwrap().unwrap().revoked_at;
                assert_eq!(
                    stored,
                    Some(winners[0]),
                    "round {round}, {case}: the stored time is the winner's"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_reset_token_replacements_leave_exactly_one_valid_token() {
    let (store, _dir) = open_test_store().await;
    let user = insert_new_user(store.as_ref(), 0).await;
    let tokens: Vec<ResetToken> = (0..10)
        .map(|_| ResetToken {
            token_hash: unique_hex(),
            user_id: user.id.clone(),
            expires_at: now() + Duration::hours(1),
            created_at: now(),
        })
        .collect();
    let barrier = Arc::new(tokio::sync::Barrier::new(tokens.len()));
    let tasks: Vec<_> = tokens
        .iter()
        .cloned()
        .map(|token| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.replace_reset_token(&token).await
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("replace_reset_token");
    }
    let mut valid = 0;
    for token in &tokens {
        if store.consume_reset_token(&token.token_hash, now()).await.unwrap().is_some() {
            valid += 1;
        }
    }
    // Two "forgot password" requests at once must not leave two working links.
    assert_eq!(valid, 1, "exactly one of ten concurrently issued reset tokens stays valid");
}
