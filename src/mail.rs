//! Outgoing mail.
//!
//! With `SMTP_URL` set, messages go through lettre's pooled async SMTP transport. The URL is
//! lettre's connection URL, read by lettre itself ([`SmtpServer::from_url`]):
//!
//! * `smtp://host[:port]` (default port 25) is **plain SMTP without TLS**, meant for a relay on
//!   the same host or a trusted network (a local Postfix, a mail-catcher in tests). Mail and any
//!   credentials cross the network in clear text, so do not point it at a server across the
//!   internet.
//! * `smtp://host[:port]?tls=required` (default port 587) upgrades with STARTTLS and refuses to go
//!   on without it (`tls=opportunistic` upgrades when offered).
//! * `smtps://host[:port]` (default port 465) speaks TLS from the first byte.
//!
//! TLS is rustls with the webpki root certificates (no OpenSSL). `user:password@` before the
//! host (percent-encoded) logs in with AUTH PLAIN or LOGIN.
//!
//! Without `SMTP_URL`, messages are written to `<data-dir>/outbox/` as `.eml` files.
//!
//! Either way a failure is logged and never reaches the requester, and nothing here logs a
//! message body (it may hold a reset token), a recipient or the SMTP password.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::AsyncSmtpTransportBuilder;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use time::format_description::well_known::Rfc2822;

/// How long one SMTP command (connect, each reply) may take before the send is given up.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends mail the configured way.
#[derive(Clone)]
pub struct Mailer {
    from: Mailbox,
    delivery: Delivery,
}

#[derive(Clone)]
enum Delivery {
    /// `.eml` files in this directory.
    Outbox(PathBuf),
    /// An SMTP server; `server` names it for logs (scheme, host and port, never credentials).
    Smtp { transport: Arc<PooledTransport>, server: String },
}

/// lettre's pooled transport, dropped inside the runtime it was built in.
///
/// Dropping the pool spawns a clean-up task with `tokio::spawn`, which panics on a thread with no
/// runtime; the last `AppState` is often dropped on such a thread (at shutdown, at the end of a
/// test). Entering the build-time runtime's handle makes that spawn harmless: it runs there, or
/// is discarded if that runtime has already stopped.
struct PooledTransport {
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    runtime: Option<tokio::runtime::Handle>,
}

impl Drop for PooledTransport {
    fn drop(&mut self) {
        let _entered = match tokio::runtime::Handle::try_current() {
            Ok(_) => None,
            Err(_) => self.runtime.as_ref().map(tokio::runtime::Handle::enter),
        };
        drop(self.transport.take());
    }
}

impl Mailer {
    /// Mail from `from`, through `smtp` when given, else written to the `outbox` directory.
    /// Call it inside the Tokio runtime (as `Application::build` does): the SMTP pool starts its
    /// clean-up task there.
    pub fn new(from: Mailbox, smtp: Option<SmtpServer>, outbox: PathBuf) -> Mailer {
        let delivery = match smtp {
            None => Delivery::Outbox(outbox),
            Some(SmtpServer { builder, name }) => {
                let transport = PooledTransport {
                    transport: Some(builder.timeout(Some(SMTP_TIMEOUT)).build()),
                    runtime: tokio::runtime::Handle::try_current().ok(),
                };
                Delivery::Smtp { transport: Arc::new(transport), server: name }
            }
        };
        Mailer { from, delivery }
    }

    /// Delivers one plain-text message; failures are logged, never shown to the requester.
    pub async fn send(&self, to: &str, subject: &str, body: &str) {
        match &self.delivery {
            Delivery::Outbox(outbox) => self.write_to_outbox(outbox, to, subject, body).await,
            Delivery::Smtp { transport, server } => {
                let message = match self.message(to, subject, body) {
                    Ok(message) => message,
                    Err(e) => {
                        tracing::error!(error = %e, subject, "could not build a mail");
                        return;
                    }
                };
                let Some(transport) = &transport.transport else { return };
                match transport.send(message).await {
                    Ok(_) => tracing::info!(server = %server, subject, "mail sent over SMTP"),
                    // lettre's errors carry the server's reply, never the message.
                    Err(e) => tracing::error!(server = %server, subject, error = %e, "could not send mail"),
                }
            }
        }
    }

    /// The message for SMTP: From, To, Subject, Date, Message-ID and a text/plain body.
    fn message(&self, to: &str, subject: &str, body: &str) -> Result<Message, String> {
        let to: Mailbox = to.parse().map_err(|e| format!("recipient address: {e}"))?;
        let id = format!("<{}@{}>", uuid::Uuid::new_v4().simple(), self.from.email.domain());
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .date_now()
            .message_id(Some(id))
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_owned())
            .map_err(|e| e.to_string())
    }

    async fn write_to_outbox(&self, outbox: &PathBuf, to: &str, subject: &str, body: &str) {
        let now = crate::store::now();
        let date = now.format(&Rfc2822).unwrap_or_default();
        let id = format!("<{}@{}>", uuid::Uuid::new_v4().simple(), self.from.email.domain());
        let message = format!(
            "From: {}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\nMessage-ID: {id}\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}",
            self.from,
            body.replace('\n', "\r\n")
        );
        let name = format!("{}-{}.eml", now.unix_timestamp_nanos(), uuid::Uuid::new_v4());
        let path = outbox.join(&name);
        // Written beside the outbox and renamed into it, so a reader never sees half a mail.
        let partial = outbox.with_file_name(format!(".outbox-{name}.partial"));
        let written = async {
            tokio::fs::create_dir_all(outbox).await?;
            tokio::fs::write(&partial, message).await?;
            tokio::fs::rename(&partial, &path).await
        };
        match written.await {
            Ok(()) => tracing::info!(path = %path.display(), subject, "mail written to the outbox"),
            Err(e) => tracing::error!(error = %e, "could not write mail to the outbox"),
        }
    }
}

/// An SMTP server from `SMTP_URL`: lettre's transport builder, and a name for logs (scheme,
/// host and port; never the credentials). `Debug` shows the name only.
#[derive(Clone)]
pub struct SmtpServer {
    builder: AsyncSmtpTransportBuilder,
    name: String,
}

impl SmtpServer {
    /// Reads a connection URL with lettre. The error never repeats the URL (it may hold a password).
    pub fn from_url(url: &str) -> Result<SmtpServer, String> {
        let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url).map_err(|e| e.to_string())?;
        // lettre takes the URL apart with the `url` crate; so does the name, the same way.
        let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
        let starttls = parsed.query_pairs().any(|(k, v)| k == "tls" && v == "required");
        let port = match (parsed.port(), parsed.scheme(), starttls) {
            (Some(0), ..) => return Err("the port must be a number from 1 to 65535".into()),
            (Some(port), ..) => port,
            (None, "smtps", _) => 465,
            (None, _, true) => 587,
            (None, ..) => 25,
        };
        let host = parsed.host_str().unwrap_or_default();
        let tls = if starttls { " (STARTTLS)" } else { "" };
        Ok(SmtpServer { builder, name: format!("{}://{host}:{port}{tls}", parsed.scheme()) })
    }
}

impl fmt::Debug for SmtpServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl fmt::Display for SmtpServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_are_read_by_lettre_and_named_without_credentials() {
        for (url, name) in [
            ("smtp://127.0.0.1:2525", "smtp://127.0.0.1:2525"),
            ("smtp://mail.example", "smtp://mail.example:25"),
            ("smtp://mail.example?tls=required", "smtp://mail.example:587 (STARTTLS)"),
            ("smtps://u%40x:p%3Ass%25@mail.example", "smtps://mail.example:465"),
            ("smtp://mailer:hunter2-secret@[::1]:2525", "smtp://[::1]:2525"),
        ] {
            let server = SmtpServer::from_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(server.to_string(), name, "{url}");
            assert_eq!(format!("{server:?}"), name, "{url}: Debug shows the name only");
        }
    }

    #[test]
    fn bad_smtp_urls_are_refused_without_repeating_the_password() {
        for url in [
            "http://mail.example",
            "mail.example:25",
            "smtp://",
            "smtp://user:secret@mail.example:0",
            "smtp://user:secret@mail.example:99999",
            "smtp://mail.example:port",
            "smtp://mail.example?tls=maybe",
            "smtp://[::1:25",
        ] {
            let err = SmtpServer::from_url(url).expect_err(url);
            assert!(!err.contains("secret"), "{url}: {err}");
        }
    }
}
