//! Credits per day (docs/API.md §4): the user's `GET /api/me/usage/daily` with every day present and
//! spending net of refunds, and the admin's `GET /api/admin/overview` with today's figures and the
//! last 30 days for the chart.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::app::*;

/// Today's UTC date as `YYYY-MM-DD`.
fn today() -> String {
    let d = time::OffsetDateTime::now_utc().date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Spends one chat message and one image over the WebSocket.
async fn spend(app: &TestApp, token: &str) {
    let mut ws = app.connect_ws(token).await;
    let chat = ws.request("c", json!({"type": "chat.create"})).await;
    let chat_id = chat["chat"]["id"].as_str().unwrap().to_owned();
    ws.send(json!({"type": "chat.send", "id": "m", "chat_id": chat_id, "content": "hello"})).await;
    ws.recv_until("chat.done").await;
    let image = ws
        .request("i", json!({"type": "image.generate", "prompt": "a kite", "width": 256, "height": 256}))
        .await;
    assert_eq!(image["type"], "image.created", "{image}");
}

#[actix_web::test]
async fn daily_usage_lists_every_day_oldest_first_with_todays_spending_and_grants() {
    let app = spawn_app_with(&["--admin-email", "chief@example.com", "--admin-password", PASSWORD]).await;
    let admin = app
        .login(&TestUser {
            id: String::new(),
            email: "chief@example.com".into(),
            password: PASSWORD.into(),
            api_key: String::new(),
        })
        .await;
    let (user, token) = app.user_with_token().await;
    spend(&app, &token).await;
    let grant = app
        .post_json_with(
            &format!("/api/admin/users/{}/credits", user.id),
            admin["access_token"].as_str().unwrap(),
            &json!({"amount": 25, "reason": "bonus"}),
        )
        .await;
    assert_eq!(grant.status(), StatusCode::OK);

    let response = app.get_with("/api/me/usage/daily?days=3", &token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let days = body["days"].as_array().unwrap();
    assert_eq!(days.len(), 3, "one entry per day: {body}");
    assert_eq!(
        days[2],
        json!({"date": today(), "chat": 1, "image": 10, "grant": 25, "refund": 0}),
        "today, last"
    );
    for day in &days[..2] {
        assert_eq!(
            (&day["chat"], &day["image"], &day["grant"], &day["refund"]),
            (&json!(0), &json!(0), &json!(0), &json!(0))
        );
    }
    assert!(days[0]["date"].as_str().unwrap() < days[1]["date"].as_str().unwrap(), "oldest first");

    let default: Value = app.get_with("/api/me/usage/daily", &token).await.json().await.unwrap();
    assert_eq!(default["days"].as_array().unwrap().len(), 30, "30 days by default");
    let most: Value = app.get_with("/api/me/usage/daily?days=90", &token).await.json().await.unwrap();
    assert_eq!(most["days"].as_array().unwrap().len(), 90);
    let (_, stranger) = app.user_with_token().await;
    let theirs: Value = app.get_with("/api/me/usage/daily?days=1", &stranger).await.json().await.unwrap();
    assert_eq!(theirs["days"][0]["chat"], 0, "only the asking user's credits");

    for (case, query, field) in [
        ("zero days", "days=0", "days"),
        ("91 days", "days=91", "days"),
        ("not a number", "days=many", "days"),
        ("an unknown parameter", "day=3", "day"),
    ] {
        let response = app.get_with(&format!("/api/me/usage/daily?{query}"), &token).await;
        let body = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", case).await;
        assert!(body["fields"][field].is_array(), "{case}: names {field}: {body}");
    }
    let anonymous = app.request(Method::GET, "/api/me/usage/daily").send().await.unwrap();
    assert_error(anonymous, StatusCode::UNAUTHORIZED, "unauthorized", "no credential").await;
}

#[actix_web::test]
async fn the_admin_overview_counts_users_presence_todays_credits_and_signups() {
    let app = spawn_app_with(&["--admin-email", "chief@example.com", "--admin-password", PASSWORD]).await;
    let admin: Value = app.post_login("chief@example.com", PASSWORD).await.json().await.unwrap();
    let admin_token = admin["access_token"].as_str().unwrap();
    let (_, token) = app.user_with_token().await;
    spend(&app, &token).await;
    let _online = app.connect_ws(&token).await;

    let response = app.get_with("/api/admin/overview", admin_token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["users"], 2, "the admin and the user: {body}");
    assert_eq!(body["active_users"], 1, "{body}");
    assert_eq!(body["ws_sessions"], 1, "{body}");
    assert_eq!(body["nodes"], 1);
    assert_eq!(body["credits_used_today"], json!({"chat": 1, "image": 10}));
    assert_eq!(body["signups_today"], 2);
    let days = body["days"].as_array().unwrap();
    assert_eq!(days.len(), 30, "30 days for the chart");
    assert_eq!(days[29], json!({"date": today(), "chat": 1, "image": 10, "signups": 2}), "today, last");
    assert_eq!(days[0]["signups"], 0);

    let as_user = app.get_with("/api/admin/overview", &token).await;
    assert_error(as_user, StatusCode::FORBIDDEN, "forbidden", "a user asks").await;
    let anonymous = app.request(Method::GET, "/api/admin/overview").send().await.unwrap();
    assert_error(anonymous, StatusCode::UNAUTHORIZED, "unauthorized", "nobody asks").await;
}
