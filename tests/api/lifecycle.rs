//! The real `switchboard` binary as an operator runs it: refused settings, `--help`, the start-up
//! line, text and JSON logs, SIGTERM/SIGINT, the generated JWT secret across a restart, and the
//! probes. Each process gets a free port, a fresh data dir and an environment holding only PATH,
//! and is killed by its PID when the test ends. Storage outages are in `outage.rs`.

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;

use clap::CommandFactory as _;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use switchboard::config::Config;
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
    // The settings as clap knows them: every flag of `Config`, and the secrets among them are the
    // ones whose values clap is told to hide.
    let command = Config::command();
    let settings: Vec<&clap::Arg> = command.get_arguments().collect();
    let secrets: Vec<(String, String)> = settings
        .iter()
        .filter(|arg| arg.is_hide_env_values_set())
        .filter_map(|arg| arg.get_env())
        .map(|env| {
            let env = env.to_string_lossy().into_owned();
            let value = format!("hidden-value-of-{}", env.to_lowercase());
            (env, value)
        })
        .collect();
    for secret in [
        "MONGODB_URI",
        "REDIS_URL",
        "JWT_SECRET",
        "SWITCHBOARD_ADMIN_PASSWORD",
        "SMTP_URL",
        "ASSISTANT_API_KEY",
        "IMAGE_API_KEY",
        "METRICS_TOKEN",
    ] {
        assert!(secrets.iter().any(|(name, _)| name == secret), "{secret} has its value hidden: {secrets:?}");
    }
    let mut command = server_command();
    command.arg("--help").envs(secrets.iter().map(|(k, v)| (k, v)));
    let (status, stdout, stderr) = run_to_exit(command, "--help").await;
    assert_eq!(status.code(), Some(0), "--help exit code; stderr:\n{stderr}");
    let mut missing = Vec::new();
    for arg in &settings {
        let long = arg.get_long().unwrap_or_else(|| panic!("{:?} is a flag", arg.get_id()));
        let env = arg.get_env().unwrap_or_else(|| panic!("--{long} has an environment variable"));
        let env = env.to_string_lossy();
        // clap prints `[env: NAME=value]`, or `[env: NAME]` for settings whose values it hides.
        let listed = stdout.contains(&format!("--{long}"))
            && (stdout.contains(&format!("env: {env}=")) || stdout.contains(&format!("env: {env}]")));
        if !listed {
            missing.push(format!("--{long} ({env})"));
        }
    }
    assert!(missing.is_empty(), "--help does not list {missing:?}:\n{stdout}");
    assert!(settings.len() >= 40, "the settings come from Config: {}", settings.len());
    for (name, value) in &secrets {
        assert!(!stdout.contains(value) && !stderr.contains(value), "--help shows the value of {name}");
    }
}

#[actix_web::test]
async fn start_up_logs_the_address_it_listens_on() {
    let data_dir = TempDir::new().unwrap();
    let server = ServerProcess::start(data_dir.path(), &store_env()).await;
    let address = format!("127.0.0.1:{}", server.port);
    server.wait_for_log("listening").await;
    let stderr = server.process.stderr();
    let line = stderr.lines().find(|l| l.contains("listening") && l.contains(&address));
    assert!(line.is_some(), "a line says it is listening on {address}; stderr:\n{stderr}");
    assert_eq!(server.status_of("/healthz").await, StatusCode::OK, "/healthz answers");
}

#[actix_web::test]
async fn text_logs_written_to_a_file_carry_no_terminal_colour_codes() {
    let data_dir = TempDir::new().unwrap();
    let server = ServerProcess::start(data_dir.path(), &store_env()).await;
    // The access log line of the start-up probe: the log has text in it, so a clean log means
    // something.
    server.wait_for_log("GET /healthz 200").await;
    let stderr = server.process.stderr();
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
    server.wait_for_log("listening").await;
    let stderr = server.process.stderr();
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
