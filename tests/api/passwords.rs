//! Passwords: changing one (the current password and a good new one, every session ends), the
//! forgotten-password flow (`/api/password/forgot` and `/reset`, mailed to the outbox), and what
//! voids an outstanding reset token.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::support::app::*;

/// A strong password different from [`PASSWORD`].
const NEW_PASSWORD: &str = "copper-meadow-tangent-77";

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

/// The outbox's mails before a fence: waits for `count` mails, then has a reset mailed to a new
/// user and waits for that one. Each request starts its mail as it is answered, so a mail from
/// the requests before (a duplicate, a stray) was under way before the fence was asked for and
/// has had all the time the fence took; returns the mails besides the fence's.
async fn mails_with_fence(app: &TestApp, count: usize) -> Vec<String> {
    app.wait_for_mail(count).await;
    let fence = app.register_user().await;
    let response = app.post_json("/api/password/forgot", &json!({"email": fence.email})).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED, "the fence request");
    let to_fence = format!("To: {}", fence.email);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !app.outbox().iter().any(|mail| mail.contains(&to_fence)) {
        assert!(std::time::Instant::now() < deadline, "the fence mail never came: {:?}", app.outbox());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.outbox().into_iter().filter(|mail| !mail.contains(&to_fence)).collect()
}

/// POST /api/password/reset.
async fn post_reset(app: &TestApp, token: &str, new_password: &str) -> Response {
    app.post_json("/api/password/reset", &json!({"token": token, "new_password": new_password})).await
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
    let mails = mails_with_fence(&app, 1).await;

    assert_eq!(mails.len(), 1, "exactly one mail: {mails:?}");
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
    let mails = mails_with_fence(&app, 0).await;
    assert!(mails.is_empty(), "no mail for an unknown email: {mails:?}");
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

// ---------------------------------------------------------------- what voids a reset token

#[actix_web::test]
async fn a_password_change_or_a_deactivation_voids_every_outstanding_reset_token() {
    let admin_email = unique_email();
    let app = spawn_app_with(&["--admin-email", &admin_email, "--admin-password", PASSWORD]).await;
    let admin = app.post_login(&admin_email, PASSWORD).await.json::<Value>().await.unwrap();
    let admin_token = admin["access_token"].as_str().unwrap().to_owned();

    let (user, token) = app.user_with_token().await;
    let stale = request_reset_token(&app, &user.email, 1).await;
    let changed = "a-changed-passphrase-31";
    let body = json!({"current_password": PASSWORD, "new_password": changed});
    assert_eq!(app.post_json_with("/api/me/password", &token, &body).await.status(), StatusCode::NO_CONTENT);
    let refused = post_reset(&app, &stale, "an-attackers-passphrase-9").await;
    assert_error(refused, StatusCode::BAD_REQUEST, "invalid_token", "reset after a password change").await;
    assert_eq!(
        app.post_login(&user.email, changed).await.status(),
        StatusCode::OK,
        "the changed password stands"
    );

    let user = TestUser { password: changed.to_owned(), ..user };
    let stale = request_reset_token(&app, &user.email, 2).await;
    let patch = |active: bool| {
        app.request(Method::PATCH, &format!("/api/admin/users/{}", user.id))
            .bearer_auth(&admin_token)
            .json(&json!({"active": active}))
            .send()
    };
    assert_eq!(patch(false).await.unwrap().status(), StatusCode::OK, "deactivation");
    let refused = post_reset(&app, &stale, "an-attackers-passphrase-9").await;
    assert_error(refused, StatusCode::BAD_REQUEST, "invalid_token", "reset of a deactivated account").await;
    assert_eq!(patch(true).await.unwrap().status(), StatusCode::OK, "reactivation");
    let refused = post_reset(&app, &stale, "an-attackers-passphrase-9").await;
    assert_error(
        refused,
        StatusCode::BAD_REQUEST,
        "invalid_token",
        "the token stays void after reactivation",
    )
    .await;
    assert_eq!(
        app.post_login(&user.email, changed).await.status(),
        StatusCode::OK,
        "the password is unchanged"
    );

    // A reset voids the others too: the newest token resets, and none issued before it works.
    let older = request_reset_token(&app, &user.email, 3).await;
    let newest = request_reset_token(&app, &user.email, 4).await;
    assert_eq!(post_reset(&app, &newest, "a-reset-passphrase-55").await.status(), StatusCode::NO_CONTENT);
    let refused = post_reset(&app, &older, "an-attackers-passphrase-9").await;
    assert_error(refused, StatusCode::BAD_REQUEST, "invalid_token", "an older token after a reset").await;
}
