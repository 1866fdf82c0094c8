//! Outgoing mail.
//!
//! With `SMTP_URL` set, messages go through lettre's pooled async SMTP transport:
//!
//! * `smtp://host[:port]` (default port 25) is **plain SMTP without TLS**, meant for a relay on
//!   the same host or a trusted network (a local Postfix, a mail-catcher in tests). Mail and any
//!   credentials cross the network in clear text, so do not point it at a server across the
//!   internet.
//! * `smtp://host[:port]?tls=starttls` (default port 587) upgrades with STARTTLS and refuses to go
//!   on without it (`tls=required` is accepted as a synonym).
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
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use time::format_description::well_known::Rfc2822;

use crate::config::Config;

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
    /// The mailer `config` asks for: SMTP when `SMTP_URL` is set, else the outbox in the data dir.
    /// The error names the setting that is unusable (without its value: it may hold a password).
    /// Call it inside the Tokio runtime (as `Application::build` does): the SMTP pool starts its
    /// clean-up task there.
    pub fn new(config: &Config) -> Result<Mailer, String> {
        let from = parse_sender(&config.smtp_from).map_err(|e| format!("SMTP_FROM: {e}"))?;
        let delivery = match &config.smtp_url {
            None => Delivery::Outbox(config.data_dir.join("outbox")),
            Some(url) => {
                let settings = SmtpSettings::parse(url).map_err(|e| format!("SMTP_URL: {e}"))?;
                let transport = PooledTransport {
                    transport: Some(settings.transport().map_err(|e| format!("SMTP_URL: {e}"))?),
                    runtime: tokio::runtime::Handle::try_current().ok(),
                };
                Delivery::Smtp { transport: Arc::new(transport), server: settings.to_string() }
            }
        };
        Ok(Mailer { from, delivery })
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

/// Parses `SMTP_FROM` (`Name <address>` or a bare address) as a mailbox.
pub fn parse_sender(value: &str) -> Result<Mailbox, String> {
    value.trim().parse::<Mailbox>().map_err(|e| format!("{value:?} is not a mail address ({e})"))
}

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// No TLS at all (`smtp://`): for a relay on a trusted network only.
    Plain,
    /// STARTTLS, required (`smtp://…?tls=starttls`).
    StartTls,
    /// TLS from the first byte (`smtps://`).
    ImplicitTls,
}

/// `SMTP_URL` taken apart. `Debug` and `Display` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    /// Host name or IP address (without brackets for IPv6).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Plain, STARTTLS or implicit TLS.
    pub security: SmtpSecurity,
    /// User name and password, percent-decoded.
    pub credentials: Option<(String, String)>,
}

impl SmtpSettings {
    /// Parses `smtp://[user:password@]host[:port][?tls=starttls]` or
    /// `smtps://[user:password@]host[:port]`. Errors never repeat the URL (it may hold a password).
    pub fn parse(url: &str) -> Result<SmtpSettings, String> {
        let url = url.trim();
        let (scheme, rest) = url.split_once("://").ok_or("must start with smtp:// or smtps://")?;
        let implicit_tls = match scheme.to_ascii_lowercase().as_str() {
            "smtp" => false,
            "smtps" => true,
            _ => return Err("must start with smtp:// or smtps://".into()),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('#') {
            return Err("must be scheme://[user:password@]host[:port] with no path".into());
        }
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, rest),
        };
        let credentials = match userinfo {
            None => None,
            Some(userinfo) => {
                let (user, password) = userinfo.split_once(':').ok_or("credentials must be user:password")?;
                let user = percent_decode(user).ok_or("the user name is not valid percent-encoding")?;
                let password =
                    percent_decode(password).ok_or("the password is not valid percent-encoding")?;
                if user.is_empty() {
                    return Err("the user name is empty".into());
                }
                Some((user, password))
            }
        };
        let mut security = if implicit_tls { SmtpSecurity::ImplicitTls } else { SmtpSecurity::Plain };
        for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("tls", "starttls" | "required")) if !implicit_tls => security = SmtpSecurity::StartTls,
                Some(("tls", _)) if implicit_tls => {
                    return Err("smtps:// is TLS already; tls= applies to smtp:// only".into());
                }
                Some(("tls", _)) => return Err("tls= must be starttls".into()),
                _ => return Err("the only query parameter is tls=starttls".into()),
            }
        }
        let (host, port) = split_host_port(hostport)?;
        let port = port.unwrap_or(match security {
            SmtpSecurity::Plain => 25,
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::ImplicitTls => 465,
        });
        Ok(SmtpSettings { host, port, security, credentials })
    }

    /// The pooled async transport for these settings.
    pub fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
        let tls = || TlsParameters::new(self.host.clone()).map_err(|e| format!("TLS set-up: {e}"));
        let builder = match self.security {
            // Plain SMTP, deliberately: see the module documentation.
            SmtpSecurity::Plain => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host),
            SmtpSecurity::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host).tls(Tls::Required(tls()?))
            }
            SmtpSecurity::ImplicitTls => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host).tls(Tls::Wrapper(tls()?))
            }
        };
        let builder = builder.port(self.port).timeout(Some(SMTP_TIMEOUT));
        let builder = match &self.credentials {
            Some((user, password)) => builder.credentials(Credentials::new(user.clone(), password.clone())),
            None => builder,
        };
        Ok(builder.build())
    }
}

impl fmt::Display for SmtpSettings {
    /// `smtp://host:port`, with ` (STARTTLS)` when upgraded; never the credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.security == SmtpSecurity::ImplicitTls { "smtps" } else { "smtp" };
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        write!(f, "{scheme}://{host}:{}", self.port)?;
        if self.security == SmtpSecurity::StartTls {
            f.write_str(" (STARTTLS)")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .finish_non_exhaustive()
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(value: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("an IPv6 host needs its closing ]")?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or("unexpected text after the IPv6 host")?)),
        }
    } else {
        match value.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (value, None),
        }
    };
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '@' || c == '[' || c == ']') {
        return Err("the host is missing or malformed".into());
    }
    let port = match port {
        None => None,
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port != 0 => Some(port),
            _ => return Err("the port must be a number from 1 to 65535".into()),
        },
    };
    Ok((host.to_owned(), port))
}

/// Decodes `%XX` escapes; `None` for a broken escape or bytes that are not UTF-8.
fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> SmtpSettings {
        SmtpSettings::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn smtp_urls_give_host_port_security_and_credentials() {
        let plain = parse("smtp://127.0.0.1:2525");
        assert_eq!(
            (plain.host.as_str(), plain.port, plain.security),
            ("127.0.0.1", 2525, SmtpSecurity::Plain)
        );
        assert_eq!(plain.credentials, None);
        assert_eq!(parse("smtp://mail.example").port, 25);
        assert_eq!(parse("smtp://mail.example/").port, 25);

        let starttls = parse("smtp://mail.example?tls=starttls");
        assert_eq!((starttls.port, starttls.security), (587, SmtpSecurity::StartTls));
        assert_eq!(parse("smtp://mail.example:2587?tls=required").security, SmtpSecurity::StartTls);

        let implicit = parse("smtps://u%40x:p%3Ass%25@mail.example");
        assert_eq!((implicit.port, implicit.security), (465, SmtpSecurity::ImplicitTls));
        assert_eq!(implicit.credentials, Some(("u@x".to_owned(), "p:ss%".to_owned())));

        let v6 = parse("smtp://[::1]:2525");
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 2525));
        assert_eq!(v6.to_string(), "smtp://[::1]:2525");
    }

    #[test]
    fn bad_smtp_urls_are_refused_without_repeating_the_password() {
        for url in [
            "http://mail.example",
            "mail.example:25",
            "smtp://",
            "smtp://mail.example:0",
            "smtp://mail.example:99999",
            "smtp://mail.example:port",
            "smtp://mail.example/path",
            "smtp://mail.example?tls=maybe",
            "smtp://mail.example?foo=bar",
            "smtps://mail.example?tls=starttls",
            "smtp://user@mail.example",
            "smtp://user:secret%zz@mail.example",
            "smtp://[::1:25",
        ] {
            let err = SmtpSettings::parse(url).expect_err(url);
            assert!(!err.contains("secret") && !err.contains("mail.example"), "{url}: {err}");
        }
    }

    #[test]
    fn display_and_debug_never_show_the_password() {
        let settings = parse("smtp://mailer:hunter2-secret@127.0.0.1:2525?tls=starttls");
        assert_eq!(settings.to_string(), "smtp://127.0.0.1:2525 (STARTTLS)");
        let debug = format!("{settings:?}");
        assert!(debug.contains("mailer") && !debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn the_sender_must_be_a_mailbox() {
        let from = parse_sender("Switchboard <no-reply@switchboard.local>").unwrap();
        assert_eq!(from.email.to_string(), "no-reply@switchboard.local");
        assert!(parse_sender("no-reply@switchboard.local").is_ok());
        for bad in ["", "switchboard", "Switchboard <no-reply>", "a@b\r\nBcc: x@y", "<@>"] {
            assert!(parse_sender(bad).is_err(), "{bad:?} accepted");
        }
    }
}
