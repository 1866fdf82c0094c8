//! One contract for the `Store` trait, run against the store the environment selects
//! (`SWITCHBOARD_TEST_STORE`), so SQLite and MongoDB (FerretDB in CI) are held to the same rules.
//! Every test talks to the store through `&dyn Store` only.

use std::collections::BTreeSet;
use std::sync::Arc;

use switchboard::store::ledger::{self, CreditChange, CreditError};
use switchboard::store::mongo::MongoStore;
use switchboard::store::sqlite::SqliteStore;
use switchboard::store::{
    CreditsUsed, DynStore, LedgerEntry, RefreshToken, RefreshUse, ResetToken, Role, ServiceType, Session,
    Store, StoreError, User, UserStats, UserUpdate, now,
};
use tempfile::TempDir;
use time::{Duration, OffsetDateTime};

use crate::helpers::{TestStore, fresh_database_name, test_store};

/// Opens an empty store of the selected kind; the temp dir (SQLite only) must outlive the store.
async fn open_test_store() -> (DynStore, Option<TempDir>) {
    match test_store() {
        TestStore::Sqlite => {
            let dir = TempDir::new().expect("temp dir");
            let store = SqliteStore::open(dir.path()).expect("the SQLite store opens");
            (Arc::new(store), Some(dir))
        }
        TestStore::Mongo(uri) => {
            let store =
                MongoStore::connect(&uri, &fresh_database_name()).await.expect("the MongoDB store connects");
            (Arc::new(store), None)
        }
    }
}

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

/// A user with the given names and email, created `offset_ms` after `base`.
fn named_user(email: &str, first: &str, last: &str, base: OffsetDateTime, offset_ms: i64) -> User {
    let t = base + Duration::milliseconds(offset_ms);
    User {
        email: email.into(),
        first_name: first.into(),
        last_name: last.into(),
        created_at: t,
        updated_at: t,
        ..new_user(0)
    }
}

fn session_for(user_id: &str) -> Session {
    Session {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: user_id.into(),
        created_at: now(),
        revoked_at: None,
    }
}

fn change(user_id: &str, service_type: ServiceType, amount: i64) -> CreditChange {
    CreditChange {
        user_id: user_id.into(),
        service_type,
        amount,
        reference: None,
        actor_id: None,
        refund_of: None,
    }
}

fn refund(user_id: &str, of: ServiceType, amount: i64) -> CreditChange {
    CreditChange {
        refund_of: Some(of),
        reference: Some("refunded-entry".into()),
        ..change(user_id, ServiceType::Refund, amount)
    }
}

fn emails(users: &[User]) -> BTreeSet<String> {
    users.iter().map(|u| u.email.clone()).collect()
}

#[actix_web::test]
async fn the_store_answers_a_ping() {
    let (store, _dir) = open_test_store().await;
    store.ping().await.expect("ping succeeds on a reachable store");
}

#[actix_web::test]
async fn a_user_reads_back_exactly_by_id_by_email_and_by_api_key_hash() {
    let (store, _dir) = open_test_store().await;
    // Every optional and non-default field set, so a dropped or mangled column shows.
    let user = User {
        role: Role::Admin,
        active: false,
        last_login: Some(now() - Duration::minutes(5)),
        credits: 7,
        credits_seq: 3,
        initial_credits: 42,
        first_name: "Grace Brewster".into(),
        last_name: "Hopper-Murray".into(),
        ..new_user(0)
    };
    store.insert_user(&user).await.expect("insert user");

    assert_eq!(store.user_by_id(&user.id).await.unwrap(), Some(user.clone()), "by id");
    assert_eq!(store.user_by_email(&user.email).await.unwrap(), Some(user.clone()), "by email");
    assert_eq!(
        store.user_by_api_key_hash(&user.api_key_hash).await.unwrap(),
        Some(user.clone()),
        "by api key hash"
    );

    let other_case = user.email.to_uppercase();
    for (case, found) in [
        ("unknown id", store.user_by_id("no-such-id").await.unwrap()),
        ("unknown email", store.user_by_email("nobody@example.com").await.unwrap()),
        ("unknown key hash", store.user_by_api_key_hash(&unique_hex()).await.unwrap()),
        ("email is matched exactly, callers normalise it", store.user_by_email(&other_case).await.unwrap()),
        (
            "a filter document is a plain string to the store",
            store.user_by_email("{\"$gt\": \"\"}").await.unwrap(),
        ),
    ] {
        assert_eq!(found, None, "{case}");
    }
}

#[actix_web::test]
async fn timestamps_round_trip_at_millisecond_precision() {
    let (store, _dir) = open_test_store().await;
    let t = now();
    assert_eq!(t.nanosecond() % 1_000_000, 0, "store::now() is whole milliseconds");
    let user = User {
        created_at: t,
        updated_at: t + Duration::milliseconds(1),
        last_login: Some(t + Duration::milliseconds(999)),
        ..new_user(0)
    };
    store.insert_user(&user).await.unwrap();
    let read = store.user_by_id(&user.id).await.unwrap().expect("user exists");
    assert_eq!(
        (read.created_at, read.updated_at, read.last_login),
        (user.created_at, user.updated_at, user.last_login),
        "created_at, updated_at, last_login"
    );
}

#[actix_web::test]
async fn inserting_a_user_with_a_taken_email_or_api_key_hash_is_a_duplicate() {
    let (store, _dir) = open_test_store().await;
    let first = insert_new_user(store.as_ref(), 0).await;
    let cases = [
        ("same email", User { email: first.email.clone(), ..new_user(0) }),
        ("same api key hash", User { api_key_hash: first.api_key_hash.clone(), ..new_user(0) }),
    ];
    for (case, second) in cases {
        let result = store.insert_user(&second).await;
        assert!(matches!(result, Err(StoreError::Duplicate)), "{case}: expected Duplicate, got {result:?}");
        assert_eq!(store.user_by_id(&second.id).await.unwrap(), None, "{case}: nothing was stored");
    }
    assert_eq!(store.user_by_id(&first.id).await.unwrap(), Some(first), "the first user is untouched");
    let (_, total) = store.list_users(None, 100, 0).await.unwrap();
    assert_eq!(total, 1, "still exactly one user");
}

#[actix_web::test]
async fn update_user_changes_only_the_fields_it_is_given() {
    let (store, _dir) = open_test_store().await;
    let login = now() - Duration::seconds(30);
    type Expect = fn(&mut User);
    let cases: Vec<(&str, UserUpdate, Expect)> = vec![
        ("nothing but updated_at", UserUpdate::default(), |_| {}),
        ("first name", UserUpdate { first_name: Some("Augusta".into()), ..Default::default() }, |u| {
            u.first_name = "Augusta".into()
        }),
        ("last name", UserUpdate { last_name: Some("King".into()), ..Default::default() }, |u| {
            u.last_name = "King".into()
        }),
        (
            "password hash",
            UserUpdate { password_hash: Some("$argon2id$new".into()), ..Default::default() },
            |u| u.password_hash = "$argon2id$new".into(),
        ),
        (
            "api key",
            UserUpdate { api_key: Some(("f".repeat(64), "sk_fffffff".into())), ..Default::default() },
            |u| {
                u.api_key_hash = "f".repeat(64);
                u.api_key_prefix = "sk_fffffff".into();
            },
        ),
        ("role", UserUpdate { role: Some(Role::Admin), ..Default::default() }, |u| u.role = Role::Admin),
        ("deactivation", UserUpdate { active: Some(false), ..Default::default() }, |u| u.active = false),
        (
            "names together",
            UserUpdate { first_name: Some("A".into()), last_name: Some("B".into()), ..Default::default() },
            |u| {
                u.first_name = "A".into();
                u.last_name = "B".into();
            },
        ),
    ];
    for (case, update, expect) in cases {
        let user = User {
            created_at: now() - Duration::hours(1),
            updated_at: now() - Duration::hours(1),
            ..new_user(5)
        };
        store.insert_user(&user).await.unwrap();
        let at = now();
        let mut expected = user.clone();
        expect(&mut expected);
        expected.updated_at = at;
        let returned = store.update_user(&user.id, &update, at).await.unwrap();
        assert_eq!(returned.as_ref(), Some(&expected), "{case}: the returned user");
        assert_eq!(store.user_by_id(&user.id).await.unwrap(), Some(expected), "{case}: the stored user");
    }

    // last_login on its own, checked separately because the value is a timestamp.
    let user = insert_new_user(store.as_ref(), 0).await;
    let at = now();
    let updated = store
        .update_user(&user.id, &UserUpdate { last_login: Some(login), ..Default::default() }, at)
        .await
        .unwrap()
        .expect("user exists");
    assert_eq!((updated.last_login, updated.updated_at), (Some(login), at), "last login recorded");
}

#[actix_web::test]
async fn a_new_api_key_makes_the_old_hash_unknown() {
    let (store, _dir) = open_test_store().await;
    let user = insert_new_user(store.as_ref(), 0).await;
    let new_hash = format!("{}{}", unique_hex(), unique_hex());
    let update = UserUpdate { api_key: Some((new_hash.clone(), "sk_newnewn".into())), ..Default::default() };
    store.update_user(&user.id, &update, now()).await.unwrap().expect("user exists");

    assert_eq!(
        store.user_by_api_key_hash(&user.api_key_hash).await.unwrap(),
        None,
        "the old key no longer finds the user"
    );
    let found = store.user_by_api_key_hash(&new_hash).await.unwrap().expect("the new key finds the user");
    assert_eq!((found.id, found.api_key_prefix), (user.id, "sk_newnewn".to_owned()));
}

#[actix_web::test]
async fn taking_another_users_api_key_hash_in_an_update_is_a_duplicate() {
    let (store, _dir) = open_test_store().await;
    let owner = insert_new_user(store.as_ref(), 0).await;
    let other = insert_new_user(store.as_ref(), 0).await;
    let update = UserUpdate {
        api_key: Some((owner.api_key_hash.clone(), "sk_stolen0".into())),
        first_name: Some("Mallory".into()),
        ..Default::default()
    };
    let result = store.update_user(&other.id, &update, now()).await;
    assert!(matches!(result, Err(StoreError::Duplicate)), "expected Duplicate, got {result:?}");
    assert_eq!(store.user_by_id(&other.id).await.unwrap(), Some(other), "the refused update changed nothing");
    assert_eq!(
        store.user_by_api_key_hash(&owner.api_key_hash).await.unwrap(),
        Some(owner),
        "the key still finds its owner"
    );
}

#[actix_web::test]
async fn updating_an_unknown_user_returns_none() {
    let (store, _dir) = open_test_store().await;
    let someone = insert_new_user(store.as_ref(), 0).await;
    let cases = [
        ("an empty update", UserUpdate::default()),
        ("a name", UserUpdate { first_name: Some("Nobody".into()), ..Default::default() }),
        (
            "an unused api key",
            UserUpdate { api_key: Some((unique_hex(), "sk_unused0".into())), ..Default::default() },
        ),
        (
            "an api key another user holds",
            UserUpdate {
                api_key: Some((someone.api_key_hash.clone(), "sk_taken00".into())),
                ..Default::default()
            },
        ),
    ];
    for (case, update) in cases {
        let result = store.update_user("no-such-user", &update, now()).await;
        assert!(matches!(result, Ok(None)), "{case}: expected Ok(None), got {result:?}");
    }
    let (_, total) = store.list_users(None, 100, 0).await.unwrap();
    assert_eq!(total, 1, "no user was created by an update");
}

#[actix_web::test]
async fn list_users_matches_email_and_names_case_insensitively() {
    let (store, _dir) = open_test_store().await;
    let base = now() - Duration::minutes(1);
    let users = [
        named_user("alice.smith@example.com", "Alice", "Smith", base, 0),
        named_user("bob@example.org", "Robert", "Jones", base, 1),
        named_user("carol@example.net", "Carol", "SMITHERS", base, 2),
        named_user("dave@example.com", "David", "Ng", base, 3),
    ];
    for u in &users {
        store.insert_user(u).await.unwrap();
    }
    let cases: &[(&str, Option<&str>, &[&str])] = &[
        (
            "no query lists everyone",
            None,
            &["alice.smith@example.com", "bob@example.org", "carol@example.net", "dave@example.com"],
        ),
        ("email substring", Some("example.org"), &["bob@example.org"]),
        ("email in upper case", Some("BOB@EXAMPLE"), &["bob@example.org"]),
        ("first name in lower case", Some("robert"), &["bob@example.org"]),
        ("first name in mixed case", Some("dAvId"), &["dave@example.com"]),
        ("last name stored upper case, queried lower case", Some("smithers"), &["carol@example.net"]),
        (
            "a substring of email and of a last name",
            Some("smith"),
            &["alice.smith@example.com", "carol@example.net"],
        ),
        ("the middle of a name", Some("ober"), &["bob@example.org"]),
        ("nothing matches", Some("zebra"), &[]),
    ];
    for (case, query, expected) in cases {
        let (found, total) = store.list_users(*query, 100, 0).await.unwrap();
        let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
        assert_eq!(emails(&found), expected, "{case}: query {query:?}");
        assert_eq!(total, expected.len() as i64, "{case}: total for {query:?}");
    }
}

#[actix_web::test]
async fn list_users_folds_case_beyond_ascii() {
    let (store, _dir) = open_test_store().await;
    let base = now();
    store.insert_user(&named_user("emilie@example.com", "Émilie", "Ørsted", base, 0)).await.unwrap();
    store.insert_user(&named_user("zoe@example.com", "Zoë", "Brown", base, 1)).await.unwrap();
    for (case, query) in [
        ("lower-case é finds É", "émilie"),
        ("upper-case É finds É", "ÉMILIE"),
        ("lower-case ø finds Ø", "ørsted"),
    ] {
        let (found, total) = store.list_users(Some(query), 100, 0).await.unwrap();
        assert_eq!(
            (emails(&found), total),
            (BTreeSet::from(["emilie@example.com".to_owned()]), 1),
            "{case}: query {query:?}"
        );
    }
    let (found, _) = store.list_users(Some("ZOË"), 100, 0).await.unwrap();
    assert_eq!(emails(&found), BTreeSet::from(["zoe@example.com".to_owned()]), "upper-case Ë finds ë");
}

#[actix_web::test]
async fn list_users_matches_wildcard_and_regex_characters_literally() {
    let (store, _dir) = open_test_store().await;
    let base = now();
    let users = [
        named_user("plain@example.com", "Plain", "User", base, 0),
        named_user("percent@example.com", "Hundred%", "Sure", base, 1),
        named_user("underscore@example.com", "Snake_case", "Name", base, 2),
        named_user("regex@example.com", "Dot.*Star", "Name", base, 3),
        named_user("dollar@example.com", "Cash$", "Money", base, 4),
        named_user("backslash@example.com", "Back\\slash", "Name", base, 5),
        named_user("brackets@example.com", "[Square](Round)", "Name", base, 6),
    ];
    for u in &users {
        store.insert_user(u).await.unwrap();
    }
    let cases: &[(&str, &str, &[&str])] = &[
        ("% is not a LIKE wildcard", "%", &["percent@example.com"]),
        ("_ is not a LIKE single-character wildcard", "_", &["underscore@example.com"]),
        ("_ between letters is literal", "e_c", &["underscore@example.com"]),
        (".* is not a regex that matches everyone", ".*", &["regex@example.com"]),
        ("$ is not an end anchor", "$", &["dollar@example.com"]),
        ("^ is not a start anchor", "^", &[]),
        ("a backslash is literal", "\\", &["backslash@example.com"]),
        ("brackets are not a character class", "[square]", &["brackets@example.com"]),
        ("parentheses are not a group", "(round)", &["brackets@example.com"]),
        ("| is not an alternation", "plain|cash", &[]),
        ("+ is not a repetition", "a+", &[]),
        ("an escaped percent is not an escape", "\\%", &[]),
    ];
    for (case, query, expected) in cases {
        let (found, total) = store.list_users(Some(query), 100, 0).await.unwrap();
        let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
        assert_eq!(emails(&found), expected, "{case}: query {query:?}");
        assert_eq!(total, expected.len() as i64, "{case}: total for {query:?}");
    }
}

/// A listing case: description, query, limit, offset, expected users in order, expected total.
type PageCase<'a> = (&'a str, Option<&'a str>, i64, i64, &'a [&'a str], i64);

#[actix_web::test]
async fn list_users_pages_by_creation_time_with_limit_offset_and_total() {
    let (store, _dir) = open_test_store().await;
    let base = now() - Duration::minutes(1);
    // Inserted out of order: the listing follows created_at, not insertion.
    let order = [3, 0, 4, 1, 2];
    for i in order {
        let first = if i % 2 == 0 { "Even" } else { "Odd" };
        store.insert_user(&named_user(&format!("u{i}@example.com"), first, "Page", base, i)).await.unwrap();
    }
    let cases: &[PageCase] = &[
        ("first page", None, 2, 0, &["u0", "u1"], 5),
        ("second page", None, 2, 2, &["u2", "u3"], 5),
        ("last, short page", None, 2, 4, &["u4"], 5),
        ("past the end", None, 2, 5, &[], 5),
        ("limit 0 still counts", None, 0, 0, &[], 5),
        ("filtered first page", Some("even"), 2, 0, &["u0", "u2"], 3),
        ("filtered second page", Some("even"), 2, 2, &["u4"], 3),
    ];
    for (case, query, limit, offset, expected, expected_total) in cases {
        let (found, total) = store.list_users(*query, *limit, *offset).await.unwrap();
        let got: Vec<String> =
            found.iter().map(|u| u.email.trim_end_matches("@example.com").to_owned()).collect();
        assert_eq!(got, *expected, "{case}: users in creation order");
        assert_eq!(total, *expected_total, "{case}: total of all matches");
    }
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

#[actix_web::test]
async fn charges_and_grants_write_entries_and_update_the_cached_credits() {
    let (store, _dir) = open_test_store().await;
    let user = insert_new_user(store.as_ref(), 20).await;
    let admin = insert_new_user(store.as_ref(), 0).await;

    let charge = CreditChange { reference: Some("msg-1".into()), ..change(&user.id, ServiceType::Chat, -5) };
    let charged = ledger::apply(store.as_ref(), &charge).await.expect("charge within balance");
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
    let granted = ledger::apply(store.as_ref(), &grant).await.expect("grant");
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

    let result = ledger::apply(store.as_ref(), &change(&user.id, ServiceType::Image, -21)).await;
    assert!(matches!(result, Err(CreditError::Insufficient { balance: 20 })), "no entry yet: {result:?}");
    assert_eq!(store.last_ledger_entry(&user.id).await.unwrap(), None, "nothing was written");

    ledger::apply(store.as_ref(), &change(&user.id, ServiceType::Image, -15)).await.expect("within balance");
    let result = ledger::apply(store.as_ref(), &change(&user.id, ServiceType::Image, -6)).await;
    assert!(matches!(result, Err(CreditError::Insufficient { balance: 5 })), "after a charge: {result:?}");
    assert_eq!(store.ledger_page(&user.id, None, 10).await.unwrap().len(), 1, "still one entry");
    let cached = store.user_by_id(&user.id).await.unwrap().unwrap();
    assert_eq!((cached.credits, cached.credits_seq), (5, 1), "the cache is unchanged by the refusal");

    let exact = ledger::apply(store.as_ref(), &change(&user.id, ServiceType::Chat, -5))
        .await
        .expect("to exactly zero");
    assert_eq!(exact.balance_after, 0, "the balance may reach zero");

    let unknown = ledger::apply(store.as_ref(), &change("no-such-user", ServiceType::Grant, 5)).await;
    assert!(matches!(unknown, Err(CreditError::UnknownUser)), "unknown user: {unknown:?}");
}

#[actix_web::test]
async fn a_ledger_entry_with_a_taken_sequence_number_is_a_duplicate() {
    let (store, _dir) = open_test_store().await;
    let user = insert_new_user(store.as_ref(), 10).await;
    let entry = ledger::apply(store.as_ref(), &change(&user.id, ServiceType::Chat, -1)).await.unwrap();
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
    ledger::apply(store.as_ref(), &change(&user.id, ServiceType::Chat, -1)).await.unwrap();
    ledger::apply(store.as_ref(), &change(&user.id, ServiceType::Chat, -1)).await.unwrap();
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
                ledger::apply(store.as_ref(), &charge).await
            })
        })
        .collect();
    let (mut succeeded, mut refused) = (0, 0);
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => succeeded += 1,
            Err(CreditError::Insufficient { balance: 0 }) => refused += 1,
            Err(other) => panic!("a charge failed for another reason: {other:?}"),
        }
    }
    assert_eq!((succeeded, refused), (20, 30), "20 charges succeed and 30 are refused");

    let (seq, balance) = ledger::balance(store.as_ref(), &user.id).await.unwrap();
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
        ledger::apply(store.as_ref(), &change(&user.id, ServiceType::Chat, -1)).await.unwrap();
    }
    let other = insert_new_user(store.as_ref(), 100).await;
    ledger::apply(store.as_ref(), &change(&other.id, ServiceType::Chat, -1)).await.unwrap();

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
        ledger::apply(store.as_ref(), c).await.expect("apply");
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
async fn concurrent_partial_updates_of_one_user_do_not_undo_each_other() {
    let (store, _dir) = open_test_store().await;
    let user = insert_new_user(store.as_ref(), 100).await;
    // A password change, a login and a charge of the same user at the same moment, as happens
    // when a user changes their password while another tab logs in and chats.
    for round in 1..=20i64 {
        let barrier = Arc::new(tokio::sync::Barrier::new(4));
        let hash = format!("$argon2id$round-{round}");
        let login = now() - Duration::seconds(round);
        let start = |barrier: Arc<tokio::sync::Barrier>| async move { barrier.wait().await };
        let password = {
            let (store, id, barrier, hash) = (store.clone(), user.id.clone(), barrier.clone(), hash.clone());
            tokio::spawn(async move {
                start(barrier).await;
                let update = UserUpdate { password_hash: Some(hash), ..Default::default() };
                store.update_user(&id, &update, now()).await.map(drop)
            })
        };
        let last_login = {
            let (store, id, barrier) = (store.clone(), user.id.clone(), barrier.clone());
            tokio::spawn(async move {
                start(barrier).await;
                let update = UserUpdate { last_login: Some(login), ..Default::default() };
                store.update_user(&id, &update, now()).await.map(drop)
            })
        };
        let name = {
            let (store, id, barrier) = (store.clone(), user.id.clone(), barrier.clone());
            tokio::spawn(async move {
                start(barrier).await;
                let update = UserUpdate { first_name: Some(format!("Round {round}")), ..Default::default() };
                store.update_user(&id, &update, now()).await.map(drop)
            })
        };
        let charge = {
            let (store, barrier, c) =
                (store.clone(), barrier.clone(), change(&user.id, ServiceType::Chat, -1));
            tokio::spawn(async move {
                start(barrier).await;
                ledger::apply(store.as_ref(), &c).await.map(drop)
            })
        };
        password.await.unwrap().expect("password change");
        last_login.await.unwrap().expect("login update");
        name.await.unwrap().expect("name change");
        charge.await.unwrap().expect("charge");

        let stored = store.user_by_id(&user.id).await.unwrap().unwrap();
        assert_eq!(
            (stored.password_hash, stored.last_login, stored.first_name, stored.credits, stored.credits_seq),
            (hash, Some(login), format!("Round {round}"), 100 - round, round),
            "round {round}: every concurrent change is kept"
        );
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
