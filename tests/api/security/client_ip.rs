//! The client IP: `X-Forwarded-For` counts only when the TCP peer is a trusted proxy, and then
//! only the hops the proxies appended.

use reqwest::{Method, StatusCode};

use super::*;

#[actix_web::test]
async fn a_rotating_x_forwarded_for_from_an_untrusted_peer_does_not_escape_the_ip_limit() {
    let app = spawn_app_with(&["--rate-limit-per-minute", "3"]).await;
    for (i, forged) in ["198.51.100.1", "198.51.100.2", "198.51.100.3"].iter().enumerate() {
        let response = forwarded_for(&app, Method::GET, "/api/me", forged).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "forged X-Forwarded-For {forged}");
        assert_eq!(number(&response, "ratelimit-remaining", forged), 2 - i as u64, "one budget for the peer");
    }
    let rotated =
        forwarded_for(&app, Method::GET, "/api/me", "198.51.100.4, 203.0.113.9").send().await.unwrap();
    assert_throttled(rotated, "a fourth forged address").await;
}

#[actix_web::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget() {
    let app = spawn_app_with(&["--rate-limit-per-minute", "2", "--trusted-proxies", "127.0.0.1/32"]).await;
    let send = |xff: &'static str| forwarded_for(&app, Method::GET, "/api/me", xff).send();

    for round in 0..2 {
        let response = send("203.0.113.1").await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "client 1, request {round}");
    }
    assert_throttled(send("203.0.113.1").await.unwrap(), "client 1, third request").await;
    // A client behind the proxy may put anything in front; the proxy appends the real address.
    let spoofed = send("192.0.2.77, 203.0.113.1").await.unwrap();
    assert_throttled(spoofed, "client 1 prefixing a made-up hop").await;

    let other = send("203.0.113.2").await.unwrap();
    assert_eq!(other.status(), StatusCode::UNAUTHORIZED, "client 2 has a budget of its own");
    assert_eq!(number(&other, "ratelimit-remaining", "client 2"), 1);
    let v6_a = send("2001:db8:1:2::a").await.unwrap();
    let v6_b = send("2001:db8:1:2::b").await.unwrap();
    assert_eq!(v6_a.status(), StatusCode::UNAUTHORIZED, "an IPv6 client");
    assert_eq!(
        number(&v6_b, "ratelimit-remaining", "another address of the same IPv6 /64"),
        0,
        "one /64 shares one budget"
    );
}
