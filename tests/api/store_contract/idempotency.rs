//! The contract for idempotency keys: one atomic claim per `(user, key)`, the holder read back
//! exactly, releases only by the claim that holds the key.

use switchboard::store::*;

use super::{insert_new_user, new_id};
use crate::support::store::open_test_store;

fn record(user_id: &str, key: &str, outcome: IdempotentOutcome) -> IdempotencyRecord {
    IdempotencyRecord {
        user_id: user_id.into(),
        key: key.into(),
        claim_id: new_id(),
        fingerprint: "f1".into(),
        outcome,
        created_at: now(),
        completed_at: None,
    }
}

#[actix_web::test]
async fn a_key_is_claimed_once_per_user_and_freed_only_by_its_own_claim() {
    let (store, _dir) = open_test_store().await;
    let (alice, bob) = (insert_new_user(store.as_ref(), 0).await, insert_new_user(store.as_ref(), 0).await);
    let chat = IdempotentOutcome::Chat { chat_id: new_id(), reply_id: new_id() };
    let first = record(&alice.id, "k", chat.clone());
    assert_eq!(store.claim_idempotency_key(&first).await.unwrap(), None, "the first claim wins");
    let second = record(&alice.id, "k", IdempotentOutcome::Image { image_id: new_id() });
    assert_eq!(
        store.claim_idempotency_key(&second).await.unwrap(),
        Some(first.clone()),
        "a second claim gets the holder, exactly as stored"
    );
    let image = record(&bob.id, "k", IdempotentOutcome::Image { image_id: new_id() });
    assert_eq!(store.claim_idempotency_key(&image).await.unwrap(), None, "another user's key is its own");
    assert_eq!(store.idempotency_record(&bob.id, "k").await.unwrap(), Some(image), "read back");

    assert!(!store.release_idempotency_key(&alice.id, "k", &second.claim_id).await.unwrap(), "not its claim");
    assert_eq!(store.idempotency_record(&alice.id, "k").await.unwrap(), Some(first.clone()), "still held");
    assert!(store.release_idempotency_key(&alice.id, "k", &first.claim_id).await.unwrap(), "its own claim");
    assert_eq!(store.idempotency_record(&alice.id, "k").await.unwrap(), None, "free");
    assert_eq!(store.claim_idempotency_key(&second).await.unwrap(), None, "and claimable again");
}

#[actix_web::test]
async fn a_claim_is_marked_completed_only_by_its_own_claim_and_reads_back_completed() {
    let (store, _dir) = open_test_store().await;
    let user = insert_new_user(store.as_ref(), 0).await;
    let first = record(&user.id, "k", IdempotentOutcome::Image { image_id: new_id() });
    store.claim_idempotency_key(&first).await.unwrap();
    let at = now();
    store.complete_idempotency_key(&user.id, "k", &new_id(), at).await.unwrap();
    let held = store.idempotency_record(&user.id, "k").await.unwrap().unwrap();
    assert_eq!(held.completed_at, None, "another claim's completion changes nothing");
    store.complete_idempotency_key(&user.id, "k", &first.claim_id, at).await.unwrap();
    let held = store.idempotency_record(&user.id, "k").await.unwrap().unwrap();
    assert_eq!(held.completed_at, Some(at), "its own claim is completed, at the time given");
    let again = record(&user.id, "k", first.outcome.clone());
    let holder = store.claim_idempotency_key(&again).await.unwrap().expect("still held");
    assert_eq!(holder.completed_at, Some(at), "a claimer sees the holder completed");
}

#[actix_web::test]
async fn a_message_reads_back_by_its_id() {
    let (store, _dir) = open_test_store().await;
    let user = insert_new_user(store.as_ref(), 0).await;
    let chat = super::insert_chat(store.as_ref(), &user.id, "c", now()).await;
    let message = ChatMessage {
        id: new_id(),
        chat_id: chat.id,
        user_id: user.id,
        role: MessageRole::Assistant,
        content: "reply".into(),
        created_at: now(),
        status: MessageStatus::Complete,
        model: None,
        charged: None,
        usage: None,
    };
    store.insert_message(&message).await.unwrap();
    assert_eq!(store.message(&message.id).await.unwrap(), Some(message), "read back exactly");
    assert_eq!(store.message(&new_id()).await.unwrap(), None, "an unknown id");
}
