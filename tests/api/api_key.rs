//! The user's API key: regenerating it (with the current password, whatever the credential) kills
//! the old one at once, and a password change or "sign out everywhere else" voids it and closes
//! its sockets.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::app::*;

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
