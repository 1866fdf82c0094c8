//! The real `switchboard` binary as an operator runs it: refused settings, `--help`, the start-up
//! line, text and JSON logs, SIGTERM/SIGINT, the generated JWT secret across a restart, and the
//! probes. Each process gets a free port, a fresh data dir and an environment holding only PATH,
//! and is killed by its PID when the test ends. Storage outages are in `outage.rs`.

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tempfile::TempDir;

use crate::support::app::spawn_app;
use crate::support::free_port;
use crate::support::process::{ServerProcess, run_to_exit, server_command};
use crate::support::store::store_env;

/// A refused setting: case, flags, environment, and the names of which the error line must show one.
type BadSetting<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)], &'a [&'a str]);

#[actix_web::test]
async fn a_bad_setting_stops_start_up_with_one_line_naming_it() {
    let data_dir = TempDir::new().unwrap();
    let cases: &[BadSetting] = &[
        ("--bind nowhere", &["--bind", "nowhere"], &[], &["--bind"]),
        (
            "SWITCHBOARD_BIND=nowhere",
            &[],
            &[("SWITCHBOARD_BIND", "nowhere")],
            &["SWITCHBOARD_BIND", "--bind"],
        ),
        ("PRICE_IMAGE=-1", &[], &[("PRICE_IMAGE", "-1")], &["PRICE_IMAGE", "--price-image"]),
        (
            "STARTING_CREDITS=abc",
            &[],
            &[("STARTING_CREDITS", "abc")],
            &["STARTING_CREDITS", "--starting-credits"],
        ),
        ("JWT_SECRET=short", &[], &[("JWT_SECRET", "short")], &["JWT_SECRET"]),
        (
            "SWITCHBOARD_TRUSTED_PROXIES=notacidr",
            &[],
            &[("SWITCHBOARD_TRUSTED_PROXIES", "notacidr")],
            &["SWITCHBOARD_TRUSTED_PROXIES", "--trusted-proxies"],
        ),
        ("MONGODB_URI=http://x", &[], &[("MONGODB_URI", "http://x")], &["MONGODB_URI", "--mongodb-uri"]),
        (
            "SWITCHBOARD_LOG_FORMAT=xml",
            &[],
            &[("SWITCHBOARD_LOG_FORMAT", "xml")],
            &["SWITCHBOARD_LOG_FORMAT", "--log-format"],
        ),
    ];
    for (case, args, env, names) in cases {
        let mut command = server_command();
        // A usable address and data dir, so only the bad setting can stop start-up.
        command
            .env("SWITCHBOARD_BIND", format!("127.0.0.1:{}", free_port()))
            .env("SWITCHBOARD_DATA_DIR", data_dir.path())
            .envs(env.iter().copied())
            .args(*args);
        let (status, _, stderr) = run_to_exit(command, case).await;
        assert_eq!(status.code(), Some(2), "{case}: exit code; stderr:\n{stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{case}: exactly one line on stderr, got:\n{stderr}");
        assert!(
            names.iter().any(|name| lines[0].contains(name)),
            "{case}: the line names one of {names:?}: {:?}",
            lines[0]
        );
    }
}

#[actix_web::test]
async fn help_lists_every_setting_and_exits_0_without_showing_secret_values() {
    let secrets = [
        ("JWT_SECRET", "jwt-secret-value-that-must-stay-hidden-0123456789"),
        ("MONGODB_URI", "mongodb://admin:mongo-password-hidden@127.0.0.1:1/"),
        ("SWITCHBOARD_ADMIN_PASSWORD", "admin-password-hidden"),
        ("SMTP_URL", "smtp://mailer:smtp-password-hidden@127.0.0.1:2525"),
        ("ASSISTANT_API_KEY", "assistant-key-hidden"),
        ("IMAGE_API_KEY", "image-key-hidden"),
        ("METRICS_TOKEN", "metrics-token-hidden"),
    ];
    let mut command = server_command();
    command.arg("--help").envs(secrets);
    let (status, stdout, stderr) = run_to_exit(command, "--help").await;
    assert_eq!(status.code(), Some(0), "--help exit code; stderr:\n{stderr}");
    let settings = [
        "SWITCHBOARD_BIND",
        "SWITCHBOARD_DATA_DIR",
        "MONGODB_URI",
        "MONGODB_DB",
        "JWT_SECRET",
        "SWITCHBOARD_ADMIN_EMAIL",
        "SWITCHBOARD_ADMIN_PASSWORD",
        "SWITCHBOARD_ALLOWED_ORIGINS",
        "SWITCHBOARD_TRUSTED_PROXIES",
        "SWITCHBOARD_PUBLIC_URL",
        "SMTP_URL",
        "SMTP_FROM",
        "ASSISTANT_URL",
        "ASSISTANT_MODEL",
        "ASSISTANT_API_KEY",
        "IMAGE_URL",
        "IMAGE_MODEL",
        "IMAGE_API_KEY",
        "SWITCHBOARD_LOG_FORMAT",
        "SWITCHBOARD_SECURE_COOKIES",
        "METRICS_TOKEN",
        "PRICE_CHAT_MESSAGE",
        "PRICE_IMAGE",
        "STARTING_CREDITS",
        "RATE_LIMIT_PER_MINUTE",
        "WS_RATE_LIMIT_PER_MINUTE",
    ];
    // clap prints `[env: NAME=value]`, or `[env: NAME]` for settings whose values it hides.
    let listed =
        |name: &str| stdout.contains(&format!("env: {name}=")) || stdout.contains(&format!("env: {name}]"));
    let missing: Vec<&str> = settings.iter().copied().filter(|name| !listed(name)).collect();
    assert!(missing.is_empty(), "--help does not list {missing:?}:\n{stdout}");
    for (name, value) in secrets {
        assert!(!stdout.contains(value) && !stderr.contains(value), "--help shows the value of {name}");
    }
}

/// Waits (up to 5 s) until the server's stderr mentions `text`, and returns it.
async fn stderr_mentioning(server: &ServerProcess, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stderr = server.process.stderr();
        if stderr.contains(text) || Instant::now() > deadline {
            return stderr;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn start_up_logs_the_address_it_listens_on() {
    let data_dir = TempDir::new().unwrap();
    let server = ServerProcess::start(data_dir.path(), &store_env()).await;
    let address = format!("127.0.0.1:{}", server.port);
    let stderr = stderr_mentioning(&server, "listening").await;
    let line = stderr.lines().find(|l| l.contains("listening") && l.contains(&address));
    assert!(line.is_some(), "a line says it is listening on {address}; stderr:\n{stderr}");
    assert_eq!(server.status_of("/healthz").await, StatusCode::OK, "/healthz answers");
}

#[actix_web::test]
async fn text_logs_written_to_a_file_carry_no_terminal_colour_codes() {
    let data_dir = TempDir::new().unwrap();
    let server = ServerProcess::start(data_dir.path(), &store_env()).await;
    let stderr = stderr_mentioning(&server, "GET /healthz").await;
    // Escape sequences make a log file or journald unreadable and break `grep address=...`.
    assert!(
        !stderr.contains('\u{1b}'),
        "stderr is not a terminal, yet the log has ANSI escapes:\n{stderr:?}"
    );
}

#[actix_web::test]
async fn json_logs_are_one_object_per_line_and_name_the_address() {
    let data_dir = TempDir::new().unwrap();
    let mut env = store_env();
    env.push(("SWITCHBOARD_LOG_FORMAT".into(), "json".into()));
    let server = ServerProcess::start(data_dir.path(), &env).await;
    let address = format!("127.0.0.1:{}", server.port);
    let stderr = stderr_mentioning(&server, "listening").await;
    let lines: Vec<Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}")))
        .collect();
    assert!(lines.iter().all(Value::is_object), "every line is a JSON object:\n{stderr}");
    let listening =
        lines.iter().find(|l| l.to_string().contains("listening") && l.to_string().contains(&address));
    assert!(listening.is_some(), "a JSON line says it is listening on {address}:\n{stderr}");
}

#[actix_web::test]
async fn sigterm_and_sigint_stop_the_server_with_status_0_within_10_seconds() {
    for signal in ["TERM", "INT"] {
        let data_dir = TempDir::new().unwrap();
        let mut server = ServerProcess::start(data_dir.path(), &store_env()).await;
        // A served request leaves an idle keep-alive connection open, as a browser would.
        assert_eq!(
            server.status_of("/healthz").await,
            StatusCode::OK,
            "SIG{signal}: /healthz before the signal"
        );
        server.stop_with(signal).await;
        let refused = TcpStream::connect(("127.0.0.1", server.port)).is_err();
        assert!(refused, "SIG{signal}: the port no longer accepts connections");
    }
}

#[actix_web::test]
async fn a_generated_jwt_secret_is_private_and_keeps_tokens_valid_across_a_restart() {
    let data_dir = TempDir::new().unwrap();
    let env = store_env();
    let mut first = ServerProcess::start(data_dir.path(), &env).await;

    let secret_path = data_dir.path().join("jwt_secret");
    let metadata = std::fs::metadata(&secret_path).expect("<data-dir>/jwt_secret exists");
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600, "jwt_secret mode");
    let secret = std::fs::read_to_string(&secret_path).unwrap();
    assert!(secret.trim().len() >= 32, "the generated secret has at least 32 bytes");

    let (email, token) = first.user_with_token().await;
    let (status, _) = first.get_with("/api/me", &token).await;
    assert_eq!(status, StatusCode::OK, "GET /api/me before the restart");
    first.stop_with("TERM").await;
    let first_log = first.process.stderr();

    let second = ServerProcess::start(data_dir.path(), &env).await;
    assert_eq!(std::fs::read_to_string(&secret_path).unwrap(), secret, "the secret is kept, not regenerated");
    let (status, body) = second.get_with("/api/me", &token).await;
    assert_eq!(status, StatusCode::OK, "the old access token still works after the restart: {body}");
    assert_eq!(body["email"], email.as_str(), "and names the same user: {body}");
    assert!(second.login(&email).await.is_ok(), "the user survived the restart and can log in");

    for (which, log) in [("first", first_log), ("second", second.process.stderr())] {
        assert!(!log.contains(secret.trim()), "the {which} server's log does not contain the JWT secret");
    }
}

#[actix_web::test]
async fn the_probes_answer_200() {
    let app = spawn_app().await;

    for path in ["/healthz", "/readyz"] {
        let response = app.request(Method::GET, path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}
