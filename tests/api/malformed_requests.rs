//! Hostile and sloppy clients: malformed bodies, wrong types, oversized payloads, wrong methods and
//! routes. Every refusal must use the contract's status and `{error, code[, fields]}` body, never a
//! 500, never internals, never an echo of the input.

use std::io::{Read, Write};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::app::*;

/// Largest accepted body (docs/API.md §2).
const LIMIT: usize = 64 * 1024;

/// Text that must never show up in an error body.
const INTERNALS: [&str; 8] =
    ["sqlite", "mongo", "panicked", "at src/", ".rs:", "serde_json", "backtrace", "RUST_BACKTRACE"];

/// A route that reads a JSON body, with `{…}` path parameters filled in.
#[derive(Clone)]
struct Endpoint {
    method: Method,
    path: String,
    /// Whether the body may be left out (the refresh route: an empty body means "use the cookie").
    body_required: bool,
}

impl Endpoint {
    fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// The route that reads an empty body as "use the refresh cookie" (docs/API.md §4), though the
/// API document marks its body required.
const EMPTY_BODY_MEANS_COOKIE: &str = "/api/token/refresh";

/// `POST /api/login`, for the cases that need a body the route accepts.
fn login_route() -> Endpoint {
    Endpoint { method: Method::POST, path: "/api/login".into(), body_required: true }
}

/// An id no user, chat, image or session has: a body is read before the id is looked up.
const MISSING_ID: &str = "0190f1f4-0000-7000-8000-000000000000";

/// `path` with every `{parameter}` replaced by [`MISSING_ID`].
fn fill_parameters(path: &str) -> String {
    path.split('/')
        .map(|segment| if segment.starts_with('{') { MISSING_ID } else { segment })
        .collect::<Vec<_>>()
        .join("/")
}

/// The served API document.
async fn openapi(app: &TestApp) -> Value {
    let response = app.request(Method::GET, "/api/openapi.json").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "the API document is served");
    response.json().await.unwrap()
}

/// The routes that read a JSON body, as the served API document lists them (the OpenAPI test
/// holds that document to the router's own table, and
/// `exactly_the_routes_documented_with_a_json_body_read_one` holds these to the handlers).
fn json_routes(doc: &Value) -> Vec<Endpoint> {
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().unwrap() {
            let body = &operation["requestBody"];
            if body["content"].get("application/json").is_some() {
                routes.push(Endpoint {
                    method: Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                    path: fill_parameters(path),
                    body_required: body["required"] == true && path != EMPTY_BODY_MEANS_COOKIE,
                });
            }
        }
    }
    routes
}

/// A server for the long tables here (its REST limit out of reach), the credential sent to every
/// route (an admin's access token, which every route accepts), and its JSON routes.
struct Setup {
    app: TestApp,
    credential: String,
    json_routes: Vec<Endpoint>,
}

async fn spawn() -> Setup {
    let admin = unique_email();
    let app = spawn_app_with(&["--admin-email", &admin, "--admin-password", PASSWORD]).await;
    let login: Value = app.post_login(&admin, PASSWORD).await.json().await.unwrap();
    let credential = login["access_token"].as_str().expect("the admin logs in").to_owned();
    let json_routes = json_routes(&openapi(&app).await);
    assert!(json_routes.len() >= 11, "the document lists the JSON routes: {}", json_routes.len());
    Setup { app, credential, json_routes }
}

/// Sends raw bytes with an optional content type to `endpoint`; returns status and body.
async fn send_bytes(
    app: &TestApp,
    endpoint: &Endpoint,
    credential: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
    let mut request = app.request(endpoint.method.clone(), &endpoint.path).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if !credential.is_empty() {
        request = request.bearer_auth(credential);
    }
    let response =
        request.send().await.unwrap_or_else(|e| panic!("{}: request failed: {e}", endpoint.name()));
    let status = response.status();
    (status, response.bytes().await.unwrap().to_vec())
}

/// Checks an error answer: status, code, exactly `error` + `code` (+ `fields` on 422), no internals,
/// and none of `never_echoed`. Returns the body.
fn assert_clean_error(
    status: StatusCode,
    body: &[u8],
    expected_status: StatusCode,
    code: &str,
    never_echoed: &[&str],
    case: &str,
) -> Value {
    let text = String::from_utf8_lossy(body);
    assert_eq!(status, expected_status, "{case}: status (body {text})");
    let value: Value =
        serde_json::from_slice(body).unwrap_or_else(|e| panic!("{case}: JSON error body ({e}): {text}"));
    assert_eq!(value["code"], code, "{case}: code in {text}");
    assert!(value["error"].as_str().is_some_and(|s| !s.is_empty()), "{case}: error sentence in {text}");
    let mut keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    let expected: &[&str] = if status == StatusCode::UNPROCESSABLE_ENTITY {
        &["code", "error", "fields"]
    } else {
        &["code", "error"]
    };
    assert_eq!(keys, expected, "{case}: exactly these keys in {text}");
    if status == StatusCode::UNPROCESSABLE_ENTITY {
        assert!(
            value["fields"].as_object().is_some_and(|f| !f.is_empty()),
            "{case}: non-empty fields in {text}"
        );
    }
    let lower = text.to_lowercase();
    for internal in INTERNALS {
        assert!(!lower.contains(&internal.to_lowercase()), "{case}: {internal:?} leaks in {text}");
    }
    for echo in never_echoed {
        assert!(!text.contains(echo), "{case}: the input {echo:?} is echoed in {text}");
    }
    value
}

/// Asserts a clean 422 whose `fields` has `field`.
fn assert_field(status: StatusCode, body: &[u8], field: &str, never_echoed: &[&str], case: &str) {
    let value = assert_clean_error(
        status,
        body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        never_echoed,
        case,
    );
    assert!(value["fields"].get(field).is_some(), "{case}: fields names {field:?} in {value}");
}

/// A JSON body of exactly `len` bytes: `prefix` padded with trailing spaces (still valid JSON).
fn padded(prefix: &str, len: usize) -> Vec<u8> {
    assert!(prefix.len() <= len);
    let mut body = prefix.as_bytes().to_vec();
    body.resize(len, b' ');
    body
}

// ---------------------------------------------------------------- raw HTTP

/// A response read off a plain socket.
struct RawResponse {
    status: u16,
    body: Vec<u8>,
}

/// Sends `request` as-is over a new connection and reads one response (the server may answer
/// before it has read the whole body, as it should for 413).
async fn raw_http(port: u16, request: Vec<u8>) -> RawResponse {
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = stream.write_all(&request);
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            if let Some(response) = parse_raw_response(&raw) {
                return response;
            }
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
        parse_raw_response(&raw)
            .unwrap_or_else(|| panic!("no complete HTTP response, got: {}", String::from_utf8_lossy(&raw)))
    })
    .await
    .unwrap()
}

/// A complete response in `raw` (Content-Length or chunked body), if there is one yet.
fn parse_raw_response(raw: &[u8]) -> Option<RawResponse> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let rest = &raw[end + 4..];
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let header = |name: &str| {
        head.lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    };
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let line_end = rest[at..].windows(2).position(|w| w == b"\r\n")? + at;
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[at..line_end]).ok()?.trim(), 16).ok()?;
            let start = line_end + 2;
            if size == 0 {
                return Some(RawResponse { status, body });
            }
            if rest.len() < start + size + 2 {
                return None;
            }
            body.extend_from_slice(&rest[start..start + size]);
            at = start + size + 2;
        }
    }
    let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    (rest.len() >= length).then(|| RawResponse { status, body: rest[..length].to_vec() })
}

/// A request with a chunked body (8 KiB chunks) and `Connection: close`.
fn chunked_request(port: u16, endpoint: &Endpoint, credential: &str, body: &[u8]) -> Vec<u8> {
    let auth =
        if credential.is_empty() { String::new() } else { format!("Authorization: Bearer {credential}\r\n") };
    let mut request = format!(
        "{} {} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n{auth}\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        endpoint.method, endpoint.path
    )
    .into_bytes();
    for chunk in body.chunks(8 * 1024) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    request
}

// ---------------------------------------------------------------- malformed bodies

#[actix_web::test]
async fn malformed_json_is_400_on_every_json_route() {
    let setup = spawn().await;
    let app = &setup.app;
    let deep_arrays = "[".repeat(50_000);
    let deep_objects = r#"{"a":"#.repeat(10_000);

    let cases: [(&str, Vec<u8>); 10] = [
        ("truncated object", br#"{"email":"#.to_vec()),
        ("trailing comma", br#"{"email": "a@example.com",}"#.to_vec()),
        ("single quotes", b"{'email': 'a@example.com'}".to_vec()),
        ("invalid UTF-8", b"{\"email\": \"\xff\xfe\"}".to_vec()),
        ("lone surrogate escape", br#"{"email": "\ud800"}"#.to_vec()),
        ("NaN", br#"{"email": NaN}"#.to_vec()),
        ("number out of range", br#"{"email": 1e999}"#.to_vec()),
        ("two documents", br#"{"email": "a@example.com"} {"email": "b@example.com"}"#.to_vec()),
        ("50,000 nested arrays", deep_arrays.into_bytes()),
        ("10,000 nested objects", deep_objects.into_bytes()),
    ];
    for endpoint in &setup.json_routes {
        for (case, body) in &cases {
            let (status, answer) =
                send_bytes(app, endpoint, &setup.credential, Some("application/json"), body.clone()).await;
            let case = format!("{}: {case}", endpoint.name());
            assert_clean_error(status, &answer, StatusCode::BAD_REQUEST, "malformed_json", &[], &case);
        }
    }
    assert_eq!(
        app.request(Method::GET, "/healthz").send().await.unwrap().status(),
        StatusCode::OK,
        "still up"
    );
}

#[actix_web::test]
async fn exactly_the_routes_documented_with_a_json_body_read_one() {
    // Every route that can take a body (any method but GET), from the router's own table: a
    // malformed JSON body is 400 `malformed_json` where the document lists a JSON body, and
    // anything else where it lists none, so the tables above miss no route that reads JSON.
    let admin = unique_email();
    let app = spawn_app_with(&["--admin-email", &admin, "--admin-password", PASSWORD]).await;
    let documented: Vec<String> = json_routes(&openapi(&app).await).iter().map(Endpoint::name).collect();
    let mut checked = 0;
    for (path, methods) in switchboard::http::route_list() {
        for method in methods.iter().filter(|m| m.as_str() != "GET") {
            let endpoint = Endpoint {
                method: Method::from_bytes(method.as_str().as_bytes()).unwrap(),
                path: fill_parameters(path),
                body_required: true,
            };
            // A login of its own for each: some of these routes end the session that calls them.
            let login: Value = app.post_login(&admin, PASSWORD).await.json().await.unwrap();
            let token = login["access_token"].as_str().expect("the admin logs in");
            let (status, answer) =
                send_bytes(&app, &endpoint, token, Some("application/json"), br#"{"email":"#.to_vec()).await;
            let code = serde_json::from_slice::<Value>(&answer).ok().map(|v| v["code"].clone());
            let read = status == StatusCode::BAD_REQUEST && code == Some(json!("malformed_json"));
            let name = endpoint.name();
            let listed = documented.contains(&name);
            assert_eq!(
                read,
                listed,
                "{name}: the document lists {} JSON body, and a malformed one was {}refused as \
                 malformed_json ({status} {})",
                if listed { "a" } else { "no" },
                if read { "" } else { "not " },
                String::from_utf8_lossy(&answer)
            );
            checked += 1;
        }
    }
    assert!(checked > 10, "the routes that take a body were tried: {checked}");
}

#[actix_web::test]
async fn an_empty_json_body_is_400() {
    let setup = spawn().await;
    let app = &setup.app;

    // The refresh route reads an empty body as "use the cookie"; it documents its body as optional.
    for endpoint in setup.json_routes.iter().filter(|e| e.body_required) {
        let (status, answer) =
            send_bytes(app, endpoint, &setup.credential, Some("application/json"), Vec::new()).await;
        assert_clean_error(status, &answer, StatusCode::BAD_REQUEST, "malformed_json", &[], &endpoint.name());
    }
}

#[actix_web::test]
async fn a_json_body_that_is_not_an_object_is_422() {
    let setup = spawn().await;
    let app = &setup.app;

    for endpoint in &setup.json_routes {
        for (case, body) in [
            ("array", r#"["email", "password"]"#),
            ("empty array", "[]"),
            ("string", r#""a@example.com""#),
            ("number", "42"),
            ("boolean", "true"),
            ("null", "null"),
        ] {
            let (status, answer) = send_bytes(
                app,
                endpoint,
                &setup.credential,
                Some("application/json"),
                body.as_bytes().to_vec(),
            )
            .await;
            let case = format!("{}: {case}", endpoint.name());
            assert_clean_error(
                status,
                &answer,
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                &[],
                &case,
            );
        }
    }
}

#[actix_web::test]
async fn a_body_that_is_not_declared_json_is_415() {
    let setup = spawn().await;
    let app = &setup.app;
    let user = app.register_user().await;
    let login = json!({"email": user.email, "password": user.password}).to_string();

    for endpoint in &setup.json_routes {
        for (case, content_type) in [
            ("text/plain", Some("text/plain")),
            ("no content type", None),
            ("form", Some("application/x-www-form-urlencoded")),
            ("multipart", Some("multipart/form-data; boundary=x")),
            ("text/json", Some("text/json")),
            ("application/jsonp", Some("application/jsonp")),
            ("xml", Some("application/xml")),
        ] {
            let (status, answer) =
                send_bytes(app, endpoint, &setup.credential, content_type, login.clone().into_bytes()).await;
            let case = format!("{}: {case}", endpoint.name());
            assert_clean_error(
                status,
                &answer,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                &[],
                &case,
            );
        }
    }
}

#[actix_web::test]
async fn json_content_types_are_recognised_with_parameters_and_any_case() {
    let setup = spawn().await;
    let app = &setup.app;
    let user = app.register_user().await;
    let body = json!({"email": user.email, "password": user.password}).to_string();
    let login = &login_route();

    for content_type in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.api+json",
    ] {
        let (status, answer) =
            send_bytes(app, login, "", Some(content_type), body.clone().into_bytes()).await;
        assert_eq!(status, StatusCode::OK, "{content_type}: {}", String::from_utf8_lossy(&answer));
    }
}

// ---------------------------------------------------------------- body size

#[actix_web::test]
async fn a_body_above_64_kib_is_413_with_a_content_length() {
    let setup = spawn().await;
    let app = &setup.app;

    for endpoint in &setup.json_routes {
        for (case, len) in [("70 KiB", 70 * 1024), ("one byte over", LIMIT + 1), ("1 MiB", 1024 * 1024)] {
            let body = padded(r#"{"email": "a@example.com"}"#, len);
            let (status, answer) =
                send_bytes(app, endpoint, &setup.credential, Some("application/json"), body).await;
            let case = format!("{}: {case}", endpoint.name());
            assert_clean_error(
                status,
                &answer,
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                &[],
                &case,
            );
        }
    }
}

#[actix_web::test]
async fn a_chunked_body_above_64_kib_is_413() {
    let setup = spawn().await;
    let app = &setup.app;

    for endpoint in &setup.json_routes {
        for (case, len) in [("70 KiB", 70 * 1024), ("one byte over", LIMIT + 1)] {
            let body = padded(r#"{"email": "a@example.com"}"#, len);
            let response =
                raw_http(app.port, chunked_request(app.port, endpoint, &setup.credential, &body)).await;
            let case = format!("{} chunked: {case}", endpoint.name());
            let status = StatusCode::from_u16(response.status).unwrap();
            assert_clean_error(
                status,
                &response.body,
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                &[],
                &case,
            );
        }
    }
}

#[actix_web::test]
async fn bodies_of_64_kib_or_less_are_not_refused_for_size() {
    let setup = spawn().await;
    let app = &setup.app;

    for endpoint in &setup.json_routes {
        for len in [LIMIT - 1, LIMIT] {
            let body = padded(r#"{"unknown": 1}"#, len);
            let (status, answer) =
                send_bytes(app, endpoint, &setup.credential, Some("application/json"), body.clone()).await;
            let case = format!("{}: {len} bytes", endpoint.name());
            assert_ne!(status, StatusCode::PAYLOAD_TOO_LARGE, "{case}: {}", String::from_utf8_lossy(&answer));
            assert!(!status.is_server_error(), "{case}: {status}");

            let response =
                raw_http(app.port, chunked_request(app.port, endpoint, &setup.credential, &body)).await;
            assert_ne!(response.status, 413, "{case} chunked: {}", String::from_utf8_lossy(&response.body));
            assert!(response.status < 500, "{case} chunked: {}", response.status);
        }
    }
}

#[actix_web::test]
async fn a_login_of_exactly_64_kib_is_processed() {
    let setup = spawn().await;
    let app = &setup.app;
    let user = app.register_user().await;
    let login = &login_route();
    let body = padded(&json!({"email": user.email, "password": user.password}).to_string(), LIMIT);

    let (status, answer) = send_bytes(app, login, "", Some("application/json"), body.clone()).await;
    assert_eq!(status, StatusCode::OK, "with a Content-Length: {}", String::from_utf8_lossy(&answer));

    let response = raw_http(app.port, chunked_request(app.port, login, "", &body)).await;
    assert_eq!(response.status, 200, "chunked: {}", String::from_utf8_lossy(&response.body));
}

// ---------------------------------------------------------------- wrong types and unknown fields

#[actix_web::test]
async fn values_of_the_wrong_type_on_login_are_422_naming_the_field() {
    let setup = spawn().await;
    let app = &setup.app;
    let user = app.register_user().await;

    let cases = [
        ("email as a number", json!({"email": 424242, "password": "x"}), "email", vec!["424242"]),
        (
            "email as an array",
            json!({"email": ["marker@example.com"], "password": "x"}),
            "email",
            vec!["marker@example.com"],
        ),
        (
            "operator objects",
            json!({"email": {"$gt": ""}, "password": {"$ne": null}}),
            "email",
            vec!["$gt", "$ne"],
        ),
        (
            "password as an operator",
            json!({"email": user.email, "password": {"$ne": null}}),
            "password",
            vec!["$ne"],
        ),
        (
            "password as a regex operator",
            json!({"email": user.email, "password": {"$regex": ".*"}}),
            "password",
            vec!["$regex"],
        ),
        ("email null", json!({"email": null, "password": "x"}), "email", vec![]),
        ("password as a boolean", json!({"email": user.email, "password": true}), "password", vec![]),
        (
            "password as a number",
            json!({"email": user.email, "password": 98765432}),
            "password",
            vec!["98765432"],
        ),
        ("missing password", json!({"email": user.email}), "password", vec![]),
        ("empty password", json!({"email": user.email, "password": ""}), "password", vec![]),
        (
            "password above 1024 bytes",
            json!({"email": user.email, "password": "p".repeat(60_000)}),
            "password",
            vec!["pppp"],
        ),
        ("empty email", json!({"email": "", "password": "x"}), "email", vec![]),
    ];
    for (case, body, field, markers) in cases {
        let response = app.post_json("/api/login", &body).await;
        let status = response.status();
        let answer = response.bytes().await.unwrap();
        assert_field(status, &answer, field, &markers, case);
    }
    assert_eq!(
        app.post_login(&user.email, &user.password).await.status(),
        StatusCode::OK,
        "login still works"
    );
}

#[actix_web::test]
async fn a_duplicated_key_cannot_smuggle_an_operator() {
    let setup = spawn().await;
    let app = &setup.app;
    let user = app.register_user().await;
    let body = format!(r#"{{"email": "{}", "email": {{"$gt": ""}}, "password": "x"}}"#, user.email);
    let login = &login_route();

    let (status, answer) = send_bytes(app, login, "", Some("application/json"), body.into_bytes()).await;

    // The later value counts, as in any JSON object read into a map, and it is not a string.
    assert_field(status, &answer, "email", &["$gt"], "a duplicate email key holding an operator");
}

#[actix_web::test]
async fn values_of_the_wrong_type_on_register_are_422_naming_the_field() {
    let setup = spawn().await;
    let app = &setup.app;
    let good =
        json!({"email": unique_email(), "password": PASSWORD, "first_name": "Ada", "last_name": "Lovelace"});

    for (case, field, value) in [
        ("email as an object", "email", json!({"$ne": "marker"})),
        ("password as an array", "password", json!(["marker-password-1"])),
        ("first_name as a number", "first_name", json!(31337)),
        ("last_name as an object", "last_name", json!({"$set": {"role": "admin"}})),
        ("first_name null", "first_name", Value::Null),
    ] {
        let mut body = good.clone();
        body[field] = value;
        let response = app.post_json("/api/register", &body).await;
        let status = response.status();
        let answer = response.bytes().await.unwrap();
        assert_field(status, &answer, field, &["marker", "31337", "$ne", "$set"], case);
    }
}

#[actix_web::test]
async fn unknown_fields_are_422_naming_the_field() {
    let setup = spawn().await;
    let app = &setup.app;
    let user = app.register_user().await;
    let login = app.login(&user).await;
    let refresh_token = login["refresh_token"].as_str().unwrap();

    let cases = [
        (
            "login with role",
            "/api/login",
            json!({"email": user.email, "password": user.password, "role": "admin"}),
            "role",
        ),
        (
            "login with $where",
            "/api/login",
            json!({"email": user.email, "password": user.password, "$where": "1"}),
            "$where",
        ),
        (
            "register with role",
            "/api/register",
            json!({"email": unique_email(), "password": PASSWORD, "first_name": "A", "last_name": "B", "role": "admin"}),
            "role",
        ),
        (
            "register with credits",
            "/api/register",
            json!({"email": unique_email(), "password": PASSWORD, "first_name": "A", "last_name": "B", "credits": 1_000_000}),
            "credits",
        ),
        (
            "refresh with user_id",
            "/api/token/refresh",
            json!({"refresh_token": refresh_token, "user_id": "x"}),
            "user_id",
        ),
    ];
    for (case, path, body, field) in cases {
        let response = app.post_json(path, &body).await;
        let status = response.status();
        let answer = response.bytes().await.unwrap();
        assert_field(status, &answer, field, &[], case);
    }

    let refreshed = app.post_json("/api/token/refresh", &json!({"refresh_token": refresh_token})).await;
    assert_eq!(refreshed.status(), StatusCode::OK, "the refused refresh did not use the token");
    let users: Value = app.get_with("/api/me", &user.api_key).await.json().await.unwrap();
    assert_eq!(users["role"], "user", "no escalation");
}

// ---------------------------------------------------------------- routes and methods

#[actix_web::test]
async fn a_wrong_method_is_405_in_json() {
    let setup = spawn().await;
    let app = &setup.app;

    for (method, path) in [
        (Method::DELETE, "/api/login"),
        (Method::GET, "/api/login"),
        (Method::GET, "/api/register"),
        (Method::PUT, "/api/register"),
        (Method::POST, "/api/me/stats"),
        (Method::DELETE, "/api/me"),
        (Method::PATCH, "/api/me"),
        (Method::GET, "/api/me/password"),
        (Method::GET, "/api/password/reset"),
        (Method::POST, "/healthz"),
        (Method::POST, "/api/openapi.json"),
        (Method::TRACE, "/metrics"),
        (Method::POST, "/metrics"),
    ] {
        let response = app.request(method.clone(), path).send().await.unwrap();
        let status = response.status();
        let answer = response.bytes().await.unwrap();
        assert_clean_error(
            status,
            &answer,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            &[],
            &format!("{method} {path}"),
        );
    }
}

#[actix_web::test]
async fn a_405_names_the_allowed_methods() {
    // RFC 9110 §15.5.6: a 405 response MUST carry an Allow header.
    let setup = spawn().await;
    let app = &setup.app;

    for (method, path, allowed) in [
        (Method::DELETE, "/api/login", vec!["POST"]),
        (Method::POST, "/api/me/stats", vec!["GET"]),
        (Method::DELETE, "/api/me", vec!["GET", "PUT"]),
    ] {
        let response = app.request(method.clone(), path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        let allow =
            response.headers().get("allow").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let listed: Vec<String> = allow.split(',').map(|m| m.trim().to_uppercase()).collect();
        for m in allowed {
            assert!(listed.iter().any(|l| l == m), "{method} {path}: Allow lists {m}, got {allow:?}");
        }
    }
}

#[actix_web::test]
async fn an_unknown_route_is_404_in_json() {
    let setup = spawn().await;
    let app = &setup.app;
    let user = app.register_user().await;

    for (case, method, path, key) in [
        ("unknown API route", Method::GET, "/api/nope", None),
        ("unknown API route, authenticated", Method::GET, "/api/nope", Some(user.api_key.as_str())),
        ("unknown API route, POST", Method::POST, "/api/nope", None),
        ("unknown top-level path", Method::GET, "/nope", None),
        ("path traversal", Method::GET, "/api/../../etc/passwd", None),
        ("encoded traversal", Method::GET, "/%2e%2e/%2e%2e/etc/passwd", None),
        ("extra path segment", Method::GET, "/api/me/stats/extra", None),
    ] {
        let mut request = app.request(method, path);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let answer = response.bytes().await.unwrap();
        assert_clean_error(status, &answer, StatusCode::NOT_FOUND, "not_found", &["passwd"], case);
    }
}

// ---------------------------------------------------------------- query strings

#[actix_web::test]
async fn bad_query_strings_are_422_in_json() {
    let setup = spawn().await;
    let app = &setup.app;
    let user = app.register_user().await;

    for query in [
        "limit=abc",
        "limit=1.5",
        "limit=-5",
        "limit=0",
        "limit=101",
        "limit=99999999999999999999",
        "limit=%00",
        "before=abc",
        "before=1%27%20OR%201%3D1",
        "unknown=1",
        "limit=1&limit=2",
    ] {
        let response = app.get_with(&format!("/api/me/usage?{query}"), &user.api_key).await;
        let status = response.status();
        assert!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json")),
            "{query}: JSON content type"
        );
        let answer = response.bytes().await.unwrap();
        assert_clean_error(
            status,
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            &["OR 1=1"],
            query,
        );
    }
}

#[actix_web::test]
async fn a_query_value_of_the_wrong_type_names_its_parameter() {
    let setup = spawn().await;
    let app = &setup.app;
    let user = app.register_user().await;

    for (query, field) in [("limit=abc", "limit"), ("limit=1.5", "limit"), ("unknown=1", "unknown")] {
        let response = app.get_with(&format!("/api/me/usage?{query}"), &user.api_key).await;
        let status = response.status();
        let answer = response.bytes().await.unwrap();
        assert_field(status, &answer, field, &[], query);
    }
}

// ---------------------------------------------------------------- the server survives

#[actix_web::test]
async fn the_server_stays_up_after_hostile_requests() {
    let setup = spawn().await;
    let app = &setup.app;
    let user = app.register_user().await;

    let garbage = [
        b"GARBAGE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\nConnection: close\r\n\r\n".to_vec(),
        b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n".to_vec(),
    ];
    for request in garbage {
        let port = app.port;
        let _ = tokio::time::timeout(Duration::from_secs(15), async {
            tokio::task::spawn_blocking(move || {
                let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
                stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
                stream.write_all(&request).ok()?;
                let mut sink = Vec::new();
                let _ = stream.read_to_end(&mut sink);
                Some(())
            })
            .await
        })
        .await;
    }

    assert_eq!(app.request(Method::GET, "/healthz").send().await.unwrap().status(), StatusCode::OK, "alive");
    assert_eq!(app.get_with("/api/me", &user.api_key).await.status(), StatusCode::OK, "still serving");
}
