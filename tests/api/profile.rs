//! The signed-in user's own account: `GET` and `PUT /api/me`, their stats and their usage ledger.
//! The API key is in `api_key.rs`, passwords (change, forgotten, reset) in `passwords.rs`.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::support::app::*;

/// `PUT /api/me` with a bearer credential.
async fn put_me(app: &TestApp, bearer: &str, body: &Value) -> Response {
    app.request(Method::PUT, "/api/me").bearer_auth(bearer).json(body).send().await.expect("request")
}

/// Asserts a timestamp is RFC 3339 in UTC.
fn assert_utc_timestamp(value: &Value, case: &str) {
    let text = value.as_str().unwrap_or_else(|| panic!("{case}: a timestamp string, got {value}"));
    let parsed =
        OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|e| panic!("{case}: RFC 3339 {text:?}: {e}"));
    assert!(parsed.offset().is_utc(), "{case}: UTC offset in {text:?}");
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
