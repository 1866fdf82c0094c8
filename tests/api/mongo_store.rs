//! What only the MongoDB store can get into, because it makes in two writes what SQLite makes in
//! one: each test runs against a MongoDB-wire server on both passes (the suite's own on the
//! MongoDB pass, a FerretDB of its own on the embedded one), and reaches past the store's
//! interface with the driver to set up the half-done state a crash leaves.

use mongodb::bson::{DateTime, doc};
use switchboard::store::mongo::MongoStore;
use switchboard::store::*;
use time::Duration;

use crate::support::ferret::{Ferret, ferretdb_binary};
use crate::support::store::{TestStore, fresh_database_name, test_store};

/// A MongoDB of the pass (or a FerretDB of the test's own), its URI and a fresh database name.
async fn mongo() -> (Option<Ferret>, String, String) {
    let (ferret, uri) = match test_store() {
        TestStore::Mongo(uri) => (None, uri),
        TestStore::Sqlite => {
            let binary = ferretdb_binary();
            let ferret = Ferret::start(binary).await;
            let uri = ferret.uri();
            (Some(ferret), uri)
        }
    };
    (ferret, uri, fresh_database_name())
}

#[actix_web::test]
async fn a_refresh_token_claimed_but_never_marked_used_counts_as_used_when_it_was_claimed() {
    let (_ferret, uri, db) = mongo().await;
    let store = MongoStore::connect(&uri, &db).await.expect("the store connects");
    let token = RefreshToken {
        token_hash: uuid::Uuid::new_v4().simple().to_string(),
        session_id: "s-1".into(),
        user_id: "u-1".into(),
        expires_at: now() + Duration::days(30),
        used_at: None,
    };
    store.insert_refresh_token(&token).await.unwrap();
    // An exchange that claimed the token an hour ago and died before marking it used.
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let database = client.database(&db);
    let stored = database
        .collection::<mongodb::bson::Document>("refresh_tokens")
        .find_one(doc! { "token_hash": &token.token_hash })
        .await
        .unwrap()
        .expect("the token is stored");
    let id = stored.get_object_id("_id").expect("an ObjectId");
    let claimed_at = now() - Duration::hours(1);
    let claim_time = DateTime::from_millis((claimed_at.unix_timestamp_nanos() / 1_000_000) as i64);
    database
        .collection::<mongodb::bson::Document>("claims")
        .insert_one(doc! { "_id": format!("refresh:{}", id.to_hex()), "at": claim_time })
        .await
        .unwrap();

    let found = store.use_refresh_token(&token.token_hash, now()).await.unwrap();
    let RefreshUse::Reused(found) = found else { panic!("a claimed token is not fresh: {found:?}") };
    assert_eq!(found.used_at, Some(claimed_at), "its use time is the claim's, outside any grace window");
}
