//! A guard in front of actix-ws that reads WebSocket frame headers as bytes arrive and ends
//! the stream as soon as a frame announces more than the limit. actix-http checks a frame's
//! length only once the whole frame is buffered, so without this a client could announce a
//! gigabyte and make the server hold everything it sends.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use futures_util::Stream;

/// Passes bytes through unchanged, failing with `Overflow` at the first oversized frame header.
pub struct FrameGuard<S> {
    inner: S,
    max_payload: u64,
    header: [u8; 14],
    header_len: usize,
    remaining_payload: u64,
    failed: bool,
}

impl<S> FrameGuard<S> {
    /// Guards `inner`, allowing frames of at most `max_payload` bytes.
    pub fn new(inner: S, max_payload: u64) -> FrameGuard<S> {
        FrameGuard { inner, max_payload, header: [0; 14], header_len: 0, remaining_payload: 0, failed: false }
    }

    /// Follows frame boundaries through `chunk`; false when a frame is too large.
    fn inspect(&mut self, mut chunk: &[u8]) -> bool {
        while !chunk.is_empty() {
            if self.remaining_payload > 0 {
                let skip = self.remaining_payload.min(chunk.len() as u64);
                self.remaining_payload -= skip;
                chunk = &chunk[skip as usize..];
                continue;
            }
            self.header[self.header_len] = chunk[0];
            self.header_len += 1;
            chunk = &chunk[1..];
            if let Some(length) = self.complete_header() {
                if length > self.max_payload {
                    return false;
                }
                self.remaining_payload = length;
                self.header_len = 0;
            }
        }
        true
    }

    /// The payload length once the header is complete.
    fn complete_header(&self) -> Option<u64> {
        if self.header_len < 2 {
            return None;
        }
        let masked = self.header[1] & 0x80 != 0;
        let (extended, length7) = match self.header[1] & 0x7f {
            126 => (2, None),
            127 => (8, None),
            n => (0, Some(u64::from(n))),
        };
        let needed = 2 + extended + if masked { 4 } else { 0 };
        if self.header_len < needed {
            return None;
        }
        Some(length7.unwrap_or_else(|| {
            self.header[2..2 + extended].iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
        }))
    }
}

impl<S: Stream<Item = Result<Bytes, PayloadError>> + Unpin> Stream for FrameGuard<S> {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                if self.inspect(&bytes) {
                    Poll::Ready(Some(Ok(bytes)))
                } else {
                    self.failed = true;
                    Poll::Ready(Some(Err(PayloadError::Overflow)))
                }
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(length: u64) -> Vec<u8> {
        let mut h = vec![0x81];
        match length {
            0..=125 => h.push(0x80 | length as u8),
            126..=0xffff => {
                h.push(0x80 | 126);
                h.extend_from_slice(&(length as u16).to_be_bytes());
            }
            _ => {
                h.push(0x80 | 127);
                h.extend_from_slice(&length.to_be_bytes());
            }
        }
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    }

    #[test]
    fn frames_within_the_limit_pass_even_when_split_byte_by_byte() {
        let mut guard = FrameGuard::new(futures_util::stream::empty::<Result<Bytes, PayloadError>>(), 1000);
        let mut bytes = header(10);
        bytes.extend([0; 10]);
        bytes.extend(header(1000));
        bytes.extend(vec![0; 1000]);
        bytes.extend(header(300));
        for b in &bytes {
            assert!(guard.inspect(std::slice::from_ref(b)));
        }
        assert_eq!(guard.remaining_payload, 300);
    }

    #[test]
    fn an_oversized_header_fails_before_its_payload_arrives() {
        for (case, length) in [("16-bit length", 1001), ("64-bit length", 1 << 30)] {
            let mut guard =
                FrameGuard::new(futures_util::stream::empty::<Result<Bytes, PayloadError>>(), 1000);
            let mut bytes = header(5);
            bytes.extend([0; 5]);
            bytes.extend(header(length));
            assert!(!guard.inspect(&bytes), "{case}");
        }
    }
}
