//! Outgoing mail. Without `SMTP_URL`, messages are written to `<data-dir>/outbox/` as `.eml`
//! files (and logged without their body, which holds the reset token).

use std::path::PathBuf;

use time::format_description::well_known::Rfc2822;

/// Sends mail the configured way.
#[derive(Clone)]
pub struct Mailer {
    outbox: PathBuf,
    from: String,
}

impl Mailer {
    /// A mailer writing to `outbox`.
    pub fn new(outbox: PathBuf, from: String) -> Mailer {
        Mailer { outbox, from }
    }

    /// Delivers one plain-text message; failures are logged, never shown to the requester.
    pub async fn send(&self, to: &str, subject: &str, body: &str) {
        let now = crate::store::now();
        let date = now.format(&Rfc2822).unwrap_or_default();
        let message = format!(
            "From: {}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n{}",
            self.from,
            body.replace('\n', "\r\n")
        );
        let name = format!("{}-{}.eml", now.unix_timestamp_nanos(), uuid::Uuid::new_v4());
        let path = self.outbox.join(name);
        let written = async {
            tokio::fs::create_dir_all(&self.outbox).await?;
            tokio::fs::write(&path, message).await
        };
        match written.await {
            Ok(()) => tracing::info!(path = %path.display(), subject, "mail written to the outbox"),
            Err(e) => tracing::error!(error = %e, "could not write mail to the outbox"),
        }
    }
}
