//! The user's chats and images kept in order over REST (docs/API.md §4): renaming and deleting a chat
//! (its messages go too, and its place under the chat cap is free again), deleting an image (its
//! PNG goes too), and nobody touching another user's.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::support::app::*;
use crate::support::ws::WsClient;

async fn patch(app: &TestApp, path: &str, bearer: &str, body: &Value) -> Response {
    app.request(Method::PATCH, path).bearer_auth(bearer).json(body).send().await.unwrap()
}

async fn delete(app: &TestApp, path: &str, bearer: &str) -> Response {
    app.request(Method::DELETE, path).bearer_auth(bearer).send().await.unwrap()
}

/// Creates a chat over the WebSocket; its id.
async fn new_chat(ws: &mut WsClient, id: &str) -> String {
    let created = ws.request(id, json!({"type": "chat.create", "title": "Trip"})).await;
    assert_eq!(created["type"], "chat.created", "{created}");
    created["chat"]["id"].as_str().unwrap().to_owned()
}

#[actix_web::test]
async fn a_chat_is_renamed_and_then_deleted_with_its_messages() {
    let app = spawn_app().await;
    let (_, token) = app.user_with_token().await;
    let (_, stranger) = app.user_with_token().await;
    let mut ws = app.connect_ws(&token).await;
    let chat_id = new_chat(&mut ws, "c").await;
    ws.send(json!({"type": "chat.send", "id": "m", "chat_id": chat_id, "content": "hello"})).await;
    ws.recv_until("chat.done").await;
    let path = format!("/api/chats/{chat_id}");

    let response = patch(&app, &path, &token, &json!({"title": "  Trip plans  "})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let chat: Value = response.json().await.unwrap();
    assert_eq!((&chat["id"], &chat["title"]), (&json!(chat_id), &json!("Trip plans")), "trimmed: {chat}");
    let listed: Value = app.get_with("/api/chats", &token).await.json().await.unwrap();
    assert_eq!(listed[0]["title"], "Trip plans", "the list shows the new title");

    let invalid = [
        ("an empty title", json!({"title": ""})),
        ("only spaces", json!({"title": "   "})),
        ("201 characters", json!({"title": "t".repeat(201)})),
        ("a control character", json!({"title": "a\u{0007}b"})),
        ("a number", json!({"title": 5})),
        ("no title", json!({})),
        ("an unknown field", json!({"title": "x", "pinned": true})),
    ];
    for (case, body) in invalid {
        let response = patch(&app, &path, &token, &body).await;
        assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", case).await;
    }
    let ok_at_200 = patch(&app, &path, &token, &json!({"title": "é".repeat(200)})).await;
    assert_eq!(ok_at_200.status(), StatusCode::OK, "200 characters are allowed");

    let theirs = [
        ("a stranger renames it", patch(&app, &path, &stranger, &json!({"title": "mine"})).await),
        ("a stranger deletes it", delete(&app, &path, &stranger).await),
        ("an unknown chat", delete(&app, "/api/chats/no-such-chat", &token).await),
        ("no credential", app.request(Method::DELETE, &path).send().await.unwrap()),
    ];
    for (case, response) in theirs {
        let (status, code) = if case == "no credential" {
            (StatusCode::UNAUTHORIZED, "unauthorized")
        } else {
            (StatusCode::NOT_FOUND, "not_found")
        };
        assert_error(response, status, code, case).await;
    }

    assert_eq!(delete(&app, &path, &token).await.status(), StatusCode::NO_CONTENT);
    let messages = app.get_with(&format!("{path}/messages"), &token).await;
    assert_error(messages, StatusCode::NOT_FOUND, "not_found", "the deleted chat's messages").await;
    let listed: Value = app.get_with("/api/chats", &token).await.json().await.unwrap();
    assert_eq!(listed, json!([]), "the list is empty");
    let history = ws.request("h", json!({"type": "chat.history", "chat_id": chat_id})).await;
    assert_eq!(history["code"], "not_found", "the socket cannot read it either: {history}");
    assert_error(delete(&app, &path, &token).await, StatusCode::NOT_FOUND, "not_found", "deleted twice")
        .await;
}

#[actix_web::test]
async fn deleting_a_chat_frees_room_under_the_chat_cap() {
    let app = spawn_app_with(&["--max-chats-per-user", "2"]).await;
    let (_, token) = app.user_with_token().await;
    let mut ws = app.connect_ws(&token).await;
    let first = new_chat(&mut ws, "a").await;
    new_chat(&mut ws, "b").await;
    let refused = ws.request("c", json!({"type": "chat.create"})).await;
    assert_eq!(refused["code"], "quota_exceeded", "the cap is reached: {refused}");

    assert_eq!(delete(&app, &format!("/api/chats/{first}"), &token).await.status(), StatusCode::NO_CONTENT);
    new_chat(&mut ws, "d").await;
}

#[actix_web::test]
async fn an_image_is_deleted_with_its_png_by_its_owner_or_an_admin_only() {
    let app = spawn_app_with(&["--admin-email", "chief@example.com", "--admin-password", PASSWORD]).await;
    let admin: Value = app.post_login("chief@example.com", PASSWORD).await.json().await.unwrap();
    let admin_token = admin["access_token"].as_str().unwrap();
    let (_, token) = app.user_with_token().await;
    let (_, stranger) = app.user_with_token().await;
    let mut ws = app.connect_ws(&token).await;
    let models: Value = app.get_with("/api/models", &token).await.json().await.unwrap();
    assert_eq!(
        (&models["image"][0]["id"], &models["image"][0]["price"]),
        (&json!("draw"), &json!(10)),
        "GET /api/models names the built-in image model's price: {models}"
    );
    let mut ids = Vec::new();
    for n in 0..2 {
        let made = ws
            .request(
                &format!("i{n}"),
                json!({"type": "image.generate", "prompt": "a kite", "width": 256, "height": 256}),
            )
            .await;
        ids.push(made["image"]["id"].as_str().unwrap().to_owned());
    }
    let (own, moderated) = (&ids[0], &ids[1]);

    let refused = delete(&app, &format!("/api/images/{own}"), &stranger).await;
    assert_error(refused, StatusCode::NOT_FOUND, "not_found", "a stranger deletes it").await;
    assert_eq!(
        app.get_with(&format!("/api/images/{own}"), &token).await.status(),
        StatusCode::OK,
        "it is still there"
    );

    assert_eq!(delete(&app, &format!("/api/images/{own}"), &token).await.status(), StatusCode::NO_CONTENT);
    for path in [format!("/api/images/{own}"), format!("/api/images/{own}/content")] {
        assert_error(app.get_with(&path, &token).await, StatusCode::NOT_FOUND, "not_found", &path).await;
    }
    assert_eq!(
        delete(&app, &format!("/api/images/{moderated}"), admin_token).await.status(),
        StatusCode::NO_CONTENT,
        "an admin moderates"
    );
    let left: Value = app.get_with("/api/images", &token).await.json().await.unwrap();
    assert_eq!(left, json!([]), "both are gone from the list");
    let stats: Value = app.get_with("/api/me/stats", &token).await.json().await.unwrap();
    assert_eq!(stats["total_images"], 0);
    assert_error(
        delete(&app, &format!("/api/images/{own}"), &token).await,
        StatusCode::NOT_FOUND,
        "not_found",
        "deleted twice",
    )
    .await;
}

#[actix_web::test]
async fn a_chat_deleted_while_its_reply_streams_leaves_no_message_behind() {
    let assistant = crate::support::upstream::fake_assistant(std::time::Duration::from_millis(1500)).await;
    let app = spawn_app_with(&["--assistant-url", &assistant]).await;
    let (_, token) = app.user_with_token().await;
    let mut ws = app.connect_ws(&token).await;
    let chat_id = new_chat(&mut ws, "c").await;
    ws.send(json!({"type": "chat.send", "id": "s", "chat_id": chat_id, "content": "hello"})).await;
    let (message, _) = ws.recv_until("chat.message").await;
    assert_eq!(message["chat_id"], chat_id.as_str(), "the user's message is stored: {message}");
    // The assistant is still thinking: the chat goes now.
    assert_eq!(delete(&app, &format!("/api/chats/{chat_id}"), &token).await.status(), StatusCode::NO_CONTENT);
    let (ended, _) = ws.recv_until("error").await;
    assert_eq!(ended["reply_to"], "s", "{ended}");
    assert_eq!(ended["code"], "not_found", "the turn ends with its chat: {ended}");
    let store = app.open_store().await;
    let left = store.messages_page(&chat_id, None, 100).await.unwrap();
    assert!(left.is_empty(), "no message outlives its chat: {left:?}");
    assert_eq!(store.chat(&chat_id).await.unwrap(), None, "and the chat is gone");
}
