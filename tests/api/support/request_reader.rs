//! A one-request HTTP/1.1 reader for the small servers that stand in for OpenAI-compatible
//! services. The crate's own unit tests (`src/assistant.rs`, `src/images.rs`) include this file
//! by path as `crate::test_support`, so it uses nothing but tokio.

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The head and body of one request a test server received.
pub struct Recorded {
    /// Request line and headers.
    pub head: String,
    /// Body, as long as its Content-Length says.
    pub body: Vec<u8>,
}

/// Reads one request (headers, then Content-Length bytes of body) from `socket`.
pub async fn read_request(socket: &mut TcpStream) -> Recorded {
    let mut received = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = socket.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the client closed before sending its headers");
        received.extend_from_slice(&chunk[..n]);
        if let Some(i) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8(received[..head_end].to_vec()).unwrap();
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
        .map_or(0, |v| v.parse::<usize>().unwrap());
    let mut body = received[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = socket.read(&mut chunk).await.unwrap();
        body.extend_from_slice(&chunk[..n]);
    }
    Recorded { head, body }
}
