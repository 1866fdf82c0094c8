//! What a connection may hold before its request is answered: every request body has one
//! deadline however it is framed, a body not read to its end closes the connection after the
//! answer, and plain HTTP connections per client IP are capped.
//!
//! actix-web's request timeout covers the head only; a `Transfer-Encoding: chunked` body that
//! never ends kept its connection open for minutes, and the server, draining a dropped chunked
//! body before the next request, kept it past any answer. So [`guard_bodies`] wraps every body in
//! a stream that fails at [`BODY_DEADLINE`] after the head arrived and notes whether it was read to
//! its end; when it was not (a handler that ignores the body, a 408, a 413), the answer carries
//! `Connection: close` and holds on to the unread body until it is sent: actix-http closes the
//! connection after answering a request whose body is still held, where it would drain one that
//! was dropped.
//!
//! The per-IP cap counts TCP connections from their accept ([`count_connection`], called by the
//! server for each one), by the peer address: a trusted proxy's connections are not counted, as
//! they carry many clients. A connection over the cap is answered 429 and closed; a WebSocket
//! upgrade leaves this cap for the WebSocket one (`SWITCHBOARD_WS_MAX_PER_IP`).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, EitherBody, MessageBody};
use actix_web::dev::{Extensions, Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{Error, HttpMessage, HttpResponse};
use futures_util::Stream;
use ipnet::IpNet;

use super::ip_cap::{IpCap, IpPlace};
use crate::http::error::ApiError;
use crate::seams::limiter::ip_key;

/// How long a whole body may take to arrive once the head has (the head has its own 5 s): a
/// client trickling a body, or announcing one and going silent, cannot hold a connection and
/// its buffer for longer.
pub const BODY_DEADLINE: Duration = Duration::from_secs(10);

/// The place of one plain HTTP connection under its IP's cap, kept with the connection: it is
/// given back when the connection closes, or when it becomes a WebSocket.
struct ConnectionPlace(Cell<Option<IpPlace>>);

/// Marks a connection that came over its IP's cap.
struct OverCap;

/// The per-IP cap of plain HTTP connections, and who is exempt from it.
#[derive(Clone)]
pub struct ConnectionCap {
    cap: Arc<IpCap>,
    trusted_proxies: Arc<[IpNet]>,
}

impl ConnectionCap {
    /// At most `max` connections per client IP; `trusted_proxies` are not counted.
    pub fn new(max: usize, trusted_proxies: &[IpNet]) -> ConnectionCap {
        ConnectionCap { cap: Arc::new(IpCap::new(max)), trusted_proxies: trusted_proxies.into() }
    }

    /// Counts a new connection (for `HttpServer::on_connect`): its place goes into the
    /// connection's data, or the mark that it is over the cap.
    pub fn count_connection(&self, connection: &dyn Any, data: &mut Extensions) {
        let Some(peer) = connection
            .downcast_ref::<actix_web::rt::net::TcpStream>()
            .and_then(|stream| stream.peer_addr().ok())
        else {
            return;
        };
        let ip = super::client_ip::canonical(peer.ip());
        if self.is_trusted(ip) {
            return;
        }
        match self.cap.reserve(ip_key(ip)) {
            Some(place) => {
                data.insert(ConnectionPlace(Cell::new(Some(place))));
            }
            None => {
                data.insert(OverCap);
            }
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}

/// Middleware (wrap with `actix_web::middleware::from_fn`, outermost but for metrics): refuses a
/// connection over its IP's cap, gives every body its deadline, and closes a connection whose body
/// was not read to its end.
pub async fn guard_bodies(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<HeldBody<impl MessageBody>>>, Error> {
    if req.conn_data::<OverCap>().is_some() {
        crate::metrics::record_rate_limited("http_per_ip");
        let mut response = HttpResponse::from_error(ApiError::RateLimited { retry_after_secs: 5 });
        response.head_mut().set_connection_type(ConnectionType::Close);
        return Ok(req.into_response(response).map_into_right_body());
    }
    if req.head().upgrade() {
        let response = next.call(req).await?;
        if response.status() == actix_web::http::StatusCode::SWITCHING_PROTOCOLS {
            // The connection became a WebSocket, counted by the WebSocket cap from here on.
            if let Some(place) = response.request().conn_data::<ConnectionPlace>() {
                drop(place.0.take());
            }
        }
        return Ok(response.map_body(|_, body| HeldBody { body, unread: None }).map_into_left_body());
    }
    if !has_body(&req) {
        return Ok(next
            .call(req)
            .await?
            .map_body(|_, body| HeldBody { body, unread: None })
            .map_into_left_body());
    }
    let finished = Rc::new(Cell::new(false));
    let body = Rc::new(RefCell::new(req.take_payload()));
    let guarded = Deadline {
        body: body.clone(),
        deadline: Box::pin(tokio::time::sleep(BODY_DEADLINE)),
        finished: finished.clone(),
    };
    let boxed: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(guarded);
    req.set_payload(Payload::from(boxed));
    let mut response = next.call(req).await?;
    let unread = if finished.get() {
        None
    } else {
        // Whatever is left of the body would have to be read before the next request: end the
        // connection with this answer instead, holding the body until the answer is sent.
        response.response_mut().head_mut().set_connection_type(ConnectionType::Close);
        Some(body)
    };
    Ok(response.map_body(|_, body| HeldBody { body, unread }).map_into_left_body())
}

pin_project_lite::pin_project! {
    /// An answer's body that holds on to the unread rest of its request's body until the answer
    /// has been sent (see the module's docs).
    pub struct HeldBody<B> {
        #[pin]
        body: B,
        unread: Option<Rc<RefCell<Payload>>>,
    }
}

impl<B: MessageBody> MessageBody for HeldBody<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        self.project().body.poll_next(cx)
    }
}

/// Whether the request announces a body (a transfer coding, or a length that is not zero).
fn has_body(req: &ServiceRequest) -> bool {
    let headers = req.headers();
    if headers.contains_key("transfer-encoding") {
        return true;
    }
    match headers.get("content-length") {
        None => false,
        Some(length) => length.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()) != Some(0),
    }
}

/// A body that fails once its deadline passes and notes whether it was read to its end.
struct Deadline {
    body: Rc<RefCell<Payload>>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    finished: Rc<Cell<bool>>,
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished.get() {
            return Poll::Ready(None);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            let late = std::io::Error::new(std::io::ErrorKind::TimedOut, "request body deadline passed");
            return Poll::Ready(Some(Err(PayloadError::Io(late))));
        }
        let next = Pin::new(&mut *self.body.borrow_mut()).poll_next(cx);
        if let Poll::Ready(None) = next {
            self.finished.set(true);
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn a_body_is_announced_by_a_positive_length_or_a_transfer_coding() {
        let cases = [
            ("no header", TestRequest::post(), false),
            ("length 0", TestRequest::post().insert_header(("content-length", "0")), false),
            ("length 5", TestRequest::post().insert_header(("content-length", "5")), true),
            ("bad length", TestRequest::post().insert_header(("content-length", "x")), true),
            ("chunked", TestRequest::post().insert_header(("transfer-encoding", "chunked")), true),
        ];
        for (case, request, expected) in cases {
            assert_eq!(has_body(&request.to_srv_request()), expected, "{case}");
        }
    }
}
