//! One contract for the storage interface, run against the store the environment selects
//! (`SWITCHBOARD_TEST_STORE`), so SQLite and MongoDB (FerretDB in CI) are held to the same rules,
//! orders and paging. One file per aggregate; the helpers they share are here. Every test talks
//! to the store through `&dyn Store` only.

mod chats;
mod idempotency;
mod images;
mod ledger;
mod properties;
mod sessions;
mod users;

use switchboard::services::credits::ledger::CreditChange;
use switchboard::store::*;
use time::OffsetDateTime;

use crate::support::store::open_test_store;

/// A random lower-case hex string, unique per call.
fn unique_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A user that exists nowhere yet, with every field set to something distinctive.
fn new_user(initial_credits: i64) -> User {
    let t = now();
    let key_hash = format!("{}{}", unique_hex(), unique_hex());
    User {
        id: uuid::Uuid::now_v7().to_string(),
        email: format!("user-{}@example.com", unique_hex()),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        role: Role::User,
        api_key_prefix: format!("sk_{}", &key_hash[..7]),
        api_key_hash: key_hash,
        credits: initial_credits,
        credits_seq: 0,
        initial_credits,
        last_login: None,
        active: true,
        created_at: t,
        updated_at: t,
    }
}

/// Inserts a fresh user with `initial_credits` and returns it.
async fn insert_new_user(store: &dyn Store, initial_credits: i64) -> User {
    let user = new_user(initial_credits);
    store.insert_user(&user).await.expect("insert user");
    user
}

fn change(user_id: &str, service_type: ServiceType, amount: i64) -> CreditChange {
    CreditChange::new(user_id, service_type, EntryKind::of_legacy(service_type), amount)
}

/// A new UUIDv7 id; ids made later in this process sort after it.
fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// `n` new ids in ascending order, checked, because paging by id relies on it.
fn ascending_ids(n: usize) -> Vec<String> {
    let ids: Vec<String> = (0..n).map(|_| new_id()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "UUIDv7 ids made in sequence ascend: {ids:?}");
    ids
}

/// A chat of `user_id` created at `at` and not updated since.
fn new_chat(user_id: &str, title: &str, at: OffsetDateTime) -> Chat {
    Chat { id: new_id(), user_id: user_id.into(), title: title.into(), created_at: at, updated_at: at }
}

/// Inserts a chat of `user_id` created at `at` and returns it.
async fn insert_chat(store: &dyn Store, user_id: &str, title: &str, at: OffsetDateTime) -> Chat {
    let chat = new_chat(user_id, title, at);
    store.insert_chat(&chat).await.expect("insert chat");
    chat
}

/// A `width`×`height` image record of `user_id` with a fresh id.
fn new_image(user_id: &str, prompt: &str, width: u32, height: u32) -> Image {
    Image {
        id: new_id(),
        user_id: user_id.into(),
        prompt: prompt.into(),
        width,
        height,
        created_at: now(),
        model: None,
        charged: None,
    }
}

#[actix_web::test]
async fn the_store_answers_a_ping() {
    let (store, _dir) = open_test_store().await;
    store.ping().await.expect("ping succeeds on a reachable store");
}
