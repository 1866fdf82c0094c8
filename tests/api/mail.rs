//! Password-reset mail over real SMTP: each test starts an SMTP server of its own
//! (`support::smtp`, aiosmtpd) and reads the messages it received.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchboard::config::Config;
use tempfile::TempDir;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use crate::support::app::{PASSWORD, TestApp, reset_token_from_mail, spawn_app_with, unique_email};
use crate::support::free_port;
use crate::support::process::{ServerProcess, run_server_to_exit};
use crate::support::smtp::{Delivered, SmtpSink};
use crate::support::store::store_env;

const PUBLIC_URL: &str = "https://switchboard.example";
const FROM: &str = "Switchboard Test <mailer@switchboard.example>";
const FROM_ADDRESS: &str = "mailer@switchboard.example";
const NEW_PASSWORD: &str = "amber-compass-meadow-77";

/// A server that sends its mail to `smtp_url`, with links from [`PUBLIC_URL`].
async fn spawn_app_mailing_to(smtp_url: &str) -> TestApp {
    spawn_app_with(&["--smtp-url", smtp_url, "--smtp-from", FROM, "--public-url", PUBLIC_URL]).await
}

/// The messages the sink received before a fence: waits for `count` messages, then has a reset
/// mailed to a new user and waits for that one. Each request starts its send as it is answered,
/// so a second message from the requests before (a duplicate, a stray) was under way before the
/// fence was even asked for and has had all the time the fence took; returns the messages the
/// sink holds besides the fence's.
async fn delivered_with_fence(app: &TestApp, sink: &SmtpSink, count: usize) -> Vec<Delivered> {
    sink.wait_for(count).await;
    let fence = app.register_user().await;
    assert_eq!(forgot(app, &fence.email).await.status(), StatusCode::ACCEPTED, "the fence request");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut messages = sink.messages();
        if messages.iter().any(|m| m.rcpt_tos == [fence.email.clone()]) {
            messages.retain(|m| m.rcpt_tos != [fence.email.clone()]);
            return messages;
        }
        assert!(std::time::Instant::now() < deadline, "the fence mail never came: {messages:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn forgot(app: &TestApp, email: &str) -> reqwest::Response {
    app.post_json("/api/password/forgot", &json!({"email": email})).await
}

/// The environment of a server process that mails through `smtp_url` and logs JSON, on the store
/// under test.
fn smtp_env(smtp_url: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> =
        [("SMTP_URL", smtp_url), ("SMTP_FROM", FROM), ("SWITCHBOARD_LOG_FORMAT", "json")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
    env.extend(store_env());
    env
}

fn assert_outbox_unused(app: &TestApp) {
    let outbox = app.data_dir.path().join("outbox");
    assert!(
        !outbox.exists(),
        "nothing is written to {} when SMTP is set: {:?}",
        outbox.display(),
        app.outbox()
    );
}

// ---------------------------------------------------------------- delivery

#[actix_web::test]
async fn forgot_delivers_one_message_over_smtp_with_a_link_from_the_public_url() {
    let sink = SmtpSink::start();
    let app = spawn_app_mailing_to(&sink.url()).await;
    let user = app.register_user().await;

    let response = app
        .request(Method::POST, "/api/password/forgot")
        .header("Host", "evil.example")
        .header("X-Forwarded-Host", "evil.example")
        .header("X-Forwarded-Proto", "http")
        .header("Forwarded", "host=evil.example;proto=http")
        .json(&json!({"email": user.email}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let messages = delivered_with_fence(&app, &sink, 1).await;
    assert_eq!(messages.len(), 1, "exactly one message: {messages:#?}");
    let mail = &messages[0];
    assert_eq!(mail.mail_from, FROM_ADDRESS, "envelope sender is SMTP_FROM");
    assert_eq!(mail.rcpt_tos, vec![user.email.clone()], "envelope recipient is the user");
    let from = mail.header("From").expect("From header");
    assert!(from.contains(FROM_ADDRESS) && from.contains("Switchboard Test"), "From is SMTP_FROM: {from:?}");
    assert_eq!(mail.header("To"), Some(user.email.as_str()), "To is the user");
    assert!(mail.header("Subject").is_some_and(|s| s.contains("password")), "a subject: {:?}", mail.headers);
    let id = mail.header("Message-ID").expect("Message-ID header");
    assert!(id.starts_with('<') && id.ends_with("@switchboard.example>"), "Message-ID {id:?}");
    let date = mail.header("Date").expect("Date header");
    let date = OffsetDateTime::parse(date, &Rfc2822).unwrap_or_else(|e| panic!("Date {date:?}: {e}"));
    assert!((OffsetDateTime::now_utc() - date).abs() < time::Duration::minutes(5), "Date is now: {date}");
    assert!(mail.header("Content-Type").is_some_and(|t| t.starts_with("text/plain")), "{:?}", mail.headers);

    let text = mail.text();
    let token = reset_token_from_mail(text);
    assert_eq!(token.len(), 43, "a 32-byte token: {token:?}");
    let link = format!("{PUBLIC_URL}/reset-password?token={token}");
    assert!(text.contains(&link), "the link {link} in:\n{text}");
    assert_eq!(text.matches("token=").count(), 1, "one link:\n{text}");
    assert!(!mail.content.contains("evil.example"), "no trace of the request's Host in:\n{}", mail.content);
    assert_outbox_unused(&app);
}

#[actix_web::test]
async fn the_mailed_token_resets_the_password_and_a_notice_without_a_token_follows() {
    let sink = SmtpSink::start();
    let app = spawn_app_mailing_to(&sink.url()).await;
    // A name outside ASCII, so the body goes out quoted-printable and is decoded by the reader.
    let email = unique_email();
    let register = json!({"email": email, "password": PASSWORD, "first_name": "Zoë", "last_name": "Ødegård"});
    assert_eq!(app.post_json("/api/register", &register).await.status(), StatusCode::CREATED);
    assert_eq!(forgot(&app, &email).await.status(), StatusCode::ACCEPTED);
    let reset_mail = &sink.wait_for(1).await[0];
    assert!(reset_mail.text().contains("Hello Zoë"), "decoded greeting in:\n{}", reset_mail.text());
    let token = reset_token_from_mail(reset_mail.text());

    let reset =
        app.post_json("/api/password/reset", &json!({"token": token, "new_password": NEW_PASSWORD})).await;

    assert_eq!(reset.status(), StatusCode::NO_CONTENT, "the token from the delivered mail works");
    let messages = delivered_with_fence(&app, &sink, 2).await;
    assert_eq!(messages.len(), 2, "one reset mail and one notice: {messages:#?}");
    let notice = &messages[1];
    assert_eq!(notice.rcpt_tos, vec![email.clone()], "the notice goes to the user");
    assert_eq!(notice.mail_from, FROM_ADDRESS);
    assert_eq!(notice.header("To"), Some(email.as_str()));
    assert!(notice.header("Message-ID").is_some() && notice.header("Date").is_some(), "{:?}", notice.headers);
    assert_ne!(notice.header("Subject"), reset_mail.header("Subject"), "a subject of its own");
    let text = notice.text();
    assert!(text.contains("password") && text.contains("changed"), "says what happened:\n{text}");
    assert!(text.contains("wasn't you"), "says what to do if it was not the user:\n{text}");
    for (what, needle) in [("the token", token.as_str()), ("a token link", "token="), ("a token", "token")] {
        assert!(!notice.content.contains(needle), "no {what} in the notice:\n{}", notice.content);
        assert!(!text.contains(needle), "no {what} in the notice:\n{text}");
    }
    assert_eq!(app.post_login(&email, NEW_PASSWORD).await.status(), StatusCode::OK, "new password");
    assert_eq!(app.post_login(&email, PASSWORD).await.status(), StatusCode::UNAUTHORIZED, "old password");
    let again =
        app.post_json("/api/password/reset", &json!({"token": token, "new_password": PASSWORD})).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST, "the mailed token is single use");
    assert_outbox_unused(&app);
}

#[actix_web::test]
async fn forgot_for_an_unknown_email_sends_nothing_over_smtp() {
    let sink = SmtpSink::start();
    let app = spawn_app_mailing_to(&sink.url()).await;
    let user = app.register_user().await;

    let response = forgot(&app, &unique_email()).await;

    assert_eq!(response.status(), StatusCode::ACCEPTED);
    // The same server delivers for a known address asked after it, so the silence means something.
    assert_eq!(forgot(&app, &user.email).await.status(), StatusCode::ACCEPTED);
    let messages = sink.wait_for(1).await;
    let recipients: Vec<&Vec<String>> = messages.iter().map(|m| &m.rcpt_tos).collect();
    assert_eq!(recipients, [&vec![user.email.clone()]], "only the known address got mail");
    assert_outbox_unused(&app);
}

#[actix_web::test]
async fn a_server_that_requires_login_gets_the_credentials_from_smtp_url() {
    let sink = SmtpSink::start_with(Some("mailer:p@ss:word"));
    let url = format!("smtp://mailer:p%40ss%3Aword@127.0.0.1:{}", sink.port);
    let app = spawn_app_mailing_to(&url).await;
    let user = app.register_user().await;

    assert_eq!(forgot(&app, &user.email).await.status(), StatusCode::ACCEPTED);

    let messages = sink.wait_for(1).await;
    assert_eq!(messages[0].auth_login.as_deref(), Some("mailer"), "logged in with the percent-decoded user");
    assert_eq!(messages[0].rcpt_tos, vec![user.email.clone()]);
}

// ---------------------------------------------------------------- failures

#[actix_web::test]
async fn a_down_smtp_server_changes_nothing_for_the_requester() {
    // A port with nothing listening: every connection is refused. The real binary, so that its
    // log shows when the send has failed.
    let data_dir = TempDir::new().unwrap();
    let server =
        ServerProcess::start(data_dir.path(), &smtp_env(&format!("smtp://127.0.0.1:{}", free_port()))).await;
    let email = unique_email();
    server.register(&email).await;

    let known = server.post("/api/password/forgot", &json!({"email": email})).await;
    let unknown = server.post("/api/password/forgot", &json!({"email": unique_email()})).await;

    assert_eq!(known.status(), StatusCode::ACCEPTED, "known email");
    assert_eq!(unknown.status(), StatusCode::ACCEPTED, "unknown email");
    assert_eq!(known.bytes().await.unwrap(), unknown.bytes().await.unwrap(), "the same body");
    server.wait_for_log("could not send mail").await;
    assert_eq!(server.status_of("/healthz").await, StatusCode::OK, "the server keeps working");
    assert!(server.login(&email).await.is_ok(), "login still works");
    let again = server.post("/api/password/forgot", &json!({"email": email})).await;
    assert_eq!(again.status(), StatusCode::ACCEPTED, "forgot still answers");
    assert!(!data_dir.path().join("outbox").exists(), "nothing falls back to the outbox");
}

#[actix_web::test]
async fn a_wrong_smtp_password_is_only_logged() {
    let sink = SmtpSink::start_with(Some("mailer:right-password"));
    let data_dir = TempDir::new().unwrap();
    let server = ServerProcess::start(
        data_dir.path(),
        &smtp_env(&format!("smtp://mailer:wrong-password@127.0.0.1:{}", sink.port)),
    )
    .await;
    let email = unique_email();
    server.register(&email).await;

    let response = server.post("/api/password/forgot", &json!({"email": email})).await;

    assert_eq!(response.status(), StatusCode::ACCEPTED, "the requester is told nothing");
    server.wait_for_log("could not send mail").await;
    let log = server.output();
    let line = log.lines().find(|l| l.contains("could not send mail")).unwrap();
    let line: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("a JSON log line ({e}): {line}"));
    assert_eq!(line["level"], "ERROR", "{line}");
    assert!(line["error"].as_str().is_some_and(|e| !e.is_empty()), "the cause is logged: {line}");
    assert!(!log.contains("wrong-password"), "the password is not in the log:\n{log}");
    assert!(sink.messages().is_empty(), "refused by the SMTP server: {:#?}", sink.messages());
    assert!(!data_dir.path().join("outbox").exists(), "nothing falls back to the outbox");
    assert!(server.login(&email).await.is_ok(), "the server keeps working");
}

// ---------------------------------------------------------------- the binary: settings and logs

#[actix_web::test]
async fn the_log_never_holds_the_reset_token_or_the_smtp_password() {
    let sink = SmtpSink::start_with(Some("mailer:smtp-secret-in-url"));
    let smtp_url = format!("smtp://mailer:smtp-secret-in-url@127.0.0.1:{}", sink.port);
    let server = ServerProcess::start_in_fresh_data_dir(&[
        ("SMTP_URL", &smtp_url),
        ("SMTP_FROM", FROM),
        ("SWITCHBOARD_PUBLIC_URL", PUBLIC_URL),
        ("SWITCHBOARD_LOG_FORMAT", "json"),
    ])
    .await;
    let email = unique_email();
    let register =
        json!({"email": email, "password": PASSWORD, "first_name": "Ada", "last_name": "Lovelace"});
    assert_eq!(server.post("/api/register", &register).await.status(), StatusCode::CREATED);

    assert_eq!(
        server.post("/api/password/forgot", &json!({"email": email})).await.status(),
        StatusCode::ACCEPTED
    );
    let token = reset_token_from_mail(sink.wait_for(1).await[0].text());
    let reset = json!({"token": token, "new_password": NEW_PASSWORD});
    assert_eq!(server.post("/api/password/reset", &reset).await.status(), StatusCode::NO_CONTENT);
    sink.wait_for(2).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while server.output().matches("mail sent over SMTP").count() < 2 {
        assert!(std::time::Instant::now() < deadline, "both sends are logged:\n{}", server.output());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let log = server.output();
    for (what, needle) in [
        ("the reset token", token.as_str()),
        ("a reset link", "reset-password?token"),
        ("the SMTP password", "smtp-secret-in-url"),
    ] {
        assert!(!log.contains(needle), "{what} ({needle}) is in the log:\n{log}");
    }
}

#[actix_web::test]
async fn a_failed_send_is_logged_without_the_token() {
    let server = ServerProcess::start_in_fresh_data_dir(&[
        ("SMTP_URL", &format!("smtp://127.0.0.1:{}", free_port())),
        ("SMTP_FROM", FROM),
        ("SWITCHBOARD_LOG_FORMAT", "json"),
    ])
    .await;
    let email = unique_email();
    let register =
        json!({"email": email, "password": PASSWORD, "first_name": "Ada", "last_name": "Lovelace"});
    assert_eq!(server.post("/api/register", &register).await.status(), StatusCode::CREATED);

    assert_eq!(
        server.post("/api/password/forgot", &json!({"email": email})).await.status(),
        StatusCode::ACCEPTED
    );

    server.wait_for_log("could not send mail").await;
    let log = server.output();
    let line = log.lines().find(|l| l.contains("could not send mail")).unwrap();
    let line: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("a JSON log line ({e}): {line}"));
    assert_eq!(line["level"], "ERROR", "{line}");
    assert!(line["error"].as_str().is_some_and(|e| !e.is_empty()), "the cause is logged: {line}");
    assert!(!log.contains("token="), "no token in the log:\n{log}");
    let health = server.client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK, "the server keeps working");
}

#[actix_web::test]
async fn bad_mail_settings_stop_start_up_with_exit_2_naming_the_setting() {
    for (case, env, name) in [
        ("SMTP_FROM without a domain", [("SMTP_FROM", "Switchboard <no-reply>")], "SMTP_FROM"),
        ("SMTP_FROM that is no address", [("SMTP_FROM", "switchboard")], "SMTP_FROM"),
        ("SMTP_FROM with a header break", [("SMTP_FROM", "a@b.example\r\nBcc: x@y.example")], "SMTP_FROM"),
        ("SMTP_URL of another scheme", [("SMTP_URL", "http://mailer:smtp-secret@127.0.0.1:25")], "SMTP_URL"),
        ("SMTP_URL with a bad port", [("SMTP_URL", "smtp://mailer:smtp-secret@127.0.0.1:99999")], "SMTP_URL"),
        (
            "SMTP_URL with a bad tls=",
            [("SMTP_URL", "smtp://mailer:smtp-secret@127.0.0.1?tls=yes")],
            "SMTP_URL",
        ),
    ] {
        let (status, _, stderr) = run_server_to_exit(&env, case).await;

        assert_eq!(status.code(), Some(2), "{case}: exit code; stderr:\n{stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{case}: one line on stderr:\n{stderr}");
        assert!(lines[0].contains(name), "{case}: the line names {name}: {:?}", lines[0]);
        assert!(!stderr.contains("smtp-secret"), "{case}: the password is not shown: {stderr}");
    }
}

#[test]
fn mail_settings_are_read_as_they_are_parsed_and_a_bad_one_is_refused_naming_it() {
    use clap::Parser;
    let settings = |args: &[&str]| {
        let parsed = Config::try_parse_from(std::iter::once("switchboard").chain(args.iter().copied()));
        parsed.map_err(|e| e.to_string()).and_then(|config| config.check())
    };
    assert_eq!(settings(&[]), Ok(()), "the default SMTP_FROM is a mailbox");
    assert_eq!(settings(&["--smtp-from", FROM]), Ok(()));
    assert_eq!(settings(&["--smtp-from", "no-reply@switchboard.example"]), Ok(()));
    assert_eq!(settings(&["--smtp-url", "smtps://u:p@mail.example", "--smtp-from", FROM]), Ok(()));
    assert_eq!(settings(&["--smtp-url", "smtp://mail.example:2525?tls=required"]), Ok(()), "STARTTLS");
    let err = settings(&["--smtp-from", "nobody"]).unwrap_err();
    assert!(err.contains("SMTP_FROM: "), "{err}");
    for url in ["smtp://user:hunter2@mail.example:0", "smtp://user:hunter2@mail.example?tls=starttls"] {
        let err = settings(&["--smtp-url", url]).unwrap_err();
        assert!(err.contains("SMTP_URL: ") && !err.contains("hunter2"), "{url}: {err}");
    }
}
