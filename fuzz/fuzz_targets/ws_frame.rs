//! Arbitrary bytes as an inbound WebSocket message, through what the server does with one:
//! the frame guard that reads frame headers on the raw stream, then, for a UTF-8 text message
//! within the size limit, `protocol::parse` (what `WsSession::on_text` calls), the checks that
//! follow it without storage (the page limit), and the encoding of the answer or error frame.

#![no_main]

use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use futures_util::{FutureExt, StreamExt};
use libfuzzer_sys::fuzz_target;
use switchboard::services::paging::PageLimit;
use switchboard::ws::error::RequestError;
use switchboard::ws::frame_guard::FrameGuard;
use switchboard::ws::protocol::{
    self, ClientMessage, MAX_ID_CHARS, MAX_MESSAGE_BYTES, ServerMessage,
};

fuzz_target!(|data: &[u8]| {
    guard_raw_bytes(data);
    // actix-ws closes the connection on a larger message or a text frame that is not UTF-8
    // before the session sees it (1009 and 1007).
    if data.len() > MAX_MESSAGE_BYTES {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    let frame = match protocol::parse(text) {
        Ok((id, message)) => {
            assert!(id.as_ref().is_none_or(|id| id.chars().count() <= MAX_ID_CHARS), "id over the limit");
            let _ = message.kind();
            if let ClientMessage::ChatList { limit, .. } | ClientMessage::ChatHistory { limit, .. } = message
            {
                let _ = PageLimit::new(limit);
            }
            ServerMessage::Pong.encode(id.as_deref())
        }
        Err(bad) => RequestError::Invalid(bad.problem).frame().encode(bad.id.as_deref()),
    };
    // `encode` answers an empty string if serialisation ever failed: the client would get nothing.
    let echoed: serde_json::Value = serde_json::from_str(&frame).expect("the answer frame is JSON");
    assert!(echoed.get("type").is_some_and(|t| t.is_string()), "the answer frame has a type");
});

/// The same bytes as the raw WebSocket stream, split where the first byte says, through the
/// guard in front of actix-ws; the guard must pass or refuse them, never panic.
fn guard_raw_bytes(data: &[u8]) {
    let split = data.first().map_or(0, |b| usize::from(*b) % (data.len() + 1));
    let chunks: Vec<Result<Bytes, PayloadError>> =
        vec![Ok(Bytes::copy_from_slice(&data[..split])), Ok(Bytes::copy_from_slice(&data[split..]))];
    let guard = FrameGuard::new(futures_util::stream::iter(chunks), 125);
    let passed = guard.collect::<Vec<_>>().now_or_never().expect("a ready stream stays ready");
    assert!(passed.len() <= 2, "the guard adds no chunks");
}
