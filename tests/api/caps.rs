//! Resource caps against one client address: open WebSockets per IP, upgrades per IP per minute
//! and plain HTTP connections per IP (docs/API.md §1: 429 beyond), a slowloris client holding a
//! thousand half-sent requests, which must not stop anyone else and is cut off by the header read
//! timeout, and bodies that never end, whatever their framing.
//!
//! Clients that must count as another address connect from 127.0.0.2: the whole of 127.0.0.0/8
//! is this machine's loopback.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::app::spawn_app_with;
use crate::support::process::ServerProcess;
use tempfile::TempDir;

#[actix_web::test]
async fn open_websockets_per_ip_are_capped_and_a_closed_one_frees_its_place() {
    let app = spawn_app_with(&["--ws-max-per-ip", "3"]).await;
    let (_, token) = app.user_with_token().await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(app.connect_ws(&token).await);
    }
    let bearer = format!("Bearer {token}");
    let refused =
        app.try_connect_ws("", &[("authorization", &bearer)]).await.err().expect("the fourth is refused");
    assert_eq!(refused.status, 429, "beyond the cap: {refused:?}");
    assert!(refused.body.contains("rate_limited"), "{refused:?}");

    let mut first = open.remove(0);
    first.stream.close(None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match app.try_connect_ws("", &[("authorization", &bearer)]).await {
            Ok(_) => break,
            Err(refused) => {
                assert!(Instant::now() < deadline, "a closed socket frees its place: {refused:?}")
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn websocket_upgrades_per_ip_per_minute_are_limited_with_retry_after() {
    let app = spawn_app_with(&["--ws-upgrades-per-ip-per-minute", "5"]).await;
    let (_, token) = app.user_with_token().await;
    for _ in 0..5 {
        let ws = app.connect_ws(&token).await;
        drop(ws);
    }
    let response = app.request(reqwest::Method::GET, "/ws").bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "the sixth upgrade in a minute");
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After in seconds: {retry_after}");
}

#[actix_web::test]
async fn a_thousand_half_sent_requests_stop_no_one_and_are_cut_off_by_the_header_timeout() {
    let data_dir = TempDir::new().unwrap();
    // Enough connections per address for the thousand: this is about the header timeout.
    let server =
        ServerProcess::start(data_dir.path(), &[("SWITCHBOARD_HTTP_MAX_PER_IP".into(), "2000".into())]).await;
    let mut loris = Vec::new();
    for _ in 0..1000 {
        let mut socket = connect_from("127.0.0.2", server.port).await;
        socket.write_all(b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-").await.unwrap();
        loris.push(socket);
    }
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(server.status_of("/healthz").await, StatusCode::OK, "others are served meanwhile");
    }
    assert!(started.elapsed() < Duration::from_secs(5), "promptly: {:?}", started.elapsed());

    // Once the 5 s header deadline passes, every half-sent request is answered (408) or dropped:
    // each socket is read until that happens, within a generous 20 s in all.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut cut = 0;
    for socket in &mut loris {
        let mut buffer = [0u8; 256];
        match tokio::time::timeout_at(deadline, socket.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => cut += 1,
            Ok(Ok(n)) if String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 408") => cut += 1,
            _ => {}
        }
    }
    assert_eq!(cut, 1000, "every slow client was cut off");
    assert!(server.output().lines().all(|l| !l.contains("panicked")), "no panic");
}

#[actix_web::test]
async fn a_body_that_trickles_is_answered_408_after_the_body_timeout_and_others_are_served() {
    let app = spawn_app_with(&[]).await;
    let mut socket = TcpStream::connect(("127.0.0.1", app.port)).await.expect("connect");
    let head = "POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    socket.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    // A byte every second: the head arrived, the body never completes.
    let mut answer = String::new();
    while started.elapsed() < Duration::from_secs(20) {
        let _ = socket.write_all(b" ").await;
        let health = app.request(reqwest::Method::GET, "/healthz").send().await.unwrap();
        assert_eq!(health.status(), StatusCode::OK, "others are served meanwhile");
        let mut buffer = [0u8; 1024];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), socket.read(&mut buffer)).await {
            answer = String::from_utf8_lossy(&buffer[..n]).into_owned();
            break;
        }
    }
    assert!(answer.starts_with("HTTP/1.1 408"), "a 408 after {:?}: {answer:?}", started.elapsed());
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
    assert!(started.elapsed() >= Duration::from_secs(9), "not before the timeout: {:?}", started.elapsed());
}

/// A connection to the server on 127.0.0.1 made from the loopback address `from`.
async fn connect_from(from: &str, port: u16) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).expect("bind a loopback address");
    socket.connect(([127, 0, 0, 1], port).into()).await.expect("connect")
}

/// Reads what the server sends until it closes the connection or `limit` passes; the text read,
/// and whether the connection was closed.
async fn read_until_closed(socket: &mut TcpStream, limit: Duration) -> (String, bool) {
    let deadline = Instant::now() + limit;
    let mut text = Vec::new();
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let mut buffer = [0u8; 4096];
        match tokio::time::timeout(remaining, socket.read(&mut buffer)).await {
            Err(_) => return (String::from_utf8_lossy(&text).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&text).into_owned(), true),
            Ok(Ok(n)) => text.extend_from_slice(&buffer[..n]),
        }
    }
}

#[actix_web::test]
async fn a_chunked_body_that_goes_silent_is_answered_408_and_its_connection_closed() {
    let app = spawn_app_with(&[]).await;
    let mut socket = TcpStream::connect(("127.0.0.1", app.port)).await.expect("connect");
    let head = "POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n";
    socket.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (answer, closed) = read_until_closed(&mut socket, Duration::from_secs(30)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "a 408 after {:?}: {answer:?}", started.elapsed());
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
    assert!(closed, "the connection is closed with the answer, after {:?}", started.elapsed());
    assert!(started.elapsed() >= Duration::from_secs(9), "not before the deadline: {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(20), "but soon after it: {:?}", started.elapsed());
}

#[actix_web::test]
async fn a_body_the_route_does_not_read_closes_its_connection_after_the_answer() {
    let app = spawn_app_with(&[]).await;
    for (case, head) in [
        ("chunked, then silence", "GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("a length, never sent", "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"),
    ] {
        let mut socket = TcpStream::connect(("127.0.0.1", app.port)).await.expect("connect");
        socket.write_all(head.as_bytes()).await.unwrap();
        let (answer, closed) = read_until_closed(&mut socket, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{case}: answered: {answer:?}");
        assert!(
            closed,
            "{case}: the connection is closed with the answer, not kept for the rest of the body"
        );
    }
    // A body the route reads to its end keeps the connection for the next request.
    let mut socket = TcpStream::connect(("127.0.0.1", app.port)).await.expect("connect");
    let body = r#"{"email":"nobody@example.com","password":"not-a-real-password"}"#;
    let request = format!(
        "POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // A second request follows on the same connection (it asks to close after its answer, so the
    // read ends without a timer deciding): both are answered only if the first kept it open.
    let next = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    socket.write_all(format!("{request}{next}").as_bytes()).await.unwrap();
    let (answer, _) = read_until_closed(&mut socket, Duration::from_secs(20)).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "the login is answered: {answer:?}");
    assert!(
        answer.contains("HTTP/1.1 200"),
        "a body read to its end keeps the connection for the next request: {answer:?}"
    );
}

#[actix_web::test]
async fn plain_http_connections_per_ip_are_capped_and_others_are_served() {
    let app = spawn_app_with(&["--http-max-per-ip", "3"]).await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut open = Vec::new();
    for n in 0..3 {
        let mut socket = connect_from("127.0.0.2", app.port).await;
        socket.write_all(request).await.unwrap();
        let (answer, closed) = read_until_closed(&mut socket, Duration::from_millis(500)).await;
        assert!(
            answer.starts_with("HTTP/1.1 200") && !closed,
            "connection {n} is served and kept: {answer:?}"
        );
        open.push(socket);
    }
    let mut fourth = connect_from("127.0.0.2", app.port).await;
    fourth.write_all(request).await.unwrap();
    let (answer, closed) = read_until_closed(&mut fourth, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "the fourth connection of the address: {answer:?}");
    assert!(answer.contains(r#""code":"rate_limited""#), "{answer}");
    assert!(closed, "and it is closed");
    let health = app.request(reqwest::Method::GET, "/healthz").send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK, "another address is served meanwhile");

    drop(open.remove(0));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut socket = connect_from("127.0.0.2", app.port).await;
        socket.write_all(request).await.unwrap();
        let (answer, _) = read_until_closed(&mut socket, Duration::from_millis(500)).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "a closed connection frees its place: {answer:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn a_hundred_parallel_upgrades_open_exactly_as_many_sessions_as_the_cap() {
    let app = spawn_app_with(&["--ws-max-sessions-per-user", "32"]).await;
    let (_, token) = app.user_with_token().await;
    let url = app.ws_url(&format!("?token={token}"));
    let attempts = (0..100).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { tokio_tungstenite::connect_async(url).await })
    });
    let mut opened = Vec::new();
    let mut refused = Vec::new();
    for attempt in futures_util::future::join_all(attempts).await {
        match attempt.unwrap() {
            Ok((stream, _)) => opened.push(stream),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                refused.push(response.status().as_u16())
            }
            Err(e) => panic!("an upgrade failed without an HTTP answer: {e}"),
        }
    }
    assert_eq!(opened.len(), 32, "sessions opened by 100 parallel upgrades with a cap of 32");
    assert!(refused.iter().all(|s| *s == 429), "every other upgrade is 429: {refused:?}");

    // Every refusal gave its reservation back: closing one session frees exactly one place.
    drop(opened.pop());
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match tokio_tungstenite::connect_async(url.clone()).await {
            Ok((stream, _)) => {
                opened.push(stream);
                break;
            }
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("the freed place was not given back within 3 s: {e}"),
        }
    }
    let over = tokio_tungstenite::connect_async(url).await;
    assert!(over.is_err(), "the cap holds again once the freed place is taken");
}
