//! The contract for chats and their messages: reading back, the order of a user's chats, paging
//! through a history, duplicate ids, and the chat and image counts of a user.

use switchboard::store::*;
use time::Duration;

use super::{ascending_ids, insert_chat, new_chat, new_id, new_image};
use crate::support::store::open_test_store;

fn ids<T>(items: &[T], id: impl Fn(&T) -> &str) -> Vec<String> {
    items.iter().map(|item| id(item).to_owned()).collect()
}

#[actix_web::test]
async fn a_chat_reads_back_exactly_by_id() {
    let (store, _dir) = open_test_store().await;
    let created = now() - Duration::minutes(10);
    let chat = Chat {
        updated_at: created + Duration::milliseconds(1234),
        ..new_chat(&new_id(), "Trip ideas ✈️", created)
    };
    store.insert_chat(&chat).await.expect("insert chat");

    assert_eq!(store.chat(&chat.id).await.unwrap(), Some(chat.clone()), "by id");
    assert_eq!(store.chat("no-such-chat").await.unwrap(), None, "an unknown id");
}

#[actix_web::test]
async fn touching_a_chat_moves_it_to_the_front_of_its_owners_list() {
    let (store, _dir) = open_test_store().await;
    let user = new_id();
    let t = now() - Duration::hours(1);
    let oldest = insert_chat(store.as_ref(), &user, "oldest", t).await;
    let middle = insert_chat(store.as_ref(), &user, "middle", t + Duration::seconds(1)).await;
    let newest = insert_chat(store.as_ref(), &user, "newest", t + Duration::seconds(2)).await;
    let listed = |chats: Vec<Chat>| ids(&chats, |c| &c.title);

    assert_eq!(
        listed(store.chats_page(&user, None, 10).await.unwrap()),
        ["newest", "middle", "oldest"],
        "newest updated_at first"
    );

    let touched_at = now();
    assert!(store.touch_chat(&oldest.id, touched_at).await.expect("touch chat"), "the chat was there");
    assert_eq!(
        listed(store.chats_page(&user, None, 10).await.unwrap()),
        ["oldest", "newest", "middle"],
        "the touched chat comes first"
    );
    let touched = store.chat(&oldest.id).await.unwrap().expect("the touched chat exists");
    assert_eq!(touched, Chat { updated_at: touched_at, ..oldest.clone() }, "only updated_at changed");
    assert_eq!(
        listed(store.chats_page(&user, None, 2).await.unwrap()),
        ["oldest", "newest"],
        "limit keeps the newest"
    );

    // The same updated_at on two chats: the larger (later) id first, on every store alike.
    store.touch_chat(&middle.id, touched_at).await.unwrap();
    assert!(middle.id > oldest.id, "ids made later sort later");
    assert_eq!(
        listed(store.chats_page(&user, None, 10).await.unwrap()),
        ["middle", "oldest", "newest"],
        "ties broken by id, descending"
    );
    // The next page starts after the last chat of the previous one, ties included.
    assert_eq!(
        listed(store.chats_page(&user, Some((touched_at, &middle.id)), 10).await.unwrap()),
        ["oldest", "newest"],
        "after the first of two chats with the same updated_at"
    );
    assert_eq!(
        listed(store.chats_page(&user, Some((touched_at, &oldest.id)), 1).await.unwrap()),
        ["newest"],
        "after both, one at a time"
    );

    let found =
        store.touch_chat("no-such-chat", touched_at).await.expect("touching an unknown chat is no error");
    assert!(!found, "and says there was no such chat");
    assert_eq!(store.chat("no-such-chat").await.unwrap(), None, "and creates nothing");
    assert_eq!(store.chat(&newest.id).await.unwrap(), Some(newest), "an untouched chat is unchanged");
}

#[actix_web::test]
async fn chats_page_lists_only_the_users_own_chats() {
    let (store, _dir) = open_test_store().await;
    let (alice, bob) = (new_id(), new_id());
    let t = now();
    let a1 = insert_chat(store.as_ref(), &alice, "a1", t).await;
    let b1 = insert_chat(store.as_ref(), &bob, "b1", t + Duration::seconds(1)).await;
    let a2 = insert_chat(store.as_ref(), &alice, "a2", t + Duration::seconds(2)).await;

    assert_eq!(
        store.chats_page(&alice, None, 10).await.unwrap(),
        vec![a2, a1],
        "alice's chats, whole records"
    );
    assert_eq!(store.chats_page(&bob, None, 10).await.unwrap(), vec![b1], "bob's chat");
    assert_eq!(
        store.chats_page(&new_id(), None, 10).await.unwrap(),
        Vec::<Chat>::new(),
        "a user without chats"
    );
}

#[actix_web::test]
async fn messages_page_walks_a_history_back_in_chronological_pages_without_gaps() {
    let (store, _dir) = open_test_store().await;
    let user = new_id();
    let chat = insert_chat(store.as_ref(), &user, "long talk", now()).await;
    let other_chat = insert_chat(store.as_ref(), &user, "another talk", now()).await;
    let start = now();
    let messages: Vec<ChatMessage> = ascending_ids(25)
        .into_iter()
        .enumerate()
        .map(|(i, id)| ChatMessage {
            id,
            chat_id: chat.id.clone(),
            user_id: user.clone(),
            role: if i.is_multiple_of(2) { MessageRole::User } else { MessageRole::Assistant },
            content: format!("message {i}: «ünïcode» and \"quotes\""),
            created_at: start + Duration::milliseconds(i as i64),
            status: MessageStatus::Complete,
            model: None,
            charged: None,
            usage: None,
        })
        .collect();
    // Inserted out of order, so a store that returns insertion order fails.
    for m in messages.iter().rev() {
        store.insert_message(m).await.expect("insert message");
    }
    let elsewhere = ChatMessage { id: new_id(), chat_id: other_chat.id.clone(), ..messages[0].clone() };
    store.insert_message(&elsewhere).await.expect("insert a message of another chat");

    let page1 = store.messages_page(&chat.id, None, 10).await.unwrap();
    assert_eq!(page1, messages[15..25], "first page: the 10 newest, oldest first, whole records");
    let page2 = store.messages_page(&chat.id, Some(&page1[0].id), 10).await.unwrap();
    assert_eq!(page2, messages[5..15], "second page: the 10 before the first page's oldest");
    let page3 = store.messages_page(&chat.id, Some(&page2[0].id), 10).await.unwrap();
    assert_eq!(page3, messages[0..5], "third page: the 5 oldest");
    let page4 = store.messages_page(&chat.id, Some(&page3[0].id), 10).await.unwrap();
    assert_eq!(page4, Vec::<ChatMessage>::new(), "nothing before the first message");

    let all = store.messages_page(&chat.id, None, 100).await.unwrap();
    assert_eq!(all, messages, "a large limit gives the whole history in order");
    assert_eq!(
        store.messages_page(&other_chat.id, None, 10).await.unwrap(),
        vec![elsewhere],
        "each chat sees only its own messages"
    );
    assert_eq!(store.messages_page("no-such-chat", None, 10).await.unwrap(), Vec::<ChatMessage>::new());
}

#[actix_web::test]
async fn inserting_a_chat_message_or_image_with_a_taken_id_is_a_duplicate() {
    let (store, _dir) = open_test_store().await;
    let user = new_id();
    let chat = insert_chat(store.as_ref(), &user, "first", now()).await;
    let again = Chat { title: "second".into(), ..chat.clone() };
    let result = store.insert_chat(&again).await;
    assert!(matches!(result, Err(StoreError::Duplicate)), "chat: expected Duplicate, got {result:?}");
    assert_eq!(store.chat(&chat.id).await.unwrap(), Some(chat.clone()), "the first chat is untouched");

    let message = ChatMessage {
        id: new_id(),
        chat_id: chat.id.clone(),
        user_id: user.clone(),
        role: MessageRole::User,
        content: "hello".into(),
        created_at: now(),
        status: MessageStatus::Complete,
        model: None,
        charged: None,
        usage: None,
    };
    store.insert_message(&message).await.expect("insert message");
    let result = store.insert_message(&ChatMessage { content: "replaced".into(), ..message.clone() }).await;
    assert!(matches!(result, Err(StoreError::Duplicate)), "message: expected Duplicate, got {result:?}");
    assert_eq!(
        store.messages_page(&chat.id, None, 10).await.unwrap(),
        vec![message],
        "the first message stays"
    );

    let image = new_image(&user, "first", 8, 8);
    store.insert_image(&image, b"first").await.expect("insert image");
    let result = store.insert_image(&Image { prompt: "second".into(), ..image.clone() }, b"second").await;
    assert!(matches!(result, Err(StoreError::Duplicate)), "image: expected Duplicate, got {result:?}");
    assert_eq!(store.image(&image.id).await.unwrap(), Some(image.clone()), "the first image record stays");
    assert_eq!(store.image_png(&image.id).await.unwrap(), Some(b"first".to_vec()), "and its bytes");
}

#[actix_web::test]
async fn user_stats_counts_only_the_users_own_chats_and_images() {
    let (store, _dir) = open_test_store().await;
    let (alice, bob) = (new_id(), new_id());
    for i in 0..3 {
        insert_chat(store.as_ref(), &alice, &format!("alice {i}"), now()).await;
    }
    insert_chat(store.as_ref(), &bob, "bob", now()).await;
    for _ in 0..2 {
        store.insert_image(&new_image(&alice, "alice", 16, 16), b"png").await.unwrap();
    }
    for _ in 0..4 {
        store.insert_image(&new_image(&bob, "bob", 16, 16), b"png").await.unwrap();
    }

    let stats =
        |chats, images| UserStats { total_chats: chats, total_images: images, ..UserStats::default() };
    assert_eq!(store.user_stats(&alice).await.unwrap(), stats(3, 2), "alice");
    assert_eq!(store.user_stats(&bob).await.unwrap(), stats(1, 4), "bob");
    assert_eq!(store.user_stats(&new_id()).await.unwrap(), stats(0, 0), "a user with nothing");
}

#[actix_web::test]
async fn a_renamed_chat_keeps_its_place_and_a_deleted_one_takes_its_messages_along() {
    let (store, _dir) = open_test_store().await;
    let user = super::new_id();
    let chat = super::insert_chat(store.as_ref(), &user, "Old title", now()).await;
    let kept = super::insert_chat(store.as_ref(), &user, "Kept", now()).await;
    for (chat_id, text) in [(&chat.id, "first"), (&chat.id, "second"), (&kept.id, "stays")] {
        let message = ChatMessage {
            id: super::new_id(),
            chat_id: chat_id.clone(),
            user_id: user.clone(),
            role: MessageRole::User,
            content: text.into(),
            created_at: now(),
            status: MessageStatus::Complete,
            model: None,
            charged: None,
            usage: None,
        };
        store.insert_message(&message).await.unwrap();
    }

    let renamed = store.rename_chat(&chat.id, "New title").await.unwrap().expect("the chat exists");
    assert_eq!(renamed, Chat { title: "New title".into(), ..chat.clone() }, "only the title changed");
    assert_eq!(store.chat(&chat.id).await.unwrap(), Some(renamed), "the new title reads back");
    assert_eq!(store.rename_chat("no-such-chat", "x").await.unwrap(), None, "an unknown chat");

    assert!(store.delete_chat(&chat.id).await.unwrap(), "the chat is deleted");
    assert_eq!(store.chat(&chat.id).await.unwrap(), None, "the chat is gone");
    assert!(store.messages_page(&chat.id, None, 100).await.unwrap().is_empty(), "its messages are gone");
    assert_eq!(store.chat_count(&user).await.unwrap(), 1, "it no longer counts");
    assert_eq!(store.messages_page(&kept.id, None, 100).await.unwrap().len(), 1, "other chats keep theirs");
    assert!(!store.delete_chat(&chat.id).await.unwrap(), "a second delete finds nothing");
}

#[actix_web::test]
async fn one_message_is_deleted_by_its_id_and_the_rest_stay() {
    let (store, _dir) = open_test_store().await;
    let user = super::insert_new_user(store.as_ref(), 0).await;
    let chat = super::insert_chat(store.as_ref(), &user.id, "c", now()).await;
    let mut ids = Vec::new();
    for content in ["one", "two"] {
        let message = ChatMessage {
            id: super::new_id(),
            chat_id: chat.id.clone(),
            user_id: user.id.clone(),
            role: MessageRole::User,
            content: content.into(),
            created_at: now(),
            status: MessageStatus::Complete,
            model: None,
            charged: None,
            usage: None,
        };
        store.insert_message(&message).await.unwrap();
        ids.push(message.id);
    }
    assert!(store.delete_message(&ids[0]).await.unwrap(), "the first is deleted");
    assert!(!store.delete_message(&ids[0]).await.unwrap(), "a second delete finds nothing");
    assert_eq!(store.message(&ids[0]).await.unwrap(), None, "gone");
    let left: Vec<String> =
        store.messages_page(&chat.id, None, 10).await.unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(left, [ids[1].clone()], "the other stays");
}
