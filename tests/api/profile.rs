//! The signed-in user's own account (`/api/me*`) and the forgotten-password flow (`/api/password/*`).

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::helpers::*;

/// A strong password different from [`PASSWORD`].
const NEW_PASSWORD: &str = "copper-meadow-tangent-77";

/// `PUT /api/me` with a bearer credential.
async fn put_me(app: &TestApp, bearer: &str, body: &Value) -> Response {
    app.request(Method::PUT, "/api/me").bearer_auth(bearer).json(body).send().await.expect("request")
}

/// `GET /api/me` with the API key in `X-API-Key`.
async fn get_me_with_x_api_key(app: &TestApp, key: &str) -> Response {
    app.request(Method::GET, "/api/me").header("X-API-Key", key).send().await.expect("request")
}

/// Asserts a 422 whose `fields` names `field` (and only known fields); returns the body.
async fn assert_invalid_field(response: Response, field: &str, case: &str) -> Value {
    let body = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", case).await;
    let fields = body["fields"].as_object().unwrap_or_else(|| panic!("{case}: fields object in {body}"));
    let problems = fields.get(field).unwrap_or_else(|| panic!("{case}: fields names {field:?} in {body}"));
    assert!(
        problems
            .as_array()
            .is_some_and(|p| !p.is_empty() && p.iter().all(|s| s.as_str().is_some_and(|s| !s.is_empty()))),
        "{case}: a non-empty list of problems for {field:?} in {body}"
    );
    body
}

/// Asserts a timestamp is RFC 3339 in UTC.
fn assert_utc_timestamp(value: &Value, case: &str) {
    let text = value.as_str().unwrap_or_else(|| panic!("{case}: a timestamp string, got {value}"));
    let parsed =
        OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|e| panic!("{case}: RFC 3339 {text:?}: {e}"));
    assert!(parsed.offset().is_utc(), "{case}: UTC offset in {text:?}");
}

/// The user's `TestUser` with another password.
fn with_password(user: &TestUser, password: &str) -> TestUser {
    TestUser { password: password.to_owned(), ..user.clone() }
}

/// Requests a reset mail for `email` and returns the token of mail number `nth` (1-based).
async fn request_reset_token(app: &TestApp, email: &str, nth: usize) -> String {
    let response = app.post_json("/api/password/forgot", &json!({"email": email})).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED, "forgot request accepted");
    let mails = app.wait_for_mail(nth).await;
    reset_token_from_mail(&mails[nth - 1])
}

async fn post_reset(app: &TestApp, token: &str, new_password: &str) -> Response {
    app.post_json("/api/password/reset", &json!({"token": token, "new_password": new_password})).await
}

// ---------------------------------------------------------------- GET /api/me

#[actix_web::test]
async fn get_me_answers_exactly_the_user_fields_and_is_not_cached() {
    let app = spawn_app().await;
    let user = app.register_user().await;

    let response = app.get_with("/api/me", &user.api_key).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    let body: Value = response.json().await.unwrap();

    let mut keys: Vec<&str> = body.as_object().expect("a JSON object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, USER_FIELDS, "exactly the user fields (no hashes, no internals) in {body}");

    assert_eq!(body["id"], user.id.as_str());
    assert_eq!(body["email"], user.email.as_str());
    assert_eq!(body["first_name"], "Ada");
    assert_eq!(body["last_name"], "Lovelace");
    assert_eq!(body["role"], "user");
    assert_eq!(body["credits"], 100);
    assert_eq!(body["api_key_prefix"], &user.api_key[..10]);
    assert_eq!(body["active"], true);
    assert_eq!(body["last_login"], Value::Null, "never logged in yet");
    assert_utc_timestamp(&body["created_at"], "created_at");
}

#[actix_web::test]
async fn get_me_shows_the_last_login_after_a_login() {
    let app = spawn_app().await;
    let (_, token) = app.user_with_token().await;

    let body: Value = app.get_with("/api/me", &token).await.json().await.unwrap();

    assert_utc_timestamp(&body["last_login"], "last_login after login");
}

#[actix_web::test]
async fn get_me_accepts_each_kind_of_credential() {
    let app = spawn_app().await;
    let (user, token) = app.user_with_token().await;

    for (case, response) in [
        ("access token", app.get_with("/api/me", &token).await),
        ("API key as bearer", app.get_with("/api/me", &user.api_key).await),
        ("API key as X-API-Key", get_me_with_x_api_key(&app, &user.api_key).await),
    ] {
        assert_eq!(response.status(), StatusCode::OK, "{case}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["id"], user.id.as_str(), "{case}");
    }
}

#[actix_web::test]
async fn get_me_without_a_valid_credential_is_401() {
    let app = spawn_app().await;
    let (user, token) = app.user_with_token().await;
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let wrong_key = format!("sk_{}", "A".repeat(43));

    let cases: Vec<(&str, Option<(&str, String)>)> = vec![
        ("no credential", None),
        ("garbage bearer", Some(("authorization", "Bearer not-a-token".into()))),
        ("empty bearer", Some(("authorization", "Bearer ".into()))),
        ("tampered access token", Some(("authorization", format!("Bearer {tampered}")))),
        ("unknown API key as bearer", Some(("authorization", format!("Bearer {wrong_key}")))),
        ("unknown API key as X-API-Key", Some(("x-api-key", wrong_key.clone()))),
        ("basic auth", Some(("authorization", "Basic dXNlcjpwYXNz".into()))),
        ("API key with a wrong scheme", Some(("authorization", format!("Token {}", user.api_key)))),
    ];
    for (case, header) in cases {
        let mut request = app.request(Method::GET, "/api/me");
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        let response = request.send().await.unwrap();
        assert_error(response, StatusCode::UNAUTHORIZED, "unauthorized", case).await;
    }
}

// ---------------------------------------------------------------- PUT /api/me

#[actix_web::test]
async fn put_me_changes_the_names_trimmed_and_keeps_them() {
    let app = spawn_app().await;
    let (user, token) = app.user_with_token().await;

    let response = put_me(&app, &token, &json!({"first_name": "  Grace ", "last_name": " Hopper   "})).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (&body["first_name"], &body["last_name"]),
        (&json!("Grace"), &json!("Hopper")),
        "trimmed in {body}"
    );
    assert_eq!(body["email"], user.email.as_str(), "email unchanged");
    assert_eq!(body["id"], user.id.as_str());

    let stored: Value = app.get_with("/api/me", &user.api_key).await.json().await.unwrap();
    assert_eq!(
        (&stored["first_name"], &stored["last_name"]),
        (&json!("Grace"), &json!("Hopper")),
        "persisted: {stored}"
    );
}

#[actix_web::test]
async fn put_me_accepts_names_of_100_characters_counted_as_characters() {
    let app = spawn_app().await;
    let (_, token) = app.user_with_token().await;
    let ascii = "a".repeat(100);
    let accented = "é".repeat(100); // 200 bytes, 100 characters

    let response = put_me(&app, &token, &json!({"first_name": ascii, "last_name": accented})).await;

    assert_eq!(response.status(), StatusCode::OK, "100 characters are allowed");
    let body: Value = response.json().await.unwrap();
    assert_eq!((&body["first_name"], &body["last_name"]), (&json!(ascii), &json!(accented)));
}

#[actix_web::test]
async fn put_me_rejects_invalid_bodies_with_the_field_named() {
    let app = spawn_app().await;
    let (user, token) = app.user_with_token().await;

    let cases = [
        (
            "email in the body",
            json!({"first_name": "A", "last_name": "B", "email": "other@example.com"}),
            "email",
        ),
        (
            "same email in the body",
            json!({"first_name": "A", "last_name": "B", "email": user.email}),
            "email",
        ),
        (
            "first name of 101 characters",
            json!({"first_name": "a".repeat(101), "last_name": "B"}),
            "first_name",
        ),
        (
            "last name of 101 characters",
            json!({"first_name": "A", "last_name": "é".repeat(101)}),
            "last_name",
        ),
        ("control character (bell)", json!({"first_name": "A\u{7}da", "last_name": "B"}), "first_name"),
        ("control character (newline)", json!({"first_name": "A", "last_name": "Love\nlace"}), "last_name"),
        ("empty first name", json!({"first_name": "", "last_name": "B"}), "first_name"),
        ("only spaces", json!({"first_name": "A", "last_name": "   "}), "last_name"),
        ("missing last_name", json!({"first_name": "A"}), "last_name"),
        ("missing first_name", json!({"last_name": "B"}), "first_name"),
        ("first_name of the wrong type", json!({"first_name": 7, "last_name": "B"}), "first_name"),
        (
            "last_name as an operator object",
            json!({"first_name": "A", "last_name": {"$set": "x"}}),
            "last_name",
        ),
    ];
    for (case, body, field) in cases {
        let response = put_me(&app, &token, &body).await;
        assert_invalid_field(response, field, case).await;
    }

    let stored: Value = app.get_with("/api/me", &token).await.json().await.unwrap();
    assert_eq!(
        (&stored["first_name"], &stored["last_name"]),
        (&json!("Ada"), &json!("Lovelace")),
        "nothing changed"
    );
    assert_eq!((&stored["role"], &stored["credits"]), (&json!("user"), &json!(100)), "no escalation");
    assert_eq!(stored["email"], user.email.as_str());
}

#[actix_web::test]
async fn put_me_refuses_unknown_fields_naming_them() {
    let app = spawn_app().await;
    let (_, token) = app.user_with_token().await;

    for (case, extra, value) in [
        ("unknown field", "nickname", json!("x")),
        ("role escalation attempt", "role", json!("admin")),
        ("credits injection", "credits", json!(1_000_000)),
        ("active flag", "active", json!(false)),
    ] {
        let mut body = json!({"first_name": "A", "last_name": "B"});
        body[extra] = value;
        let response = put_me(&app, &token, &body).await;
        assert_invalid_field(response, extra, case).await;
    }

    let stored: Value = app.get_with("/api/me", &token).await.json().await.unwrap();
    assert_eq!(
        (&stored["first_name"], &stored["role"], &stored["credits"]),
        (&json!("Ada"), &json!("user"), &json!(100))
    );
    assert_eq!(stored["active"], true);
}

#[actix_web::test]
async fn put_me_without_credentials_is_401() {
    let app = spawn_app().await;

    let response =
        app.request(Method::PUT, "/api/me").json(&json!({"first_name": "A", "last_name": "B"})).send().await;

    assert_error(response.unwrap(), StatusCode::UNAUTHORIZED, "unauthorized", "PUT /api/me anonymously")
        .await;
}

// ---------------------------------------------------------------- stats and usage

#[actix_web::test]
async fn a_new_user_has_starting_credits_and_no_use_in_stats() {
    let app = spawn_app().await;
    let (_, token) = app.user_with_token().await;

    let response = app.get_with("/api/me/stats", &token).await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"credits": 100, "total_chats": 0, "total_images": 0, "credits_used": {"chat": 0, "image": 0}})
    );
}

#[actix_web::test]
async fn stats_follow_the_configured_starting_credits() {
    let app = spawn_app_with(&["--starting-credits", "7"]).await;
    let user = app.register_user().await;

    let body: Value = app.get_with("/api/me/stats", &user.api_key).await.json().await.unwrap();

    assert_eq!(body["credits"], 7, "{body}");
}

#[actix_web::test]
async fn a_new_user_has_an_empty_usage_ledger() {
    let app = spawn_app().await;
    let (_, token) = app.user_with_token().await;

    for query in ["", "?limit=1", "?limit=100", "?limit=50&before=12345"] {
        let response = app.get_with(&format!("/api/me/usage{query}"), &token).await;
        assert_eq!(response.status(), StatusCode::OK, "usage{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body, json!({"entries": [], "next_before": null}), "usage{query}");
    }
}

/// Found by the API fuzzing (scripts/schemathesis): the document allowed any `before` of up to
/// 100 characters, and the server refused most of them. Each list now documents its cursor's
/// form, and every cursor of that form reads a page while nothing else passes for one.
#[actix_web::test]
async fn cursors_are_accepted_exactly_in_the_form_the_api_document_gives() {
    let app = spawn_app().await;
    let (_, token) = app.user_with_token().await;
    let id_of_65 = format!("/api/chats?before=1.{}", "a".repeat(65));

    let cases = [
        ("the smallest ledger cursor", "/api/me/usage?before=1", true),
        ("a ledger cursor of 18 digits", "/api/me/usage?before=999999999999999999", true),
        ("a ledger cursor of 19 digits", "/api/me/usage?before=1000000000000000000", false),
        ("a ledger cursor of zero", "/api/me/usage?before=0", false),
        ("a ledger cursor with a leading zero", "/api/me/usage?before=012", false),
        ("a signed ledger cursor", "/api/me/usage?before=%2B12", false),
        ("a negative ledger cursor", "/api/me/usage?before=-12", false),
        ("a chat cursor at the epoch", "/api/chats?before=0.0", true),
        (
            "a chat cursor of 14 digits and a UUID",
            "/api/chats?before=99999999999999.0190f3c2-7a4e-7b1d-9c2e-3f4a5b6c7d8e",
            true,
        ),
        ("a chat cursor of 15 digits", "/api/chats?before=100000000000000.0", false),
        ("a chat cursor before the epoch", "/api/chats?before=-1.0", false),
        ("a chat cursor with an upper-case id", "/api/chats?before=1.ABC", false),
        ("a chat cursor with an empty id", "/api/chats?before=1.", false),
        ("a chat cursor with an id of 65 characters", id_of_65.as_str(), false),
    ];
    for (case, path, accepted) in cases {
        let response = app.get_with(path, &token).await;
        if accepted {
            assert_eq!(response.status(), StatusCode::OK, "{case}: {path}");
        } else {
            assert_invalid_field(response, "before", case).await;
        }
    }
}

#[actix_web::test]
async fn usage_rejects_bad_paging_parameters() {
    let app = spawn_app().await;
    let (_, token) = app.user_with_token().await;

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=-1", "limit"),
        ("before=abc", "before"),
        ("before=", "before"),
    ] {
        let response = app.get_with(&format!("/api/me/usage?{query}"), &token).await;
        assert_invalid_field(response, field, query).await;
    }
    // Query strings that do not even parse still get the JSON 422 shape.
    for query in ["limit=abc", "limit=1.5", "limit=99999999999999999999", "unknown=1"] {
        let response = app.get_with(&format!("/api/me/usage?{query}"), &token).await;
        let body = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", query).await;
        assert!(body["fields"].as_object().is_some_and(|f| !f.is_empty()), "{query}: fields in {body}");
    }
}

#[actix_web::test]
async fn stats_and_usage_need_a_credential() {
    let app = spawn_app().await;

    for path in ["/api/me/stats", "/api/me/usage"] {
        let response = app.request(Method::GET, path).send().await.unwrap();
        assert_error(response, StatusCode::UNAUTHORIZED, "unauthorized", path).await;
    }
}

// ---------------------------------------------------------------- API key

#[actix_web::test]
async fn regenerating_the_api_key_kills_the_old_one_at_once() {
    let app = spawn_app().await;
    let (user, token) = app.user_with_token().await;
    assert_eq!(app.get_with("/api/me", &user.api_key).await.status(), StatusCode::OK, "old key works before");

    let response =
        app.post_json_with("/api/me/api-key", &token, &json!({"current_password": user.password})).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "only api_key in {body}");
    let new_key = body["api_key"].as_str().expect("api_key string").to_owned();
    assert!(new_key.starts_with("sk_") && new_key.len() >= 3 + 43, "sk_ and 32 random bytes: {new_key}");
    assert_ne!(new_key, user.api_key);

    let old_bearer = app.get_with("/api/me", &user.api_key).await;
    assert_error(old_bearer, StatusCode::UNAUTHORIZED, "unauthorized", "old key as bearer").await;
    let old_header = get_me_with_x_api_key(&app, &user.api_key).await;
    assert_error(old_header, StatusCode::UNAUTHORIZED, "unauthorized", "old key as X-API-Key").await;

    let by_bearer = app.get_with("/api/me", &new_key).await;
    assert_eq!(by_bearer.status(), StatusCode::OK, "new key as bearer");
    let me: Value = by_bearer.json().await.unwrap();
    assert_eq!(me["api_key_prefix"], &new_key[..10], "the prefix of the new key");
    assert_eq!(get_me_with_x_api_key(&app, &new_key).await.status(), StatusCode::OK, "new key as X-API-Key");
    assert_eq!(app.get_with("/api/me", &token).await.status(), StatusCode::OK, "the session is untouched");
}

#[actix_web::test]
async fn an_api_key_can_replace_itself() {
    let app = spawn_app().await;
    let user = app.register_user().await;

    let response = app
        .request(Method::POST, "/api/me/api-key")
        .header("X-API-Key", &user.api_key)
        .json(&json!({"current_password": user.password}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let new_key = response.json::<Value>().await.unwrap()["api_key"].as_str().unwrap().to_owned();
    assert_eq!(app.get_with("/api/me", &user.api_key).await.status(), StatusCode::UNAUTHORIZED, "old key");
    assert_eq!(app.get_with("/api/me", &new_key).await.status(), StatusCode::OK, "new key");
}

#[actix_web::test]
async fn each_regenerated_api_key_is_new() {
    let app = spawn_app().await;
    let (user, token) = app.user_with_token().await;
    let mut seen = vec![user.api_key.clone()];

    for round in 1..=3 {
        let body: Value = app
            .post_json_with("/api/me/api-key", &token, &json!({"current_password": user.password}))
            .await
            .json()
            .await
            .unwrap();
        let key = body["api_key"].as_str().unwrap().to_owned();
        assert!(!seen.contains(&key), "round {round}: a fresh key");
        seen.push(key);
    }
    for (i, key) in seen.iter().enumerate() {
        let expected = if i == seen.len() - 1 { StatusCode::OK } else { StatusCode::UNAUTHORIZED };
        assert_eq!(app.get_with("/api/me", key).await.status(), expected, "key {i} of {}", seen.len());
    }
}

#[actix_web::test]
async fn regenerating_the_api_key_needs_the_password_whatever_the_credential() {
    let app = spawn_app().await;
    let (user, token) = app.user_with_token().await;
    for (case, credential) in [("an access token", token.as_str()), ("the API key", user.api_key.as_str())] {
        let missing = app.post_json_with("/api/me/api-key", credential, &json!({})).await;
        assert_invalid_field(missing, "current_password", &format!("{case}: no password")).await;
        let wrong = json!({"current_password": "not-the-password-at-all"});
        let response = app.post_json_with("/api/me/api-key", credential, &wrong).await;
        assert_invalid_field(response, "current_password", &format!("{case}: a wrong password")).await;
        assert_eq!(app.get_with("/api/me", &user.api_key).await.status(), StatusCode::OK, "{case}: key kept");
    }
}

#[actix_web::test]
async fn a_password_change_voids_the_api_key_and_closes_its_sockets() {
    let app = spawn_app().await;
    let (user, token) = app.user_with_token().await;
    // A key minted from the session, as a thief holding it would.
    let minted: Value = app
        .post_json_with("/api/me/api-key", &token, &json!({"current_password": user.password}))
        .await
        .json()
        .await
        .unwrap();
    let minted = minted["api_key"].as_str().unwrap().to_owned();
    let mut by_key = app.connect_ws(&minted).await;
    let change = json!({"current_password": user.password, "new_password": "an-entirely-new-passphrase-7"});
    assert_eq!(
        app.post_json_with("/api/me/password", &token, &change).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(by_key.closed().await, Some(4001), "the key's socket is closed");
    let old = app.get_with("/api/me", &minted).await;
    assert_error(old, StatusCode::UNAUTHORIZED, "unauthorized", "the key after the password change").await;
    let login = app.post_login(&user.email, "an-entirely-new-passphrase-7").await;
    let token: Value = login.json().await.unwrap();
    let me: Value =
        app.get_with("/api/me", token["access_token"].as_str().unwrap()).await.json().await.unwrap();
    assert_eq!(me["api_key_prefix"], Value::Null, "no key until a new one is made: {me}");
}

#[actix_web::test]
async fn signing_out_everywhere_else_voids_the_api_key_but_not_when_it_is_the_caller() {
    let app = spawn_app().await;
    let (user, token) = app.user_with_token().await;
    let mut by_key = app.connect_ws(&user.api_key).await;
    let sessions: Value = app.get_with("/api/me/sessions", &token).await.json().await.unwrap();
    assert_eq!(sessions["api_key_sockets"], 1, "the sessions list shows the key's socket: {sessions}");

    // The key itself asks: it is the current credential and stays.
    let response = app.post_json_with("/api/me/sessions/revoke-others", &user.api_key, &json!({})).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get_with("/api/me", &user.api_key).await.status(), StatusCode::OK, "the asking key stays");
    assert_eq!(app.get_with("/api/me", &token).await.status(), StatusCode::UNAUTHORIZED, "the session ended");

    // A login session asks: the key goes too, and its socket closes.
    let token = app.login(&user).await["access_token"].as_str().unwrap().to_owned();
    let response = app.post_json_with("/api/me/sessions/revoke-others", &token, &json!({})).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(by_key.closed().await, Some(4001), "the key's socket is closed");
    assert_eq!(app.get_with("/api/me", &user.api_key).await.status(), StatusCode::UNAUTHORIZED, "key void");
    assert_eq!(app.get_with("/api/me", &token).await.status(), StatusCode::OK, "the asking session stays");
}

// ---------------------------------------------------------------- password change

#[actix_web::test]
async fn a_password_change_needs_the_current_password_and_a_good_new_one() {
    let app = spawn_app().await;
    let (user, token) = app.user_with_token().await;

    let cases = [
        (
            "wrong current password",
            json!({"current_password": "not-my-password-1", "new_password": NEW_PASSWORD}),
            "current_password",
        ),
        (
            "empty current password",
            json!({"current_password": "", "new_password": NEW_PASSWORD}),
            "current_password",
        ),
        (
            "new password too short",
            json!({"current_password": PASSWORD, "new_password": "a1b2c3d"}),
            "new_password",
        ),
        (
            "new password too long",
            json!({"current_password": PASSWORD, "new_password": "x".repeat(129)}),
            "new_password",
        ),
        (
            "new password common",
            json!({"current_password": PASSWORD, "new_password": "password"}),
            "new_password",
        ),
        (
            "new password common, other case",
            json!({"current_password": PASSWORD, "new_password": "PASSWORD123"}),
            "new_password",
        ),
        ("missing new password", json!({"current_password": PASSWORD}), "new_password"),
    ];
    for (case, body, field) in cases {
        let response = app.post_json_with("/api/me/password", &token, &body).await;
        assert_invalid_field(response, field, case).await;
    }

    assert_eq!(
        app.get_with("/api/me", &token).await.status(),
        StatusCode::OK,
        "the session survives failed changes"
    );
    assert_eq!(
        app.post_login(&user.email, PASSWORD).await.status(),
        StatusCode::OK,
        "the password is unchanged"
    );
}

#[actix_web::test]
async fn the_password_routes_refuse_unknown_fields_naming_them() {
    let app = spawn_app().await;
    let (user, token) = app.user_with_token().await;

    let change = app
        .post_json_with(
            "/api/me/password",
            &token,
            &json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD, "user_id": "x"}),
        )
        .await;
    assert_invalid_field(change, "user_id", "password change with user_id").await;
    let forgot = app
        .post_json("/api/password/forgot", &json!({"email": user.email, "redirect": "https://evil.example"}))
        .await;
    assert_invalid_field(forgot, "redirect", "forgot with redirect").await;
    let reset = app
        .post_json(
            "/api/password/reset",
            &json!({"token": "abc", "new_password": NEW_PASSWORD, "email": user.email}),
        )
        .await;
    assert_invalid_field(reset, "email", "reset with email").await;

    assert_eq!(
        app.post_login(&user.email, PASSWORD).await.status(),
        StatusCode::OK,
        "the password is unchanged"
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(app.outbox().is_empty(), "no mail for a refused forgot request");
}

#[actix_web::test]
async fn a_password_change_ends_every_session_and_swaps_the_password() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let first = app.login(&user).await;
    let second = app.login(&user).await;
    let tokens = [first["access_token"].as_str().unwrap(), second["access_token"].as_str().unwrap()];
    for (i, t) in tokens.iter().enumerate() {
        assert_eq!(app.get_with("/api/me", t).await.status(), StatusCode::OK, "session {i} works before");
    }

    let response = app
        .post_json_with(
            "/api/me/password",
            tokens[0],
            &json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
        )
        .await;

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.bytes().await.unwrap().is_empty(), "204 has no body");
    for (i, t) in tokens.iter().enumerate() {
        let response = app.get_with("/api/me", t).await;
        assert_error(
            response,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            &format!("access token of session {i}"),
        )
        .await;
    }
    for (i, login) in [&first, &second].iter().enumerate() {
        let response =
            app.post_json("/api/token/refresh", &json!({"refresh_token": login["refresh_token"]})).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "refresh token of session {i}");
    }
    let old = app.post_login(&user.email, PASSWORD).await;
    assert_error(old, StatusCode::UNAUTHORIZED, "invalid_credentials", "old password").await;
    let fresh = app.login(&with_password(&user, NEW_PASSWORD)).await;
    let fresh_token = fresh["access_token"].as_str().unwrap();
    assert_eq!(app.get_with("/api/me", fresh_token).await.status(), StatusCode::OK, "a new session works");
}

#[actix_web::test]
async fn a_password_change_needs_a_credential() {
    let app = spawn_app().await;

    let response = app
        .post_json("/api/me/password", &json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}))
        .await;

    assert_error(response, StatusCode::UNAUTHORIZED, "unauthorized", "anonymous password change").await;
}

// ---------------------------------------------------------------- forgot and reset

#[actix_web::test]
async fn forgot_answers_the_same_for_known_and_unknown_emails() {
    let app = spawn_app().await;
    let user = app.register_user().await;

    let known = app.post_json("/api/password/forgot", &json!({"email": user.email})).await;
    let unknown = app.post_json("/api/password/forgot", &json!({"email": unique_email()})).await;

    assert_eq!(known.status(), StatusCode::ACCEPTED, "known email");
    assert_eq!(unknown.status(), StatusCode::ACCEPTED, "unknown email");
    let known_type = known.headers().get("content-type").cloned();
    assert_eq!(known_type, unknown.headers().get("content-type").cloned(), "same content type");
    let (known, unknown) = (known.bytes().await.unwrap(), unknown.bytes().await.unwrap());
    assert_eq!(known, unknown, "byte-identical bodies");
    assert!(!known.is_empty(), "a body that says what happens next");
}

#[actix_web::test]
async fn forgot_mails_one_link_with_the_real_address_of_the_server() {
    let app = spawn_app().await;
    let user = app.register_user().await;

    let response = app.post_json("/api/password/forgot", &json!({"email": user.email})).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let mails = app.wait_for_mail(1).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    assert_eq!(app.outbox().len(), 1, "exactly one mail");
    let mail = &mails[0];
    assert!(mail.contains(&format!("To: {}", user.email)), "addressed to the user:\n{mail}");
    let token = reset_token_from_mail(mail);
    assert_eq!(token.len(), 43, "a 32-byte token: {token:?}");
    let link = format!("http://127.0.0.1:{}/reset-password?token={token}", app.port);
    assert!(mail.contains(&link), "the link uses the bound port ({}), expected {link} in:\n{mail}", app.port);
    assert_eq!(mail.matches("token=").count(), 1, "one link:\n{mail}");
}

#[actix_web::test]
async fn forgot_links_use_the_public_url_never_the_request_host() {
    let app = spawn_app_with(&["--public-url", "https://switchboard.example"]).await;
    let user = app.register_user().await;

    let response = app
        .request(Method::POST, "/api/password/forgot")
        .header("Host", "evil.example")
        .header("X-Forwarded-Host", "evil.example")
        .header("X-Forwarded-Proto", "http")
        .header("Forwarded", "host=evil.example;proto=http")
        .json(&json!({"email": user.email}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let mail = &app.wait_for_mail(1).await[0];
    let token = reset_token_from_mail(mail);
    assert!(
        mail.contains(&format!("https://switchboard.example/reset-password?token={token}")),
        "link from --public-url in:\n{mail}"
    );
    assert!(!mail.contains("evil.example"), "no trace of the request's Host in:\n{mail}");
}

#[actix_web::test]
async fn forgot_for_an_unknown_email_sends_nothing() {
    let app = spawn_app().await;
    app.register_user().await;

    let response = app.post_json("/api/password/forgot", &json!({"email": unique_email()})).await;

    assert_eq!(response.status(), StatusCode::ACCEPTED);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(app.outbox().is_empty(), "no mail for an unknown email: {:?}", app.outbox());
}

#[actix_web::test]
async fn forgot_finds_the_account_whatever_the_case_and_spaces_of_the_email() {
    let app = spawn_app().await;
    let user = app.register_user().await;

    let shouted = format!("  {}  ", user.email.to_uppercase());
    let response = app.post_json("/api/password/forgot", &json!({"email": shouted})).await;

    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let mail = &app.wait_for_mail(1).await[0];
    assert!(mail.contains(&format!("To: {}", user.email)), "mailed to the stored address:\n{mail}");
}

#[actix_web::test]
async fn forgot_rejects_bad_bodies() {
    let app = spawn_app().await;

    for (case, body, field) in [
        ("not an email", json!({"email": "nobody"}), "email"),
        ("missing email", json!({}), "email"),
        ("email of the wrong type", json!({"email": 12}), "email"),
    ] {
        let response = app.post_json("/api/password/forgot", &body).await;
        assert_invalid_field(response, field, case).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(app.outbox().is_empty(), "no mail for rejected requests");
}

#[actix_web::test]
async fn a_password_reset_sets_the_new_password() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let token = request_reset_token(&app, &user.email, 1).await;

    let response = post_reset(&app, &token, NEW_PASSWORD).await;

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let old = app.post_login(&user.email, PASSWORD).await;
    assert_error(old, StatusCode::UNAUTHORIZED, "invalid_credentials", "old password after reset").await;
    assert_eq!(app.post_login(&user.email, NEW_PASSWORD).await.status(), StatusCode::OK, "new password");
}

#[actix_web::test]
async fn a_password_reset_token_works_only_once() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let token = request_reset_token(&app, &user.email, 1).await;
    assert_eq!(post_reset(&app, &token, NEW_PASSWORD).await.status(), StatusCode::NO_CONTENT, "first use");

    let again = post_reset(&app, &token, "another-fine-passphrase-9").await;

    assert_error(again, StatusCode::BAD_REQUEST, "invalid_token", "second use").await;
    assert_eq!(
        app.post_login(&user.email, NEW_PASSWORD).await.status(),
        StatusCode::OK,
        "first reset stands"
    );
}

#[actix_web::test]
async fn a_newer_reset_request_voids_the_older_token() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let first = request_reset_token(&app, &user.email, 1).await;
    let second = request_reset_token(&app, &user.email, 2).await;
    assert_ne!(first, second, "each mail has its own token");

    let stale = post_reset(&app, &first, NEW_PASSWORD).await;
    assert_error(stale, StatusCode::BAD_REQUEST, "invalid_token", "the older token").await;

    assert_eq!(
        post_reset(&app, &second, NEW_PASSWORD).await.status(),
        StatusCode::NO_CONTENT,
        "the newer token"
    );
    assert_eq!(app.post_login(&user.email, NEW_PASSWORD).await.status(), StatusCode::OK);
}

#[actix_web::test]
async fn a_rejected_new_password_does_not_burn_the_reset_token() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let token = request_reset_token(&app, &user.email, 1).await;

    for (case, weak) in [
        ("too short", "a1b2c3d".to_owned()),
        ("common", "password".to_owned()),
        ("too long", "x".repeat(129)),
    ] {
        let response = post_reset(&app, &token, &weak).await;
        assert_invalid_field(response, "new_password", case).await;
    }

    assert_eq!(
        post_reset(&app, &token, NEW_PASSWORD).await.status(),
        StatusCode::NO_CONTENT,
        "the token still works"
    );
    assert_eq!(app.post_login(&user.email, NEW_PASSWORD).await.status(), StatusCode::OK);
}

#[actix_web::test]
async fn an_unknown_reset_token_is_400() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let real = request_reset_token(&app, &user.email, 1).await;

    let mut flipped = real.clone();
    let last = flipped.pop().unwrap();
    flipped.push(if last == 'A' { 'B' } else { 'A' });
    for (case, token) in [
        ("random token", "Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXg".to_owned()),
        ("real token with one character changed", flipped),
        ("real token with a suffix", format!("{real}x")),
        ("prefix of the real token", real[..20].to_owned()),
    ] {
        let response = post_reset(&app, &token, NEW_PASSWORD).await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_token", case).await;
    }
    assert_eq!(app.post_login(&user.email, PASSWORD).await.status(), StatusCode::OK, "password unchanged");
    assert_eq!(
        post_reset(&app, &real, NEW_PASSWORD).await.status(),
        StatusCode::NO_CONTENT,
        "the real token still works"
    );
}

#[actix_web::test]
async fn a_reset_with_a_bad_body_is_422() {
    let app = spawn_app().await;

    for (case, body, field) in [
        ("empty token", json!({"token": "", "new_password": NEW_PASSWORD}), "token"),
        ("missing token", json!({"new_password": NEW_PASSWORD}), "token"),
        ("token of the wrong type", json!({"token": {"$ne": null}, "new_password": NEW_PASSWORD}), "token"),
    ] {
        let response = app.post_json("/api/password/reset", &body).await;
        assert_invalid_field(response, field, case).await;
    }
}

#[actix_web::test]
async fn a_password_reset_ends_every_session() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let login = app.login(&user).await;
    let access = login["access_token"].as_str().unwrap();
    assert_eq!(app.get_with("/api/me", access).await.status(), StatusCode::OK, "works before");
    let token = request_reset_token(&app, &user.email, 1).await;

    assert_eq!(post_reset(&app, &token, NEW_PASSWORD).await.status(), StatusCode::NO_CONTENT);

    let response = app.get_with("/api/me", access).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "unauthorized", "access token from before the reset")
        .await;
    let refresh =
        app.post_json("/api/token/refresh", &json!({"refresh_token": login["refresh_token"]})).await;
    assert_eq!(refresh.status(), StatusCode::UNAUTHORIZED, "refresh token from before the reset");
}

#[actix_web::test]
async fn guessing_the_current_password_is_throttled_like_login() {
    let app = spawn_app_with(&["--login-failures-per-account", "3"]).await;
    let (_, token) = app.user_with_token().await;
    let guess = json!({"current_password": "not-the-password-1", "new_password": "fresh-meadow-lantern-88"});
    for attempt in 1..=3 {
        let response = app.post_json_with("/api/me/password", &token, &guess).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "wrong guess {attempt}");
    }
    let throttled = app.post_json_with("/api/me/password", &token, &guess).await;
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS, "the fourth guess is throttled");
    assert!(throttled.headers().contains_key("retry-after"), "with Retry-After");
}
