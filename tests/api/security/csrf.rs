//! CSRF on cookie-authenticated writes: where the request comes from (`Origin`,
//! `Sec-Fetch-Site`) and the session-bound double-submit token; cookie WebSockets from foreign
//! origins. Bearer and API-key requests are not affected.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::*;

/// PUT /api/me with the browser's cookies, its CSRF token when `with_token`, and `headers`.
async fn rename(
    app: &TestApp,
    session: &BrowserSession,
    with_token: Option<&str>,
    headers: &[(&str, &str)],
    first_name: &str,
) -> reqwest::Response {
    let mut request = app
        .request(Method::PUT, "/api/me")
        .header("Cookie", &session.cookies)
        .json(&json!({"first_name": first_name, "last_name": "Lovelace"}));
    if let Some(token) = with_token {
        request = request.header("X-CSRF-Token", token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

#[actix_web::test]
async fn cookie_writes_from_another_site_are_403_even_with_the_right_csrf_token() {
    let app = spawn_app_with(&["--allowed-origins", "http://app.example"]).await;
    let user = app.register_user().await;
    let session = browser_login(&app, &user).await;
    let token = Some(session.csrf.as_str());
    let own = app.address.clone();

    let refused: &[(&str, &[(&str, &str)])] = &[
        ("Origin of another site", &[("Origin", "http://evil.example")]),
        ("Origin: null (sandboxed frame, data: URL)", &[("Origin", "null")]),
        ("Sec-Fetch-Site: cross-site without Origin", &[("Sec-Fetch-Site", "cross-site")]),
        (
            "a foreign Origin that claims cross-site",
            &[("Origin", "http://evil.example"), ("Sec-Fetch-Site", "cross-site")],
        ),
        ("the own host over another scheme", &[("Origin", &own.replace("http://", "https://"))]),
    ];
    for (case, headers) in refused {
        let response = rename(&app, &session, token, headers, "Mallory").await;
        assert_error(response, StatusCode::FORBIDDEN, "csrf_failed", case).await;
    }
    let me: Value = app.get_with("/api/me", &user.api_key).await.json().await.unwrap();
    assert_eq!(me["first_name"], "Ada", "no refused write changed the name");

    let accepted: &[(&str, &[(&str, &str)])] = &[
        ("the own origin", &[("Origin", &own), ("Sec-Fetch-Site", "same-origin")]),
        (
            "an origin in --allowed-origins",
            &[("Origin", "http://app.example"), ("Sec-Fetch-Site", "cross-site")],
        ),
        ("no Origin and no Fetch metadata (an old browser): the token decides", &[]),
        ("Sec-Fetch-Site: same-site", &[("Sec-Fetch-Site", "same-site")]),
    ];
    for (case, headers) in accepted {
        let response = rename(&app, &session, token, headers, "Augusta").await;
        assert_eq!(response.status(), StatusCode::OK, "{case}");
    }
}

#[actix_web::test]
async fn a_missing_or_forged_csrf_token_is_403_even_from_the_own_origin() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let session = browser_login(&app, &user).await;
    let own = [("Origin", app.address.as_str()), ("Sec-Fetch-Site", "same-origin")];
    let last = if session.csrf.ends_with('A') { 'B' } else { 'A' };
    let forged = format!("{}{last}", &session.csrf[..session.csrf.len() - 1]);
    for (case, token) in [("no X-CSRF-Token", None), ("a forged X-CSRF-Token", Some(forged.as_str()))] {
        let response = rename(&app, &session, token, &own, "Mallory").await;
        assert_error(response, StatusCode::FORBIDDEN, "csrf_failed", case).await;
    }
}

#[actix_web::test]
async fn cookie_refresh_and_logout_from_another_site_are_refused_and_the_session_survives() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let login = app.post_login(&user.email, &user.password).await;
    let value = |name: &str| cookie_value(&set_cookie(&login, name).unwrap());
    let (access, refresh, csrf) = (value("sb_access"), value("sb_refresh"), value("sb_csrf"));
    let cookies = format!("sb_access={access}; sb_refresh={refresh}; sb_csrf={csrf}");
    for path in ["/api/token/refresh", "/api/logout"] {
        let response = app
            .request(Method::POST, path)
            .header("Cookie", &cookies)
            .header("X-CSRF-Token", &csrf)
            .header("Origin", "http://evil.example")
            .send()
            .await
            .unwrap();
        assert_error(response, StatusCode::FORBIDDEN, "csrf_failed", &format!("cross-site POST {path}"))
            .await;
    }
    assert_eq!(app.get_with("/api/me", &access).await.status(), StatusCode::OK, "the session still works");
}

#[actix_web::test]
async fn bearer_and_api_key_writes_from_any_origin_need_no_csrf_token() {
    let app = spawn_app().await;
    let (user, token) = app.user_with_token().await;
    for (case, credential) in [("access token", &token), ("API key", &user.api_key)] {
        let response = app
            .request(Method::PUT, "/api/me")
            .bearer_auth(credential)
            .header("Origin", "http://evil.example")
            .header("Sec-Fetch-Site", "cross-site")
            .json(&json!({"first_name": "Grace", "last_name": "Hopper"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{case}: a page elsewhere cannot send it");
    }
}

#[actix_web::test]
async fn a_cookie_websocket_from_a_foreign_origin_is_403() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let session = browser_login(&app, &user).await;
    let refused = app
        .try_connect_ws("", &[("cookie", &session.cookies), ("origin", "http://evil.example")])
        .await
        .err()
        .expect("the upgrade is refused");
    assert_eq!(refused.status, 403, "{}", refused.body);
    let own = app.try_connect_ws("", &[("cookie", &session.cookies), ("origin", &app.address)]).await;
    assert!(own.is_ok(), "the own origin is accepted");
}
