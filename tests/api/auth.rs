//! Accounts and credentials over HTTP (docs/API.md §2–§4): registration, login, the three credential
//! kinds, forged tokens, refresh rotation, logout, CSRF on cookie requests, the admin bootstrap and
//! WebSocket tickets.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::future::join_all;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::support::app::*;

/// What a browser keeps from a login: the answer, the tokens and the CSRF cookie.
struct LoginSession {
    body: Value,
    access_token: String,
    refresh_token: String,
    csrf: String,
}

/// Logs `user` in and keeps the tokens and the `sb_csrf` cookie.
async fn login_session(app: &TestApp, user: &TestUser) -> LoginSession {
    let response = app.post_login(&user.email, &user.password).await;
    assert_eq!(response.status(), StatusCode::OK, "login of {} succeeds", user.email);
    let csrf = cookie_value(&set_cookie(&response, "sb_csrf").expect("login sets sb_csrf"));
    let body: Value = response.json().await.unwrap();
    LoginSession {
        access_token: body["access_token"].as_str().expect("access_token").to_owned(),
        refresh_token: body["refresh_token"].as_str().expect("refresh_token").to_owned(),
        csrf,
        body,
    }
}

/// A registration body with every field valid.
fn registration(email: &str) -> Value {
    json!({"email": email, "password": PASSWORD, "first_name": "Ada", "last_name": "Lovelace"})
}

/// The sorted keys of a JSON object.
fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().expect("a JSON object").keys().cloned().collect();
    keys.sort();
    keys
}

/// The lower-cased attributes of a Set-Cookie line (everything after the value).
fn cookie_attributes(line: &str) -> Vec<String> {
    line.split(';').skip(1).map(|a| a.trim().to_ascii_lowercase()).collect()
}

/// An RFC 3339 UTC timestamp within a minute of now.
fn assert_recent_utc(value: &Value, what: &str) {
    let text = value.as_str().unwrap_or_else(|| panic!("{what}: a timestamp string, got {value}"));
    let at =
        OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|e| panic!("{what}: RFC 3339 {text:?}: {e}"));
    assert!(at.offset().is_utc(), "{what}: UTC, got {text}");
    let age = (OffsetDateTime::now_utc() - at).whole_seconds().abs();
    assert!(age < 60, "{what}: {text} is {age} s away from now");
}

/// The decoded payload of a JWT.
fn jwt_payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).expect("a JWT has a payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url payload")).expect("JSON payload")
}

/// The secret the server generated in its data dir.
fn server_secret(app: &TestApp) -> Vec<u8> {
    let path = app.data_dir.path().join("jwt_secret");
    std::fs::read_to_string(path).expect("the generated JWT secret").trim().as_bytes().to_vec()
}

/// `claims` signed with HS256 under `secret`.
fn sign(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret)).unwrap()
}

fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// A request that authenticates with browser cookies only.
fn with_cookies(app: &TestApp, method: Method, path: &str, cookies: &str) -> RequestBuilder {
    app.request(method, path).header("Cookie", cookies)
}

/// Status of GET /api/me with a bearer token.
async fn me_status(app: &TestApp, bearer: &str) -> StatusCode {
    app.get_with("/api/me", bearer).await.status()
}

/// POST /api/token/refresh with the token in the body.
async fn refresh_by_body(app: &TestApp, refresh_token: &str) -> Response {
    app.post_json("/api/token/refresh", &json!({"refresh_token": refresh_token})).await
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

// ---------------------------------------------------------------------------------------------
// Registration

#[actix_web::test]
async fn register_returns_201_with_the_user_and_a_one_time_api_key() {
    let app = spawn_app().await;
    let local = uuid::Uuid::new_v4().simple().to_string();
    let typed = format!("  Grace.{local}@Example.COM ");

    let response = app
        .post_json(
            "/api/register",
            &json!({"email": typed, "password": PASSWORD, "first_name": "Grace", "last_name": "Hopper"}),
        )
        .await;

    assert_eq!(response.status(), StatusCode::CREATED);
    let text = response.text().await.unwrap();
    for secret in ["password_hash", "api_key_hash", "argon2", PASSWORD, "credits_seq", "initial_credits"] {
        assert!(!text.contains(secret), "the answer must not contain {secret:?}: {text}");
    }
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(keys(&body), ["api_key", "user"], "top-level fields of {body}");
    let user = &body["user"];
    assert_eq!(keys(user), USER_FIELDS, "user fields of {user}");
    assert!(user["id"].as_str().is_some_and(|id| !id.is_empty()), "an id: {user}");
    assert_eq!(user["email"], format!("grace.{local}@example.com"), "email is trimmed and lower-cased");
    assert_eq!(user["first_name"], "Grace");
    assert_eq!(user["last_name"], "Hopper");
    assert_eq!(user["role"], "user");
    assert_eq!(user["credits"], 100);
    assert_eq!(user["active"], true);
    assert_eq!(user["last_login"], Value::Null, "no login yet");
    assert_recent_utc(&user["created_at"], "created_at");

    let api_key = body["api_key"].as_str().expect("api_key is a string");
    assert!(api_key.starts_with("sk_"), "api key prefix: {api_key}");
    assert!(
        api_key.len() >= 46,
        "sk_ and at least 32 random bytes encoded: {api_key} ({} chars)",
        api_key.len()
    );
    assert_eq!(user["api_key_prefix"], api_key[..10], "the prefix is the key's first 10 characters");

    let me = app.request(Method::GET, "/api/me").header("X-API-Key", api_key).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK, "the new key works at once");
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["id"], user["id"]);
    assert!(!me.to_string().contains(api_key), "the full key is shown only once: {me}");
}

#[actix_web::test]
async fn register_returns_409_email_taken_for_an_email_registered_in_another_case() {
    let app = spawn_app().await;
    let email = unique_email();
    assert_eq!(app.post_register(&email, PASSWORD).await.status(), StatusCode::CREATED);

    let shouted = format!(" {} ", email.to_uppercase());
    let response = app.post_register(&shouted, "another-fine-passphrase-7").await;

    assert_error(response, StatusCode::CONFLICT, "email_taken", "same email in upper case").await;
    assert_eq!(
        app.post_login(&email, PASSWORD).await.status(),
        StatusCode::OK,
        "the first account keeps its password"
    );
    assert_eq!(
        app.post_login(&email, "another-fine-passphrase-7").await.status(),
        StatusCode::UNAUTHORIZED,
        "the refused registration did not change the password"
    );
}

#[actix_web::test]
async fn register_returns_422_with_fields_for_invalid_input() {
    let app = spawn_app().await;
    type Edit = fn(&mut Value);
    let cases: [(&str, Edit, &str); 18] = [
        ("an email without @", |b| b["email"] = json!("not-an-email"), "email"),
        ("an email with a space inside", |b| b["email"] = json!("ada lovelace@example.com"), "email"),
        ("an empty email", |b| b["email"] = json!(""), "email"),
        ("an operator object as email", |b| b["email"] = json!({"$gt": ""}), "email"),
        ("a number as email", |b| b["email"] = json!(42), "email"),
        ("a password of 7 characters", |b| b["password"] = json!("Vx9#kq2"), "password"),
        (
            "a password of 129 characters",
            |b| b["password"] = json!("correct-horse-".repeat(10)[..129]),
            "password",
        ),
        ("a common password", |b| b["password"] = json!("password1"), "password"),
        ("a common password in other case", |b| b["password"] = json!("Password123"), "password"),
        (
            "a missing password",
            |b| {
                b.as_object_mut().unwrap().remove("password");
            },
            "password",
        ),
        ("an empty first name", |b| b["first_name"] = json!(""), "first_name"),
        ("a first name of only spaces", |b| b["first_name"] = json!("   "), "first_name"),
        ("a first name of 101 characters", |b| b["first_name"] = json!("a".repeat(101)), "first_name"),
        ("a first name with a newline", |b| b["first_name"] = json!("Ada\nLovelace"), "first_name"),
        ("a last name with a bell character", |b| b["last_name"] = json!("Love\u{0007}lace"), "last_name"),
        ("a number as last name", |b| b["last_name"] = json!(7), "last_name"),
        ("a role chosen by the client", |b| b["role"] = json!("admin"), "role"),
        ("credits chosen by the client", |b| b["credits"] = json!(1_000_000), "credits"),
    ];

    for (description, edit, field) in cases {
        let email = unique_email();
        let mut body = registration(&email);
        edit(&mut body);
        let response = app.post_json("/api/register", &body).await;
        let error =
            assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", description).await;
        let problems = &error["fields"][field];
        assert!(
            problems.as_array().is_some_and(|p| !p.is_empty() && p.iter().all(|s| s.as_str().is_some_and(|s| !s.is_empty()))),
            "{description}: fields.{field} lists problems in {error}"
        );
        for value in body.as_object().unwrap().values().filter_map(Value::as_str).filter(|s| s.len() > 3) {
            assert!(
                !error.to_string().contains(value),
                "{description}: the error echoes the input {value:?}: {error}"
            );
        }
        // Nothing was created: the base email is still free.
        let again = app.post_json("/api/register", &registration(&email)).await;
        assert_eq!(
            again.status(),
            StatusCode::CREATED,
            "{description}: the refused request created no account"
        );
    }
}

#[actix_web::test]
async fn a_128_character_password_is_accepted_and_never_truncated() {
    let app = spawn_app().await;
    let ascii = "correct-horse-battery-".repeat(6)[..128].to_owned();
    let accented = "ünïcødé-pässwörd-".repeat(8).chars().take(128).collect::<String>();
    for (description, password) in
        [("128 ASCII characters", ascii), ("128 characters of 2-byte UTF-8", accented)]
    {
        assert_eq!(password.chars().count(), 128, "{description}: test setup");
        let email = unique_email();

        let response = app.post_register(&email, &password).await;

        assert_eq!(response.status(), StatusCode::CREATED, "{description}: accepted");
        assert_eq!(
            app.post_login(&email, &password).await.status(),
            StatusCode::OK,
            "{description}: logs in"
        );
        let first_127: String = password.chars().take(127).collect();
        let login = app.post_login(&email, &first_127).await;
        assert_error(
            login,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            &format!("{description}: first 127"),
        )
        .await;
        let longer = format!("{password}x");
        let login = app.post_login(&email, &longer).await;
        assert_error(
            login,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            &format!("{description}: 129 chars"),
        )
        .await;
    }
}

#[actix_web::test]
async fn starting_credits_come_from_the_configuration() {
    let app = spawn_app_with(&["--starting-credits", "5"]).await;

    let response = app.post_register(&unique_email(), PASSWORD).await;

    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["credits"], 5, "registration answer");
    let me: Value = app.get_with("/api/me", body["api_key"].as_str().unwrap()).await.json().await.unwrap();
    assert_eq!(me["credits"], 5, "stored balance");
}

#[actix_web::test]
async fn twenty_concurrent_registrations_of_one_email_create_exactly_one_account() {
    let app = spawn_app().await;
    let email = unique_email();
    let attempts = (0..20).map(|i| {
        let body = json!({"email": email, "password": PASSWORD, "first_name": format!("Racer{i}"), "last_name": "Lovelace"});
        let app = &app;
        async move { app.post_json("/api/register", &body).await }
    });

    let responses = join_all(attempts).await;

    let mut winners = Vec::new();
    let mut conflicts = 0;
    for response in responses {
        match response.status() {
            StatusCode::CREATED => winners.push(response.json::<Value>().await.unwrap()),
            StatusCode::CONFLICT => {
                assert_error(response, StatusCode::CONFLICT, "email_taken", "a losing registration").await;
                conflicts += 1;
            }
            other => panic!("unexpected status {other}: {}", response.text().await.unwrap_or_default()),
        }
    }
    assert_eq!((winners.len(), conflicts), (1, 19), "exactly one 201 and nineteen 409");
    let winner = &winners[0];
    let me: Value = app.get_with("/api/me", winner["api_key"].as_str().unwrap()).await.json().await.unwrap();
    assert_eq!(me["first_name"], winner["user"]["first_name"], "the stored account is the winner's");
}

// ---------------------------------------------------------------------------------------------
// Login

#[actix_web::test]
async fn login_returns_tokens_the_user_and_session_cookies() {
    let app = spawn_app().await;
    let user = app.register_user().await;

    let response = app.post_login(&user.email, &user.password).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "cache-control"), Some("no-store"), "tokens must not be cached");
    let access_cookie = set_cookie(&response, "sb_access").expect("sb_access is set");
    let refresh_cookie = set_cookie(&response, "sb_refresh").expect("sb_refresh is set");
    let csrf_cookie = set_cookie(&response, "sb_csrf").expect("sb_csrf is set");
    let body: Value = response.json().await.unwrap();

    assert_eq!(keys(&body), ["access_token", "expires_in", "refresh_token", "token_type", "user"], "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900, "15 minutes");
    let access = body["access_token"].as_str().unwrap();
    let refresh = body["refresh_token"].as_str().unwrap();
    assert_eq!(access.split('.').count(), 3, "the access token is a JWT: {access}");
    assert!(
        refresh.len() >= 32 && refresh.split('.').count() < 3,
        "the refresh token is opaque, not a JWT: {refresh}"
    );
    let claims = jwt_payload(access);
    for claim in ["sub", "role", "iat", "exp", "jti", "sid"] {
        assert!(claims.get(claim).is_some(), "claim {claim} in {claims}");
    }
    assert_eq!(claims["sub"], user.id.as_str());
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 900, "{claims}");
    assert_eq!(keys(&body["user"]), USER_FIELDS);
    assert_eq!(body["user"]["id"], user.id.as_str());
    assert_recent_utc(&body["user"]["last_login"], "last_login after login");

    assert_eq!(cookie_value(&access_cookie), access, "sb_access holds the access token");
    assert_eq!(cookie_value(&refresh_cookie), refresh, "sb_refresh holds the refresh token");
    let (access_attrs, refresh_attrs, csrf_attrs) = (
        cookie_attributes(&access_cookie),
        cookie_attributes(&refresh_cookie),
        cookie_attributes(&csrf_cookie),
    );
    for (description, attrs, wanted) in [
        ("sb_access HttpOnly", &access_attrs, "httponly"),
        ("sb_access SameSite=Lax", &access_attrs, "samesite=lax"),
        ("sb_access on every path", &access_attrs, "path=/"),
        ("sb_refresh HttpOnly", &refresh_attrs, "httponly"),
        ("sb_refresh only for the refresh route", &refresh_attrs, "path=/api/token/refresh"),
        ("sb_csrf on every path", &csrf_attrs, "path=/"),
    ] {
        assert!(attrs.iter().any(|a| a == wanted), "{description}: {attrs:?}");
    }
    assert!(
        refresh_attrs.iter().any(|a| a == "samesite=strict" || a == "samesite=lax"),
        "sb_refresh has SameSite: {refresh_attrs:?}"
    );
    assert!(!csrf_attrs.iter().any(|a| a == "httponly"), "scripts must read sb_csrf: {csrf_attrs:?}");
    for (name, attrs) in
        [("sb_access", &access_attrs), ("sb_refresh", &refresh_attrs), ("sb_csrf", &csrf_attrs)]
    {
        assert!(
            !attrs.iter().any(|a| a == "secure"),
            "{name}: not Secure over plain HTTP by default: {attrs:?}"
        );
    }
}

#[actix_web::test]
async fn login_cookies_are_secure_when_secure_cookies_is_set() {
    let app = spawn_app_with(&["--secure-cookies"]).await;
    let user = app.register_user().await;

    let response = app.post_login(&user.email, &user.password).await;

    assert_eq!(response.status(), StatusCode::OK);
    for name in ["sb_access", "sb_refresh", "sb_csrf"] {
        let line = set_cookie(&response, name).unwrap_or_else(|| panic!("{name} is set"));
        assert!(cookie_attributes(&line).iter().any(|a| a == "secure"), "{name} is Secure: {line}");
    }
}

#[actix_web::test]
async fn login_returns_the_same_401_for_a_wrong_password_and_an_unknown_email() {
    let app = spawn_app().await;
    let user = app.register_user().await;

    let wrong_password = app.post_login(&user.email, "not-the-right-passphrase").await;
    let unknown_email = app.post_login(&unique_email(), "not-the-right-passphrase").await;

    assert_eq!(wrong_password.status(), StatusCode::UNAUTHORIZED, "wrong password");
    assert_eq!(unknown_email.status(), StatusCode::UNAUTHORIZED, "unknown email");
    for (description, response) in [("wrong password", &wrong_password), ("unknown email", &unknown_email)] {
        assert!(set_cookie(response, "sb_access").is_none(), "{description}: no session cookie");
    }
    let (a, b) = (wrong_password.bytes().await.unwrap(), unknown_email.bytes().await.unwrap());
    assert_eq!(
        a,
        b,
        "identical bodies: {:?} vs {:?}",
        String::from_utf8_lossy(&a),
        String::from_utf8_lossy(&b)
    );
    let body: Value = serde_json::from_slice(&a).unwrap();
    assert_eq!(body["code"], "invalid_credentials", "{body}");
}

#[actix_web::test]
async fn login_ignores_the_case_and_surrounding_spaces_of_the_email() {
    let app = spawn_app().await;
    let user = app.register_user().await;

    let response = app.post_login(&format!("  {}\t", user.email.to_uppercase()), &user.password).await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["id"], user.id.as_str());
}

#[actix_web::test]
async fn login_returns_422_for_operator_objects_and_unknown_fields() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let cases = [
        ("an operator object as email", json!({"email": {"$gt": ""}, "password": PASSWORD}), "email"),
        (
            "an operator object as password",
            json!({"email": user.email, "password": {"$ne": null}}),
            "password",
        ),
        (
            "an unknown field",
            json!({"email": user.email, "password": PASSWORD, "remember": true}),
            "remember",
        ),
        ("a missing password", json!({"email": user.email}), "password"),
    ];
    for (description, body, field) in cases {
        let response = app.post_json("/api/login", &body).await;
        assert!(set_cookie(&response, "sb_access").is_none(), "{description}: no session");
        let error =
            assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", description).await;
        assert!(error["fields"][field].is_array(), "{description}: fields.{field} in {error}");
    }
}

// ---------------------------------------------------------------------------------------------
// Credentials

#[actix_web::test]
async fn every_credential_kind_reaches_api_me() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let session = login_session(&app, &user).await;
    let cases = [
        ("Authorization: Bearer <jwt>", "authorization", format!("Bearer {}", session.access_token)),
        ("Authorization: Bearer sk_...", "authorization", format!("Bearer {}", user.api_key)),
        ("X-API-Key", "x-api-key", user.api_key.clone()),
        ("the sb_access cookie", "cookie", format!("sb_access={}", session.access_token)),
    ];
    for (description, name, value) in cases {
        let response = app.request(Method::GET, "/api/me").header(name, value).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{description}");
        let me: Value = response.json().await.unwrap();
        assert_eq!(me["id"], user.id.as_str(), "{description}: the right user");
        assert_eq!(keys(&me), USER_FIELDS, "{description}: user fields");
    }
    let anonymous = app.request(Method::GET, "/api/me").send().await.unwrap();
    assert_error(anonymous, StatusCode::UNAUTHORIZED, "unauthorized", "no credential").await;
}

#[actix_web::test]
async fn forged_or_misused_access_tokens_are_refused() {
    let app = spawn_app().await;
    let (user, other) = (app.register_user().await, app.register_user().await);
    let session = login_session(&app, &user).await;
    let other_session = login_session(&app, &other).await;
    let real = session.access_token.clone();
    let secret = server_secret(&app);
    let claims = jwt_payload(&real);
    let now = now_unix();
    let with = |changes: Value| {
        let mut c = claims.clone();
        for (k, v) in changes.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };

    // The control: a token the test signs with the server's secret works, so the cases below are
    // refused for what they change, not because the test signs wrongly.
    let resigned =
        sign(&with(json!({"iat": now, "exp": now + 600, "jti": uuid::Uuid::new_v4().to_string()})), &secret);
    assert_eq!(
        me_status(&app, &resigned).await,
        StatusCode::OK,
        "control: a well-formed token signed by the server"
    );

    let parts: Vec<&str> = real.split('.').collect();
    let (head, payload, signature) = (parts[0], parts[1], parts[2]);
    let mut tampered_signature = signature.to_owned();
    let i = 10;
    let replacement = if &signature[i..=i] == "A" { "B" } else { "A" };
    tampered_signature.replace_range(i..=i, replacement);
    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let hs512_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS512","typ":"JWT"}"#);
    let other_sub = URL_SAFE_NO_PAD.encode(with(json!({"sub": other.id})).to_string());
    let ticket_response = app.post_json_with("/api/ws-ticket", &real, &json!({})).await;
    assert_eq!(ticket_response.status(), StatusCode::OK, "a ws ticket is issued");
    let ticket = ticket_response.json::<Value>().await.unwrap()["ticket"].as_str().unwrap().to_owned();
    let other_sid = jwt_payload(&other_session.access_token)["sid"].clone();

    let cases: Vec<(&str, &str, String)> = vec![
        ("garbage", "authorization", "Bearer not-a-jwt".into()),
        ("an empty bearer token", "authorization", "Bearer ".into()),
        ("a scheme other than Bearer", "authorization", format!("Basic {real}")),
        (
            "one changed signature character",
            "authorization",
            format!("Bearer {head}.{payload}.{tampered_signature}"),
        ),
        ("no signature", "authorization", format!("Bearer {head}.{payload}.")),
        ("alg none with an empty signature", "authorization", format!("Bearer {none_header}.{payload}.")),
        ("alg none without a signature part", "authorization", format!("Bearer {none_header}.{payload}")),
        (
            "alg none with the real signature",
            "authorization",
            format!("Bearer {none_header}.{payload}.{signature}"),
        ),
        (
            "alg HS512 with the real signature",
            "authorization",
            format!("Bearer {hs512_header}.{payload}.{signature}"),
        ),
        (
            "a payload edited to another user",
            "authorization",
            format!("Bearer {head}.{other_sub}.{signature}"),
        ),
        (
            "the same claims signed with another secret",
            "authorization",
            format!("Bearer {}", sign(&claims, b"another secret that is long enough for HS256")),
        ),
        (
            "an expired token signed with the server's secret",
            "authorization",
            format!("Bearer {}", sign(&with(json!({"iat": now - 1000, "exp": now - 100})), &secret)),
        ),
        (
            "the ws-ticket audience signed with the server's secret",
            "authorization",
            format!("Bearer {}", sign(&with(json!({"aud": "switchboard:ws-ticket"})), &secret)),
        ),
        (
            "no audience, signed with the server's secret",
            "authorization",
            format!("Bearer {}", sign(&with_removed(&claims, "aud"), &secret)),
        ),
        (
            "a session id that does not exist",
            "authorization",
            format!("Bearer {}", sign(&with(json!({"sid": uuid::Uuid::new_v4().to_string()})), &secret)),
        ),
        (
            "another user's session id",
            "authorization",
            format!("Bearer {}", sign(&with(json!({"sid": other_sid})), &secret)),
        ),
        ("a ws ticket", "authorization", format!("Bearer {ticket}")),
        ("a refresh token", "authorization", format!("Bearer {}", session.refresh_token)),
        (
            "an API key never issued",
            "authorization",
            format!("Bearer sk_{}", URL_SAFE_NO_PAD.encode([7u8; 32])),
        ),
        ("an access token as X-API-Key", "x-api-key", real.clone()),
        ("a garbage sb_access cookie", "cookie", "sb_access=not-a-jwt".into()),
        ("a ws ticket as sb_access cookie", "cookie", format!("sb_access={ticket}")),
    ];
    for (description, name, value) in cases {
        let response = app.request(Method::GET, "/api/me").header(name, value).send().await.unwrap();
        assert_error(response, StatusCode::UNAUTHORIZED, "unauthorized", description).await;
    }
    assert_eq!(me_status(&app, &real).await, StatusCode::OK, "the real token still works");
}

/// `claims` without `key`.
fn with_removed(claims: &Value, key: &str) -> Value {
    let mut c = claims.clone();
    c.as_object_mut().unwrap().remove(key);
    c
}

// ---------------------------------------------------------------------------------------------
// Refresh

#[actix_web::test]
async fn refresh_rotates_both_tokens() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let session = login_session(&app, &user).await;

    let response = refresh_by_body(&app, &session.refresh_token).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "cache-control"), Some("no-store"), "tokens must not be cached");
    assert!(set_cookie(&response, "sb_access").is_some(), "the access cookie is renewed");
    let body: Value = response.json().await.unwrap();
    assert_eq!(keys(&body), keys(&session.body), "the same shape as login");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["user"]["id"], user.id.as_str());
    let (access, refresh) = (body["access_token"].as_str().unwrap(), body["refresh_token"].as_str().unwrap());
    assert_ne!(access, session.access_token, "a new access token");
    assert_ne!(refresh, session.refresh_token, "a new refresh token");
    assert_eq!(jwt_payload(access)["sid"], jwt_payload(&session.access_token)["sid"], "the same session");
    assert_eq!(me_status(&app, access).await, StatusCode::OK, "the new access token works");
    assert_eq!(refresh_by_body(&app, refresh).await.status(), StatusCode::OK, "the new refresh token works");
}

#[actix_web::test]
async fn a_reused_refresh_token_revokes_the_whole_session() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let session = login_session(&app, &user).await;
    let bystander = login_session(&app, &user).await;
    let once: Value = refresh_by_body(&app, &session.refresh_token).await.json().await.unwrap();
    // Two rotations old: no grace window applies.
    let rotated: Value =
        refresh_by_body(&app, once["refresh_token"].as_str().unwrap()).await.json().await.unwrap();
    let (newest_access, newest_refresh) =
        (rotated["access_token"].as_str().unwrap(), rotated["refresh_token"].as_str().unwrap());
    assert_eq!(me_status(&app, newest_access).await, StatusCode::OK, "setup: the rotated token works");

    let replay = refresh_by_body(&app, &session.refresh_token).await;

    assert_error(replay, StatusCode::UNAUTHORIZED, "unauthorized", "the used refresh token").await;
    assert_eq!(
        me_status(&app, newest_access).await,
        StatusCode::UNAUTHORIZED,
        "the newest access token is revoked"
    );
    let newest = refresh_by_body(&app, newest_refresh).await;
    assert_error(newest, StatusCode::UNAUTHORIZED, "unauthorized", "the newest refresh token is revoked")
        .await;
    assert_eq!(
        me_status(&app, &bystander.access_token).await,
        StatusCode::OK,
        "another session of the user lives"
    );
}

#[actix_web::test]
async fn a_refresh_retried_within_the_grace_window_gets_the_same_new_token_and_keeps_the_session() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let session = login_session(&app, &user).await;
    // Two tabs refresh with the same token at once, or a client lost the first answer.
    let (first, second) = futures_util::future::join(
        refresh_by_body(&app, &session.refresh_token),
        refresh_by_body(&app, &session.refresh_token),
    )
    .await;
    assert_eq!((first.status(), second.status()), (StatusCode::OK, StatusCode::OK), "both are answered");
    let (first, second): (Value, Value) = (first.json().await.unwrap(), second.json().await.unwrap());
    assert_eq!(first["refresh_token"], second["refresh_token"], "with the same new refresh token");
    for body in [&first, &second] {
        let access = body["access_token"].as_str().unwrap();
        assert_eq!(me_status(&app, access).await, StatusCode::OK, "and a working access token");
    }
    let again = refresh_by_body(&app, &session.refresh_token).await;
    assert_eq!(again.status(), StatusCode::OK, "a third try in the window too");

    let newer: Value =
        refresh_by_body(&app, first["refresh_token"].as_str().unwrap()).await.json().await.unwrap();
    let newer_access = newer["access_token"].as_str().unwrap();
    assert_eq!(me_status(&app, newer_access).await, StatusCode::OK, "the session lives on");
    // Its successor is now used: the first token is two rotations old, and presenting it is theft.
    let stolen = refresh_by_body(&app, &session.refresh_token).await;
    assert_error(stolen, StatusCode::UNAUTHORIZED, "unauthorized", "a token two rotations old").await;
    assert_eq!(me_status(&app, newer_access).await, StatusCode::UNAUTHORIZED, "the session is revoked");
}

#[actix_web::test]
async fn a_refresh_token_presented_again_after_the_grace_window_revokes_the_session() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let session = login_session(&app, &user).await;
    let rotated: Value = refresh_by_body(&app, &session.refresh_token).await.json().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5_500)).await;
    let late = refresh_by_body(&app, &session.refresh_token).await;
    assert_error(late, StatusCode::UNAUTHORIZED, "unauthorized", "a reuse after the window").await;
    let access = rotated["access_token"].as_str().unwrap();
    assert_eq!(me_status(&app, access).await, StatusCode::UNAUTHORIZED, "the session is revoked");
}

#[actix_web::test]
async fn refresh_by_cookie_needs_the_csrf_header() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let session = login_session(&app, &user).await;
    let cookies = format!("sb_refresh={}; sb_csrf={}", session.refresh_token, session.csrf);

    let without = with_cookies(&app, Method::POST, "/api/token/refresh", &cookies).send().await.unwrap();
    assert_error(without, StatusCode::FORBIDDEN, "csrf_failed", "cookie refresh without X-CSRF-Token").await;

    let with = with_cookies(&app, Method::POST, "/api/token/refresh", &cookies)
        .header("X-CSRF-Token", &session.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(with.status(), StatusCode::OK, "cookie refresh with the CSRF header");
    let new_refresh_cookie = set_cookie(&with, "sb_refresh").expect("the refresh cookie is rotated");
    let body: Value = with.json().await.unwrap();
    assert_eq!(cookie_value(&new_refresh_cookie), body["refresh_token"].as_str().unwrap());
    assert_ne!(body["refresh_token"], session.refresh_token.as_str(), "rotated");
    assert_eq!(me_status(&app, body["access_token"].as_str().unwrap()).await, StatusCode::OK);
}

#[actix_web::test]
async fn a_refresh_refused_for_a_forged_csrf_token_leaves_the_session_usable() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let session = login_session(&app, &user).await;
    // A cookie the attacker planted and a header that repeats it: equal, but not the session's token.
    let cookies = format!("sb_refresh={}; sb_csrf=forged", session.refresh_token);

    let forged = with_cookies(&app, Method::POST, "/api/token/refresh", &cookies)
        .header("X-CSRF-Token", "forged")
        .send()
        .await
        .unwrap();

    assert_error(forged, StatusCode::FORBIDDEN, "csrf_failed", "cookie refresh with a forged CSRF token")
        .await;
    let legitimate = refresh_by_body(&app, &session.refresh_token).await;
    assert_eq!(
        legitimate.status(),
        StatusCode::OK,
        "a refused request must not consume the refresh token (else the owner's next refresh counts as reuse)"
    );
    assert_eq!(me_status(&app, &session.access_token).await, StatusCode::OK, "the session is not revoked");
}

#[actix_web::test]
async fn refresh_returns_401_for_an_unknown_or_missing_token() {
    let app = spawn_app().await;
    let unknown = URL_SAFE_NO_PAD.encode([42u8; 32]);
    let cases = [
        ("an unknown token in the body", json!({"refresh_token": unknown}).to_string(), None),
        ("an empty body and no cookie", String::new(), None),
        ("an unknown token in the cookie", String::new(), Some(format!("sb_refresh={unknown}; sb_csrf=x"))),
    ];
    for (description, body, cookies) in cases {
        let mut request = app
            .request(Method::POST, "/api/token/refresh")
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(cookies) = cookies {
            request = request.header("Cookie", cookies).header("X-CSRF-Token", "x");
        }
        let response = request.send().await.unwrap();
        assert!(set_cookie(&response, "sb_access").is_none(), "{description}: no new cookies");
        assert_error(response, StatusCode::UNAUTHORIZED, "unauthorized", description).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Logout

#[actix_web::test]
async fn logout_clears_the_cookies_and_revokes_only_its_session() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let leaving = login_session(&app, &user).await;
    let staying = login_session(&app, &user).await;

    let response =
        app.request(Method::POST, "/api/logout").bearer_auth(&leaving.access_token).send().await.unwrap();

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for name in ["sb_access", "sb_refresh", "sb_csrf"] {
        let line = set_cookie(&response, name).unwrap_or_else(|| panic!("{name} is cleared"));
        assert!(cookie_attributes(&line).iter().any(|a| a == "max-age=0"), "{name} expires now: {line}");
        assert_eq!(cookie_value(&line), "", "{name} is emptied: {line}");
    }
    let refresh_line = set_cookie(&response, "sb_refresh").unwrap();
    assert!(
        cookie_attributes(&refresh_line).iter().any(|a| a == "path=/api/token/refresh"),
        "sb_refresh is cleared on its own path, else the browser keeps it: {refresh_line}"
    );
    assert_eq!(me_status(&app, &leaving.access_token).await, StatusCode::UNAUTHORIZED, "revoked at once");
    let refresh = refresh_by_body(&app, &leaving.refresh_token).await;
    assert_error(refresh, StatusCode::UNAUTHORIZED, "unauthorized", "refresh after logout").await;
    assert_eq!(me_status(&app, &staying.access_token).await, StatusCode::OK, "the other session lives");
    assert_eq!(
        refresh_by_body(&app, &staying.refresh_token).await.status(),
        StatusCode::OK,
        "and can refresh"
    );
    assert_eq!(me_status(&app, &user.api_key).await, StatusCode::OK, "the API key is not a session");
}

#[actix_web::test]
async fn logout_by_cookie_needs_the_csrf_token() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let session = login_session(&app, &user).await;
    let cookies = format!("sb_access={}; sb_csrf={}", session.access_token, session.csrf);

    let forged = with_cookies(&app, Method::POST, "/api/logout", &cookies).send().await.unwrap();
    assert_error(forged, StatusCode::FORBIDDEN, "csrf_failed", "cookie logout without X-CSRF-Token").await;
    assert_eq!(
        me_status(&app, &session.access_token).await,
        StatusCode::OK,
        "the refused logout changed nothing"
    );

    let response = with_cookies(&app, Method::POST, "/api/logout", &cookies)
        .header("X-CSRF-Token", &session.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(me_status(&app, &session.access_token).await, StatusCode::UNAUTHORIZED, "logged out");
}

// ---------------------------------------------------------------------------------------------
// CSRF on cookie authentication

#[actix_web::test]
async fn a_cookie_authenticated_update_needs_this_sessions_csrf_token() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let session = login_session(&app, &user).await;
    let other_session = login_session(&app, &user).await;
    let access = &session.access_token;
    let cases: Vec<(&str, String, Option<String>)> = vec![
        ("no X-CSRF-Token header", format!("sb_access={access}; sb_csrf={}", session.csrf), None),
        (
            "a header equal to a forged cookie",
            format!("sb_access={access}; sb_csrf=forged"),
            Some("forged".into()),
        ),
        (
            "the CSRF token of another session",
            format!("sb_access={access}; sb_csrf={}", other_session.csrf),
            Some(other_session.csrf.clone()),
        ),
        ("the right header without the cookie", format!("sb_access={access}"), Some(session.csrf.clone())),
        (
            "a header that differs from the cookie",
            format!("sb_access={access}; sb_csrf={}", session.csrf),
            Some(format!("{}x", session.csrf)),
        ),
    ];
    let rename = json!({"first_name": "Mallory", "last_name": "Attacker"});
    for (description, cookies, csrf) in cases {
        let mut request = with_cookies(&app, Method::PUT, "/api/me", &cookies).json(&rename);
        if let Some(csrf) = csrf {
            request = request.header("X-CSRF-Token", csrf);
        }
        let response = request.send().await.unwrap();
        assert_error(response, StatusCode::FORBIDDEN, "csrf_failed", description).await;
        let me: Value = app.get_with("/api/me", access).await.json().await.unwrap();
        assert_eq!(me["first_name"], "Ada", "{description}: the name did not change");
    }

    let response =
        with_cookies(&app, Method::PUT, "/api/me", &format!("sb_access={access}; sb_csrf={}", session.csrf))
            .header("X-CSRF-Token", &session.csrf)
            .json(&json!({"first_name": "Augusta", "last_name": "King"}))
            .send()
            .await
            .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "the session's own CSRF token");
    let me: Value = response.json().await.unwrap();
    assert_eq!((me["first_name"].as_str(), me["last_name"].as_str()), (Some("Augusta"), Some("King")));
}

#[actix_web::test]
async fn bearer_and_api_key_requests_need_no_csrf_token() {
    let app = spawn_app().await;
    let (user, token) = app.user_with_token().await;
    let cases = [
        ("a bearer access token", app.request(Method::PUT, "/api/me").bearer_auth(&token), "Bearer"),
        ("a bearer API key", app.request(Method::PUT, "/api/me").bearer_auth(&user.api_key), "Key"),
        ("X-API-Key", app.request(Method::PUT, "/api/me").header("X-API-Key", &user.api_key), "Header"),
    ];
    for (description, request, name) in cases {
        let response =
            request.json(&json!({"first_name": name, "last_name": "Lovelace"})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{description}");
        let me: Value = response.json().await.unwrap();
        assert_eq!(me["first_name"], name, "{description}: the update happened");
    }
}

// ---------------------------------------------------------------------------------------------
// The configured admin

#[actix_web::test]
async fn the_configured_admin_is_created_at_start_and_can_log_in() {
    let app = spawn_app_with(&["--admin-email", "Boss@Example.com", "--admin-password", PASSWORD]).await;

    for typed in ["boss@example.com", "Boss@Example.com"] {
        let response = app.post_login(typed, PASSWORD).await;
        assert_eq!(response.status(), StatusCode::OK, "login as {typed}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["user"]["role"], "admin", "login as {typed}");
        assert_eq!(body["user"]["email"], "boss@example.com", "the stored email is normalised");
        assert_eq!(body["user"]["active"], true);
    }
    let taken = app.post_register("boss@example.com", "some-other-passphrase-9").await;
    assert_error(taken, StatusCode::CONFLICT, "email_taken", "the admin's email cannot be registered again")
        .await;
}

#[actix_web::test]
async fn the_configured_admin_email_promotes_an_existing_user_with_that_password_at_start() {
    let first = spawn_app().await;
    let email = unique_email();
    let registered = first.post_register(&email, PASSWORD).await;
    assert_eq!(registered.status(), StatusCode::CREATED);
    let api_key = registered.json::<Value>().await.unwrap()["api_key"].as_str().unwrap().to_owned();

    let shouted = email.to_uppercase();
    let second =
        spawn_app_sharing_store(&first, &["--admin-email", &shouted, "--admin-password", PASSWORD]).await;

    let response = second.post_login(&email, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK, "the user logs in as before");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["role"], "admin", "promoted");
    let me: Value = second.get_with("/api/me", &api_key).await.json().await.unwrap();
    assert_eq!(me["role"], "admin", "the stored role changed");
}

#[actix_web::test]
async fn an_existing_account_with_another_password_is_not_promoted_and_start_up_stops() {
    let first = spawn_app().await;
    let email = unique_email();
    let registered = first.post_register(&email, "amber-canyon-whistle-77").await;
    assert_eq!(registered.status(), StatusCode::CREATED);

    let data_dir = first.data_dir.path().to_str().unwrap();
    let mut args: Vec<String> = [
        "switchboard",
        "--bind",
        "127.0.0.1:0",
        "--data-dir",
        data_dir,
        "--admin-email",
        &email,
        "--admin-password",
        PASSWORD,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(uri) = &first.config.mongodb_uri {
        args.extend([
            "--mongodb-uri".into(),
            uri.clone(),
            "--mongodb-db".into(),
            first.config.mongodb_db.clone(),
        ]);
    }
    let config = <switchboard::config::Config as clap::Parser>::try_parse_from(args).expect("config");
    let error = switchboard::startup::Application::build(config).await.err().expect("start-up refused");
    assert!(error.to_string().contains("SWITCHBOARD_ADMIN_EMAIL"), "the line names the setting: {error}");

    let me = first.post_login(&email, "amber-canyon-whistle-77").await.json::<Value>().await.unwrap();
    assert_eq!(me["user"]["role"], "user", "whoever registered the address first is not made admin");
}

// ---------------------------------------------------------------------------------------------
// WebSocket tickets

#[actix_web::test]
async fn ws_ticket_returns_a_single_purpose_ticket_valid_for_30_seconds() {
    let app = spawn_app().await;
    let (_, token) = app.user_with_token().await;

    let response = app.request(Method::POST, "/api/ws-ticket").bearer_auth(&token).send().await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(keys(&body), ["expires_in", "ticket"], "{body}");
    assert_eq!(body["expires_in"], 30);
    let ticket = body["ticket"].as_str().expect("a ticket string");
    assert!(!ticket.is_empty() && ticket != token, "a ticket of its own: {ticket}");
    assert_eq!(me_status(&app, ticket).await, StatusCode::UNAUTHORIZED, "a ticket is not an access token");
}

#[actix_web::test]
async fn a_ws_ticket_opens_a_socket_for_30_seconds_and_not_a_second_more() {
    let app = spawn_app().await;
    let (_, token) = app.user_with_token().await;
    let response = app.request(Method::POST, "/api/ws-ticket").bearer_auth(&token).send().await.unwrap();
    let ticket = response.json::<Value>().await.unwrap()["ticket"].as_str().unwrap().to_owned();
    let claims = jwt_payload(&ticket);
    let issued = claims["iat"].as_i64().expect("iat");
    assert_eq!(claims["exp"].as_i64(), Some(issued + 30), "the ticket lives 30 s: {claims}");
    assert!((issued - now_unix()).abs() <= 60, "issued now: {claims}");

    // Copies of the server's own ticket (a fresh id each, as the server would issue), signed with
    // its secret and moved back in time: without waiting 30 s, each is a ticket of that age.
    let secret = server_secret(&app);
    let aged = |seconds: i64| {
        let mut claims = claims.clone();
        claims["iat"] = json!(issued - seconds);
        claims["exp"] = json!(issued - seconds + 30);
        claims["jti"] = json!(uuid::Uuid::new_v4().to_string());
        sign(&claims, &secret)
    };
    // (case, age in seconds, accepted): 10 s left, then one second past the 30.
    for (case, age, accepted) in [("a ticket 20 s old", 20, true), ("a ticket 31 s old", 31, false)] {
        let outcome = app.try_connect_ws(&format!("?ticket={}", aged(age)), &[]).await;
        match (outcome, accepted) {
            (Ok(_), true) => {}
            (Err(refused), false) => assert_eq!(refused.status, 401, "{case}: {}", refused.body),
            (Ok(client), false) => panic!("{case}: opened a socket (hello {})", client.hello),
            (Err(refused), true) => panic!("{case}: refused with {}: {}", refused.status, refused.body),
        }
    }
}

#[actix_web::test]
async fn ws_ticket_needs_a_credential_and_csrf_on_cookies() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let session = login_session(&app, &user).await;
    let cookies = format!("sb_access={}; sb_csrf={}", session.access_token, session.csrf);

    let anonymous = app.request(Method::POST, "/api/ws-ticket").send().await.unwrap();
    assert_error(anonymous, StatusCode::UNAUTHORIZED, "unauthorized", "no credential").await;
    let no_csrf = with_cookies(&app, Method::POST, "/api/ws-ticket", &cookies).send().await.unwrap();
    assert_error(no_csrf, StatusCode::FORBIDDEN, "csrf_failed", "cookie without X-CSRF-Token").await;

    let browser = with_cookies(&app, Method::POST, "/api/ws-ticket", &cookies)
        .header("X-CSRF-Token", &session.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(browser.status(), StatusCode::OK, "a browser with its CSRF token");
    let by_key =
        app.request(Method::POST, "/api/ws-ticket").header("X-API-Key", &user.api_key).send().await.unwrap();
    assert_eq!(by_key.status(), StatusCode::OK, "an API key");
}

// ---------------------------------------------------------------------------------------------
// Caching of secrets

#[actix_web::test]
async fn answers_that_carry_secrets_are_not_cacheable() {
    let app = spawn_app().await;
    let email = unique_email();
    let register = app.post_register(&email, PASSWORD).await;
    let login = app.post_login(&email, PASSWORD).await;
    let cache_login = header(&login, "cache-control").map(str::to_owned);
    let body: Value = login.json().await.unwrap();
    let refresh = refresh_by_body(&app, body["refresh_token"].as_str().unwrap()).await;
    let ticket =
        app.post_json_with("/api/ws-ticket", body["access_token"].as_str().unwrap(), &json!({})).await;

    let observed = [
        ("register (the API key)", register.status(), header(&register, "cache-control").map(str::to_owned)),
        ("login (tokens)", StatusCode::OK, cache_login),
        ("refresh (tokens)", refresh.status(), header(&refresh, "cache-control").map(str::to_owned)),
        ("ws-ticket (a ticket)", ticket.status(), header(&ticket, "cache-control").map(str::to_owned)),
    ];
    let failures: Vec<String> = observed
        .iter()
        .filter(|(_, status, cache)| {
            !status.is_success() || !cache.as_deref().is_some_and(|c| c.contains("no-store"))
        })
        .map(|(description, status, cache)| {
            format!("{description}: status {status}, Cache-Control {cache:?}")
        })
        .collect();
    assert!(failures.is_empty(), "answers without Cache-Control: no-store:\n{}", failures.join("\n"));
}

#[actix_web::test]
async fn logout_without_a_valid_access_cookie_still_clears_the_refresh_cookie() {
    // After 15 idle minutes the browser has dropped sb_access but still holds sb_refresh; a
    // logout must not leave it there to sign the user back in.
    let app = spawn_app().await;
    let response =
        app.request(Method::POST, "/api/logout").header("cookie", "sb_csrf=stale").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "logout answers 204");
    let refresh = set_cookie(&response, "sb_refresh").expect("sb_refresh is cleared");
    assert!(refresh.contains("Max-Age=0") && refresh.contains("Path=/api/token/refresh"), "{refresh}");
    assert!(
        set_cookie(&response, "sb_access").is_some_and(|c| c.contains("Max-Age=0")),
        "sb_access is cleared"
    );
}

#[actix_web::test]
async fn a_ws_ticket_bought_with_an_api_key_dies_with_the_key() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let ticket = |key: String| {
        let app = app.clone();
        async move {
            let response = app.request(Method::POST, "/api/ws-ticket").bearer_auth(key).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "a ticket for the API key");
            response.json::<Value>().await.unwrap()["ticket"].as_str().unwrap().to_owned()
        }
    };
    let old_ticket = ticket(user.api_key.clone()).await;
    let spare_ticket = ticket(user.api_key.clone()).await;
    let regenerated = app
        .request(Method::POST, "/api/me/api-key")
        .bearer_auth(&user.api_key)
        .json(&json!({"current_password": user.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(regenerated.status(), StatusCode::OK, "the key is regenerated");
    let new_key = regenerated.json::<Value>().await.unwrap()["api_key"].as_str().unwrap().to_owned();
    for (case, ticket) in
        [("a ticket of the old key", &old_ticket), ("another ticket of the old key", &spare_ticket)]
    {
        let refused = app.try_connect_ws(&format!("?ticket={ticket}"), &[]).await;
        let refused = refused.err().unwrap_or_else(|| panic!("{case}: the upgrade was accepted"));
        assert_eq!(refused.status, 401, "{case}: {}", refused.body);
    }
    let fresh = ticket(new_key).await;
    assert!(
        app.try_connect_ws(&format!("?ticket={fresh}"), &[]).await.is_ok(),
        "a ticket of the new key opens"
    );
}
