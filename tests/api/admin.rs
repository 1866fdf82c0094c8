//! The admin REST API (docs/API.md §4): listing and searching users, one user with stats, role and
//! active changes that end the user's sessions and sockets at once, credit grants with their
//! ledger entries and `credits.updated`, per-user usage, and who may call any of it.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::support::app::*;

/// The bootstrap admin's email.
const ADMIN_EMAIL: &str = "boss@example.com";

/// A server with a bootstrap admin, and that admin's id and access token.
struct AdminApp {
    app: TestApp,
    admin_id: String,
    admin_token: String,
}

/// Starts a server whose configured admin is logged in. The REST limit is raised so that the
/// table-driven tests measure the admin routes, not the rate limiter.
async fn spawn_admin_app() -> AdminApp {
    let app = spawn_app_with(&[
        "--admin-email",
        ADMIN_EMAIL,
        "--admin-password",
        PASSWORD,
        "--rate-limit-per-minute",
        "10000",
    ])
    .await;
    let login = app.post_login(ADMIN_EMAIL, PASSWORD).await;
    assert_eq!(login.status(), StatusCode::OK, "the configured admin logs in");
    let login: Value = login.json().await.unwrap();
    assert_eq!(login["user"]["role"], "admin", "the configured admin is an admin");
    AdminApp {
        admin_id: login["user"]["id"].as_str().unwrap().to_owned(),
        admin_token: login["access_token"].as_str().unwrap().to_owned(),
        app,
    }
}

impl AdminApp {
    /// GET `path` as the admin.
    async fn get(&self, path: &str) -> Response {
        self.app.get_with(path, &self.admin_token).await
    }

    /// GET `path` as the admin, asserting 200; the JSON body.
    async fn get_ok(&self, path: &str) -> Value {
        let response = self.get(path).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, StatusCode::OK, "GET {path} as the admin: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// PATCH /api/admin/users/{id} as the admin.
    async fn patch_user(&self, id: &str, body: &Value) -> Response {
        self.app
            .request(Method::PATCH, &format!("/api/admin/users/{id}"))
            .bearer_auth(&self.admin_token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// POST /api/admin/users/{id}/credits as the admin.
    async fn grant(&self, id: &str, amount: i64, reason: &str) -> Response {
        self.app
            .post_json_with(
                &format!("/api/admin/users/{id}/credits"),
                &self.admin_token,
                &json!({"amount": amount, "reason": reason}),
            )
            .await
    }

    /// Registers a user with the given names and returns it.
    async fn register_named(&self, email: &str, first_name: &str, last_name: &str) -> TestUser {
        let body =
            json!({"email": email, "password": PASSWORD, "first_name": first_name, "last_name": last_name});
        let response = self.app.post_json("/api/register", &body).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{email} registers");
        let body: Value = response.json().await.unwrap();
        TestUser {
            id: body["user"]["id"].as_str().unwrap().to_owned(),
            email: email.to_owned(),
            password: PASSWORD.to_owned(),
            api_key: body["api_key"].as_str().unwrap().to_owned(),
        }
    }
}

/// The ids of the `users` of a list answer, in order.
fn ids(list: &Value) -> Vec<String> {
    list["users"]
        .as_array()
        .expect("users is an array")
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Asserts that `user` has exactly the contract's fields.
fn assert_user_shape(user: &Value, case: &str) {
    let mut keys: Vec<&str> = user.as_object().expect("a user object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, USER_FIELDS, "{case}: the user's fields");
}

// ---------------------------------------------------------------- listing and searching

#[actix_web::test]
async fn admins_list_every_user_with_the_total_and_page_through_them_with_limit_and_offset() {
    let admin = spawn_admin_app().await;
    let mut registered = Vec::new();
    for _ in 0..3 {
        registered.push(admin.app.register_user().await.id);
    }

    let all = admin.get_ok("/api/admin/users").await;
    assert_eq!(all["total"], 4, "the admin and three users: {all}");
    assert_eq!(ids(&all)[0], admin.admin_id, "oldest account first");
    assert_eq!(ids(&all)[1..], registered[..], "then the users in order of registration");
    for user in all["users"].as_array().unwrap() {
        assert_user_shape(user, "a listed user");
    }

    let first = admin.get_ok("/api/admin/users?limit=2").await;
    let second = admin.get_ok("/api/admin/users?limit=2&offset=2").await;
    let past_the_end = admin.get_ok("/api/admin/users?limit=2&offset=4").await;
    assert_eq!(ids(&first), ids(&all)[..2], "the first page");
    assert_eq!(ids(&second), ids(&all)[2..], "the second page");
    assert!(ids(&past_the_end).is_empty(), "nothing past the end");
    for page in [&first, &second, &past_the_end] {
        assert_eq!(page["total"], 4, "total counts every match, not the page: {page}");
    }
}

#[actix_web::test]
async fn admins_search_users_by_email_fragment_and_by_name_ignoring_case() {
    let admin = spawn_admin_app().await;
    let grace = admin.register_named("grace.h@navy.example.com", "Grace", "Hopper").await;
    let alan = admin.register_named("alan@bletchley.example.com", "Alan", "Turing").await;
    let ada = admin.register_named("countess@example.org", "Ada", "Lovelace").await;

    for (case, q, expected) in [
        ("an email fragment", "bletchley", vec![&alan.id]),
        ("an email fragment in capitals", "NAVY.EXAMPLE", vec![&grace.id]),
        ("a first name in mixed case", "gRaCe", vec![&grace.id]),
        ("a last name fragment", "lovel", vec![&ada.id]),
        ("a fragment in several users", "example.com", vec![&grace.id, &alan.id]),
        ("no match", "nobody-like-this", vec![]),
        ("regex characters match literally", ".*", vec![]),
    ] {
        let found = admin.get_ok(&format!("/api/admin/users?q={}", urlencode(q))).await;
        let expected: Vec<String> = expected.into_iter().cloned().collect();
        let found_ids: Vec<String> = ids(&found).into_iter().filter(|id| *id != admin.admin_id).collect();
        assert_eq!(found_ids, expected, "{case} ({q:?}): {found}");
        assert_eq!(found["total"], ids(&found).len(), "{case}: total is the number of matches");
    }

    let paged = admin.get_ok("/api/admin/users?q=EXAMPLE.COM&limit=1&offset=1").await;
    assert_eq!(ids(&paged), [grace.id.as_str()], "search pages too, oldest first after the admin: {paged}");
    assert_eq!(paged["total"], 3, "the admin and two users match example.com: {paged}");
}

/// Percent-encodes a query value.
fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[actix_web::test]
async fn listing_users_refuses_bad_paging_and_unknown_parameters_with_422() {
    let admin = spawn_admin_app().await;

    for (case, query, field) in [
        ("limit zero", "limit=0", "limit"),
        ("limit above 100", "limit=101", "limit"),
        ("limit not a number", "limit=ten", "limit"),
        ("negative offset", "offset=-1", "offset"),
        ("offset not a number", "offset=1.5", "offset"),
        ("an unknown parameter", "role=admin", "role"),
        ("a search with a control character", "q=a%0Ab", "q"),
    ] {
        let response = admin.get(&format!("/api/admin/users?{query}")).await;
        let body = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", case).await;
        assert!(body["fields"][field].is_array(), "{case}: fields names {field}: {body}");
    }
    let hundred = admin.get("/api/admin/users?limit=100&offset=0").await;
    assert_eq!(hundred.status(), StatusCode::OK, "limit 100 and offset 0 are accepted");
}

// ---------------------------------------------------------------- one user

#[actix_web::test]
async fn an_admin_sees_one_user_with_stats() {
    let admin = spawn_admin_app().await;
    let (user, token) = admin.app.user_with_token().await;
    let mut ws = admin.app.connect_ws(&token).await;
    let created = ws.request("c1", json!({"type": "chat.create", "title": "stats"})).await;
    let chat_id = created["chat"]["id"].as_str().expect("chat.created has the chat").to_owned();
    ws.send(json!({"type": "chat.send", "id": "s1", "chat_id": chat_id, "content": "hello"})).await;
    let (done, _) = ws.recv_until("chat.done").await;
    assert_eq!(done["credits"], 99, "the message cost one credit: {done}");

    let shown = admin.get_ok(&format!("/api/admin/users/{}", user.id)).await;

    assert_eq!(shown["id"], user.id.as_str(), "{shown}");
    assert_eq!(shown["email"], user.email.as_str(), "{shown}");
    assert_eq!(shown["role"], "user", "{shown}");
    assert_eq!(shown["active"], true, "{shown}");
    assert_eq!(shown["credits"], 99, "{shown}");
    assert_eq!(
        shown["stats"],
        json!({"credits": 99, "total_chats": 1, "total_images": 0, "credits_used": {"chat": 1, "image": 0}}),
        "the stats are those of /api/me/stats"
    );
    let mut without_stats = shown.clone();
    without_stats.as_object_mut().unwrap().remove("stats");
    assert_user_shape(&without_stats, "one user");
    assert!(
        shown.get("password_hash").is_none() && shown.get("api_key_hash").is_none(),
        "no secrets: {shown}"
    );
}

/// The admin routes, from the router's own table: (method, path template) for every method of
/// every path under `/api/admin/`.
fn admin_routes() -> Vec<(Method, &'static str)> {
    let routes: Vec<(Method, &'static str)> = switchboard::http::route_list()
        .into_iter()
        .filter(|(path, _)| path.starts_with("/api/admin/"))
        .flat_map(|(path, methods)| {
            methods.into_iter().map(move |m| (Method::from_bytes(m.as_str().as_bytes()).unwrap(), path))
        })
        .collect();
    assert!(routes.len() > 5, "the route table lists the admin routes: {routes:?}");
    routes
}

/// A body the admin route `method template` accepts; none for GET and DELETE. A new admin route
/// that reads a body fails here until it is given one, so no route drops out of the tables.
fn admin_body(method: &Method, template: &str) -> Option<Value> {
    match (method.as_str(), template) {
        ("GET" | "DELETE", _) => None,
        ("PATCH", "/api/admin/users/{id}") => Some(json!({"role": "admin"})),
        ("POST", "/api/admin/users/{id}/credits") => Some(json!({"amount": 5, "reason": "me"})),
        (method, template) => panic!("no body known for {method} {template}: add one to admin_body"),
    }
}

/// `template` with `{id}` and `{sid}` filled in.
fn admin_path(template: &str, id: &str, sid: &str) -> String {
    template.replace("{id}", id).replace("{sid}", sid)
}

#[actix_web::test]
async fn unknown_user_ids_are_404_on_every_admin_user_route() {
    let admin = spawn_admin_app().await;
    let missing = "0190f1f4-0000-7000-8000-000000000000";
    let routes: Vec<_> =
        admin_routes().into_iter().filter(|(_, template)| template.contains("{id}")).collect();
    assert!(routes.len() > 3, "the routes of one user: {routes:?}");

    for (method, template) in routes {
        let path = admin_path(template, missing, missing);
        let mut request = admin.app.request(method.clone(), &path).bearer_auth(&admin.admin_token);
        if let Some(body) = admin_body(&method, template) {
            request = request.json(&body);
        }
        let case = format!("{method} {template} of an unknown user");
        assert_error(request.send().await.unwrap(), StatusCode::NOT_FOUND, "not_found", &case).await;
    }
}

// ---------------------------------------------------------------- role and active

#[actix_web::test]
async fn promoting_a_user_revokes_their_tokens_and_closes_their_sockets_at_once() {
    let admin = spawn_admin_app().await;
    let user = admin.app.register_user().await;
    let login = admin.app.login(&user).await;
    let token = login["access_token"].as_str().unwrap().to_owned();
    let refresh_token = login["refresh_token"].as_str().unwrap().to_owned();
    let mut ws = admin.app.connect_ws(&token).await;
    let mut key_ws = admin.app.connect_ws(&user.api_key).await;

    let response = admin.patch_user(&user.id, &json!({"role": "admin"})).await;

    assert_eq!(response.status(), StatusCode::OK, "the role change succeeds");
    let body: Value = response.json().await.unwrap();
    assert_user_shape(&body, "the PATCH answer");
    assert_eq!(body["role"], "admin", "the answer shows the new role: {body}");
    for (case, socket) in [("the token's socket", &mut ws), ("the API key's socket", &mut key_ws)] {
        let (revoked, _) = socket.recv_until("session.revoked").await;
        assert_eq!(revoked["reason"], "role_changed", "{case}: {revoked}");
        assert_eq!(socket.closed().await, Some(4001), "{case} closes with 4001");
    }
    let me = admin.app.get_with("/api/me", &token).await;
    assert_error(me, StatusCode::UNAUTHORIZED, "unauthorized", "the old access token").await;
    let refreshed = admin.app.post_json("/api/token/refresh", &json!({"refresh_token": refresh_token})).await;
    assert_error(refreshed, StatusCode::UNAUTHORIZED, "unauthorized", "the old refresh token").await;
    let fresh = admin.app.login(&user).await;
    assert_eq!(fresh["user"]["role"], "admin", "a new login carries the new role");
    let new_token = fresh["access_token"].as_str().unwrap();
    let list = admin.app.get_with("/api/admin/users", new_token).await;
    assert_eq!(list.status(), StatusCode::OK, "the promoted user may use the admin routes");
}

#[actix_web::test]
async fn a_deactivated_user_cannot_log_in_or_use_their_api_key_and_their_sockets_close() {
    let admin = spawn_admin_app().await;
    let (user, token) = admin.app.user_with_token().await;
    let mut ws = admin.app.connect_ws(&token).await;

    let response = admin.patch_user(&user.id, &json!({"active": false})).await;

    assert_eq!(response.status(), StatusCode::OK, "the deactivation succeeds");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["active"], false, "the answer shows the account inactive: {body}");
    let (revoked, _) = ws.recv_until("session.revoked").await;
    assert_eq!(revoked["reason"], "account_disabled", "{revoked}");
    assert_eq!(ws.closed().await, Some(4001), "the socket closes with 4001");
    let login = admin.app.post_login(&user.email, &user.password).await;
    assert_error(login, StatusCode::FORBIDDEN, "account_disabled", "login of a deactivated user").await;
    let by_key = admin.app.get_with("/api/me", &user.api_key).await;
    assert_error(by_key, StatusCode::FORBIDDEN, "account_disabled", "the API key of a deactivated user")
        .await;
    let by_header =
        admin.app.request(Method::GET, "/api/me").header("X-API-Key", &user.api_key).send().await.unwrap();
    assert_error(by_header, StatusCode::FORBIDDEN, "account_disabled", "the API key in X-API-Key").await;
    let by_token = admin.app.get_with("/api/me", &token).await;
    assert_error(by_token, StatusCode::UNAUTHORIZED, "unauthorized", "the revoked access token").await;
    let refused =
        admin.app.try_connect_ws("", &[("authorization", &format!("Bearer {}", user.api_key))]).await;
    assert!(refused.is_err(), "no new socket with the API key of a deactivated user");
    let shown = admin.get_ok(&format!("/api/admin/users/{}", user.id)).await;
    assert_eq!(shown["active"], false, "the admin sees the account inactive");

    let reactivated = admin.patch_user(&user.id, &json!({"active": true})).await;

    assert_eq!(reactivated.status(), StatusCode::OK, "the reactivation succeeds");
    let body: Value = reactivated.json().await.unwrap();
    assert_eq!(body["active"], true, "{body}");
    let login = admin.app.login(&user).await;
    assert_eq!(login["user"]["active"], true, "login works again");
    let by_key = admin.app.get_with("/api/me", &user.api_key).await;
    assert_eq!(by_key.status(), StatusCode::OK, "the API key works again");
}

#[actix_web::test]
async fn an_admin_cannot_demote_or_deactivate_themselves() {
    let admin = spawn_admin_app().await;

    for (case, body) in [
        ("demoting themselves", json!({"role": "user"})),
        ("deactivating themselves", json!({"active": false})),
        ("both at once", json!({"role": "user", "active": false})),
    ] {
        let response = admin.patch_user(&admin.admin_id, &body).await;
        let error = assert_error(response, StatusCode::CONFLICT, "conflict", case).await;
        assert!(error["error"].as_str().unwrap().contains("your own"), "{case}: a clear message: {error}");
    }
    let me = admin.get_ok("/api/me").await;
    assert_eq!(me["role"], "admin", "still an admin, and the token still works");
    assert_eq!(me["active"], true, "still active");
    let unchanged = admin.patch_user(&admin.admin_id, &json!({"role": "admin", "active": true})).await;
    assert_eq!(unchanged.status(), StatusCode::OK, "confirming their own role and flag is harmless");
    assert_eq!(admin.get("/api/me").await.status(), StatusCode::OK, "and keeps the session");
}

#[actix_web::test]
async fn patch_bodies_are_validated_with_422() {
    let admin = spawn_admin_app().await;
    let (user, token) = admin.app.user_with_token().await;

    for (case, body, field) in [
        ("an empty body object", json!({}), "body"),
        ("only nulls", json!({"role": null, "active": null}), "role"),
        (
            "a null beside a real change: null is not \"leave as it is\"",
            json!({"role": "admin", "active": null}),
            "active",
        ),
        ("an unknown role", json!({"role": "superuser"}), "role"),
        ("a role in capitals", json!({"role": "ADMIN"}), "role"),
        ("active as a string", json!({"active": "no"}), "active"),
        ("an unknown field", json!({"role": "admin", "credits": 1000}), "credits"),
        ("the email", json!({"email": "x@example.com"}), "email"),
    ] {
        let response = admin.patch_user(&user.id, &body).await;
        let error = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", case).await;
        assert!(error["fields"][field].is_array(), "{case}: fields names {field}: {error}");
    }
    let me = admin.app.get_with("/api/me", &token).await;
    assert_eq!(me.status(), StatusCode::OK, "refused changes end no session");
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["role"], "user", "and change no role");
}

// ---------------------------------------------------------------- credits

#[actix_web::test]
async fn a_grant_raises_the_balance_notifies_the_users_sockets_and_records_a_grant_entry() {
    let admin = spawn_admin_app().await;
    let (user, token) = admin.app.user_with_token().await;
    let mut ws = admin.app.connect_ws(&token).await;

    let response = admin.grant(&user.id, 50, "  conference speaker  ").await;

    assert_eq!(response.status(), StatusCode::OK, "the grant succeeds");
    let body: Value = response.json().await.unwrap();
    assert_user_shape(&body, "the grant answer");
    assert_eq!(body["credits"], 150, "the answer shows the new balance: {body}");
    let (update, _) = ws.recv_until("credits.updated").await;
    assert_eq!(update["credits"], 150, "the user's socket hears the new balance: {update}");
    let me = admin.app.get_with("/api/me", &token).await.json::<Value>().await.unwrap();
    assert_eq!(me["credits"], 150, "the user sees 150");

    let by_admin = admin.get_ok(&format!("/api/admin/users/{}/usage", user.id)).await;
    let own = admin.app.get_with("/api/me/usage", &token).await.json::<Value>().await.unwrap();
    for (case, usage) in [("the admin's view", &by_admin), ("the user's own view", &own)] {
        let entry = &usage["entries"][0];
        assert_eq!(entry["service_type"], "grant", "{case}: {usage}");
        assert_eq!(entry["amount"], 50, "{case}: {usage}");
        assert_eq!(entry["balance_after"], 150, "{case}: {usage}");
        assert_eq!(entry["ref"], "conference speaker", "{case}: the reason, trimmed: {usage}");
        assert!(entry.get("actor_id").is_none(), "{case}: the ledger entry shape is the contract's: {usage}");
    }
    assert_eq!(by_admin, own, "the admin sees the same ledger as the user");
    let shown = admin.get_ok(&format!("/api/admin/users/{}", user.id)).await;
    assert_eq!(shown["stats"]["credits"], 150, "the stats show the balance: {shown}");
    assert_eq!(shown["stats"]["credits_used"], json!({"chat": 0, "image": 0}), "a grant is no use: {shown}");
}

#[actix_web::test]
async fn a_grant_that_would_drive_the_balance_below_zero_is_409_and_records_nothing() {
    let admin = spawn_admin_app().await;
    let (user, token) = admin.app.user_with_token().await;
    assert_eq!(admin.grant(&user.id, 50, "bonus").await.status(), StatusCode::OK, "the first grant");

    let response = admin.grant(&user.id, -200, "clawback").await;

    let error = assert_error(response, StatusCode::CONFLICT, "conflict", "taking 200 of 150").await;
    assert!(error["error"].as_str().unwrap().contains("below zero"), "a clear message: {error}");
    let usage = admin.get_ok(&format!("/api/admin/users/{}/usage", user.id)).await;
    assert_eq!(usage["entries"].as_array().unwrap().len(), 1, "only the first grant is recorded: {usage}");
    let me = admin.app.get_with("/api/me", &token).await.json::<Value>().await.unwrap();
    assert_eq!(me["credits"], 150, "the balance is unchanged");

    let taken = admin.grant(&user.id, -150, "clawback").await;

    assert_eq!(taken.status(), StatusCode::OK, "taking the whole balance is allowed");
    assert_eq!(taken.json::<Value>().await.unwrap()["credits"], 0, "down to zero");
    let usage = admin.get_ok(&format!("/api/admin/users/{}/usage", user.id)).await;
    assert_eq!(usage["entries"][0]["amount"], -150, "the negative grant is recorded: {usage}");
    assert_eq!(usage["entries"][0]["service_type"], "grant", "{usage}");
}

#[actix_web::test]
async fn grant_bodies_are_validated_with_422_and_record_nothing() {
    let admin = spawn_admin_app().await;
    let user = admin.app.register_user().await;
    let too_long = "x".repeat(201);

    for (case, body, field) in [
        ("amount zero", json!({"amount": 0, "reason": "nothing"}), "amount"),
        ("amount above a billion", json!({"amount": 1_000_000_001_i64, "reason": "a lot"}), "amount"),
        ("amount below minus a billion", json!({"amount": -1_000_000_001_i64, "reason": "a lot"}), "amount"),
        ("amount as a fraction", json!({"amount": 1.5, "reason": "half"}), "amount"),
        ("amount as a string", json!({"amount": "10", "reason": "text"}), "amount"),
        ("no amount", json!({"reason": "none"}), "amount"),
        ("no reason", json!({"amount": 10}), "reason"),
        ("an empty reason", json!({"amount": 10, "reason": ""}), "reason"),
        ("a blank reason", json!({"amount": 10, "reason": "   "}), "reason"),
        ("a reason of 201 characters", json!({"amount": 10, "reason": too_long}), "reason"),
        ("an unknown field", json!({"amount": 10, "reason": "ok", "actor_id": "someone"}), "actor_id"),
        ("a control character in the reason", json!({"amount": 10, "reason": "a\u{0085}b"}), "reason"),
    ] {
        let response = admin
            .app
            .post_json_with(&format!("/api/admin/users/{}/credits", user.id), &admin.admin_token, &body)
            .await;
        let error = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", case).await;
        assert!(error["fields"][field].is_array(), "{case}: fields names {field}: {error}");
    }
    let usage = admin.get_ok(&format!("/api/admin/users/{}/usage", user.id)).await;
    assert_eq!(usage["entries"], json!([]), "no entry was recorded: {usage}");
    let longest = admin.grant(&user.id, 1_000_000_000, &"y".repeat(200)).await;
    assert_eq!(longest.status(), StatusCode::OK, "a billion credits with a 200-character reason is accepted");
    // JSON Schema's `integer` (which the OpenAPI document states) includes 5.0.
    let whole = admin
        .app
        .post_json_with(
            &format!("/api/admin/users/{}/credits", user.id),
            &admin.admin_token,
            &json!({"amount": -5.0, "reason": "a whole number written with a fraction"}),
        )
        .await;
    assert_eq!(whole.status(), StatusCode::OK, "an amount of -5.0 is the whole number -5");
    let usage = admin.get_ok(&format!("/api/admin/users/{}/usage", user.id)).await;
    assert_eq!(usage["entries"][0]["amount"], -5, "{usage}");
}

#[actix_web::test]
async fn a_users_usage_pages_like_their_own() {
    let admin = spawn_admin_app().await;
    let user = admin.app.register_user().await;
    for n in 1..=3 {
        assert_eq!(admin.grant(&user.id, n, &format!("grant {n}")).await.status(), StatusCode::OK);
    }

    let first = admin.get_ok(&format!("/api/admin/users/{}/usage?limit=2", user.id)).await;
    let cursor = first["next_before"].as_str().expect("a next page").to_owned();
    let second = admin.get_ok(&format!("/api/admin/users/{}/usage?limit=2&before={cursor}", user.id)).await;

    let refs = |page: &Value| -> Vec<String> {
        page["entries"].as_array().unwrap().iter().map(|e| e["ref"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(refs(&first), ["grant 3", "grant 2"], "newest first: {first}");
    assert_eq!(refs(&second), ["grant 1"], "then the rest: {second}");
    assert_eq!(second["next_before"], Value::Null, "the last page");
    let bad = admin.get(&format!("/api/admin/users/{}/usage?limit=0", user.id)).await;
    assert_error(bad, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "limit 0").await;
}

// ---------------------------------------------------------------- who may call

#[actix_web::test]
async fn non_admins_get_403_and_anonymous_callers_401_on_every_admin_route() {
    let admin = spawn_admin_app().await;
    let (user, token) = admin.app.user_with_token().await;
    let target = admin.app.register_user().await;
    let id = &target.id;

    for (method, template) in admin_routes() {
        // A live session of the target's for the route that ends one (the PATCH before it
        // re-roles the target, which ends the sessions it had).
        let sid = if template.contains("{sid}") {
            let login = admin.app.login(&target).await;
            login["refresh_token"].as_str().unwrap().split_once('.').unwrap().0.to_owned()
        } else {
            String::new()
        };
        let path = admin_path(template, id, &sid);
        let body = admin_body(&method, template);
        let send = |credential: Option<&str>| {
            let mut request = admin.app.request(method.clone(), &path);
            if let Some(credential) = credential {
                request = request.bearer_auth(credential);
            }
            if let Some(body) = &body {
                request = request.json(body);
            }
            request.send()
        };
        let case = format!("{method} {template}");
        let anonymous = send(None).await.unwrap();
        assert_error(anonymous, StatusCode::UNAUTHORIZED, "unauthorized", &format!("{case} anonymously"))
            .await;
        let by_token = send(Some(&token)).await.unwrap();
        assert_error(by_token, StatusCode::FORBIDDEN, "forbidden", &format!("{case} with a user's token"))
            .await;
        let by_key = send(Some(&user.api_key)).await.unwrap();
        assert_error(by_key, StatusCode::FORBIDDEN, "forbidden", &format!("{case} with a user's API key"))
            .await;
        let as_admin = send(Some(&admin.admin_token)).await.unwrap();
        assert!(as_admin.status().is_success(), "{case} as the admin succeeds: {}", as_admin.status());
    }
    let shown = admin.get_ok(&format!("/api/admin/users/{id}")).await;
    assert_eq!(shown["credits"], 105, "only the admin's grant counted: {shown}");
}

#[actix_web::test]
async fn two_admins_demoting_each_other_at_once_leave_an_admin() {
    let admin = spawn_admin_app().await;
    let other = admin.app.register_user().await;
    let patch = |token: String, id: String, role: &'static str| {
        let request = admin.app.request(Method::PATCH, &format!("/api/admin/users/{id}"));
        async move { request.bearer_auth(token).json(&json!({"role": role})).send().await.unwrap().status() }
    };
    for trial in 0..5 {
        // The bootstrap admin (an admin at the start of every trial) promotes the other; then each
        // demotes the other at the same moment.
        let first = admin.app.post_login(ADMIN_EMAIL, PASSWORD).await.json::<Value>().await.unwrap();
        let first = first["access_token"].as_str().unwrap().to_owned();
        let promoted = patch(first.clone(), other.id.clone(), "admin").await;
        assert_eq!(promoted, StatusCode::OK, "trial {trial}: promoted");
        let second = admin.app.login(&other).await["access_token"].as_str().unwrap().to_owned();
        let (a, b) = tokio::join!(
            patch(first, other.id.clone(), "user"),
            patch(second.clone(), admin.admin_id.clone(), "user")
        );
        let succeeded = [a, b].iter().filter(|s| **s == StatusCode::OK).count();
        assert_eq!(succeeded, 1, "trial {trial}: exactly one demotion stands ({a}, {b})");
        let (users, _) = admin.app.open_store().await.list_users(None, 100, 0).await.unwrap();
        let admins = users.iter().filter(|u| u.role == switchboard::store::Role::Admin && u.active).count();
        assert_eq!(admins, 1, "trial {trial}: one active admin remains");
        if b == StatusCode::OK {
            // The other is the admin left: it gives the bootstrap admin its role back.
            let restored = patch(second, admin.admin_id.clone(), "admin").await;
            assert_eq!(restored, StatusCode::OK, "trial {trial}: the bootstrap admin is restored");
            let demoted = admin.app.post_login(ADMIN_EMAIL, PASSWORD).await.json::<Value>().await.unwrap();
            let token = demoted["access_token"].as_str().unwrap().to_owned();
            assert_eq!(patch(token, other.id.clone(), "user").await, StatusCode::OK, "trial {trial}: reset");
        }
    }
}
