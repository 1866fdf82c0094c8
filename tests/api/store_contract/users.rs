//! The contract for users: reading back by id, email and API key hash, duplicates, partial
//! updates (also concurrent ones), and listing with search and paging.

use std::collections::BTreeSet;
use std::sync::Arc;

use switchboard::services::credits::ledger;
use switchboard::store::*;
use time::{Duration, OffsetDateTime};

use super::{change, insert_new_user, new_user, unique_hex};
use crate::support::store::open_test_store;

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

fn emails(users: &[User]) -> BTreeSet<String> {
    users.iter().map(|u| u.email.clone()).collect()
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
                ledger::apply(store.as_ref(), None, &c).await.0.map(drop)
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

#[actix_web::test]
async fn signups_are_counted_per_utc_day_from_a_start() {
    let (store, _dir) = open_test_store().await;
    let today = utc_day(now()).midnight().assume_utc();
    let yesterday = today - time::Duration::days(1);
    for at in [today - time::Duration::days(5), yesterday, yesterday + time::Duration::hours(23), today] {
        let user = User { created_at: at, updated_at: at, ..super::new_user(0) };
        store.insert_user(&user).await.unwrap();
    }
    let days = store.signups_by_day(yesterday).await.unwrap();
    assert_eq!(
        days,
        [(utc_day(yesterday), 2), (utc_day(today), 1)],
        "per day, oldest first, from the start on"
    );
}

/// An active admin stored fresh.
async fn insert_admin(store: &dyn Store) -> User {
    let user = User { role: Role::Admin, ..new_user(0) };
    store.insert_user(&user).await.expect("insert admin");
    user
}

#[actix_web::test]
async fn removing_an_admin_keeps_the_last_active_one() {
    let (store, _dir) = open_test_store().await;
    let (ada, bob) = (insert_admin(store.as_ref()).await, insert_admin(store.as_ref()).await);
    let demote = UserUpdate { role: Some(Role::User), ..Default::default() };
    let deactivate = UserUpdate { active: Some(false), ..Default::default() };
    match store.update_user_keeping_an_admin(&ada.id, &demote, now()).await.unwrap() {
        AdminKept::Updated(user) => assert_eq!(user.role, Role::User, "demoted while another admin remains"),
        other => panic!("the first of two admins is demoted, not {other:?}"),
    }
    let kept = store.update_user_keeping_an_admin(&bob.id, &deactivate, now()).await.unwrap();
    assert_eq!(kept, AdminKept::LastAdmin, "the last active admin stays");
    assert!(store.user_by_id(&bob.id).await.unwrap().unwrap().active, "and is unchanged");
    let missing = store.update_user_keeping_an_admin("no-such-user", &demote, now()).await.unwrap();
    assert_eq!(missing, AdminKept::NotFound, "an unknown user, while another admin is active");
}

#[actix_web::test]
async fn two_admins_removing_each_other_at_once_leave_one_admin() {
    let (store, _dir) = open_test_store().await;
    for trial in 0..5 {
        let (a, b) = (insert_admin(store.as_ref()).await, insert_admin(store.as_ref()).await);
        // Every earlier trial left one admin: demote it first, so these two are the only ones.
        let (admins, _) = store.list_users(None, 1000, 0).await.unwrap();
        for other in admins.iter().filter(|u| u.role == Role::Admin && u.id != a.id && u.id != b.id) {
            let demote = UserUpdate { role: Some(Role::User), ..Default::default() };
            store.update_user(&other.id, &demote, now()).await.unwrap();
        }
        let demote = UserUpdate { role: Some(Role::User), ..Default::default() };
        let (first, second) = tokio::join!(
            store.update_user_keeping_an_admin(&a.id, &demote, now()),
            store.update_user_keeping_an_admin(&b.id, &demote, now()),
        );
        let outcomes = [first.unwrap(), second.unwrap()];
        let refused = outcomes.iter().filter(|o| **o == AdminKept::LastAdmin).count();
        assert_eq!(refused, 1, "trial {trial}: exactly one removal is refused: {outcomes:?}");
        let roles = [
            store.user_by_id(&a.id).await.unwrap().unwrap().role,
            store.user_by_id(&b.id).await.unwrap().unwrap().role,
        ];
        assert_eq!(roles.iter().filter(|r| **r == Role::Admin).count(), 1, "trial {trial}: one admin left");
    }
}
