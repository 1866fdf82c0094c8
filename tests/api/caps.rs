//! Resource caps against one client address: open WebSockets per IP, upgrades per IP per minute
//! (docs/API.md §1: 429 beyond), and a slowloris client holding a thousand half-sent requests, which
//! must not stop anyone else and is cut off by the header read timeout.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::spawn_app_with;
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
    let server = ServerProcess::start(data_dir.path(), &[]).await;
    let mut loris = Vec::new();
    for _ in 0..1000 {
        let mut socket = TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");
        socket.write_all(b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-").await.unwrap();
        loris.push(socket);
    }
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(server.status_of("/healthz").await, StatusCode::OK, "others are served meanwhile");
    }
    assert!(started.elapsed() < Duration::from_secs(5), "promptly: {:?}", started.elapsed());

    // Past the header read timeout every half-sent request has been answered (408) or dropped.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let mut cut = 0;
    for socket in &mut loris {
        let mut buffer = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(200), socket.read(&mut buffer)).await {
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
