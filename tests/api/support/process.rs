//! Child processes of the tests, above all the real `switchboard` binary: each is killed by its
//! PID when its guard is dropped, keeps its stdout and stderr in files, and a server counts as
//! started once `/healthz` answers.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

use super::app::{PASSWORD, unique_email};
use super::store::store_env;
use super::ws::WsClient;
use super::{clean_command, free_port, http_client};

/// The server binary cargo built for this test run.
const SERVER_BINARY: &str = env!("CARGO_BIN_EXE_switchboard");

/// How long a clean shutdown may take.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);

/// How long a server may take to answer `/healthz` after it was started.
const START_UP_LIMIT: Duration = Duration::from_secs(30);

/// How long a process that should exit by itself may run before it is killed.
const RUN_TO_EXIT_LIMIT: Duration = Duration::from_secs(10);

/// A command for the server binary with only PATH in its environment (see [`clean_command`]).
pub fn server_command() -> Command {
    clean_command(SERVER_BINARY)
}

/// A [`server_command`] that listens on 127.0.0.1:`port`, keeps its files in `data_dir` and hashes
/// at most two passwords at a time.
pub fn server_command_on(port: u16, data_dir: &Path) -> Command {
    let mut command = server_command();
    command
        .env("SWITCHBOARD_BIND", format!("127.0.0.1:{port}"))
        .env("SWITCHBOARD_DATA_DIR", data_dir)
        .env("SWITCHBOARD_HASH_CONCURRENCY", "2");
    command
}

/// A child process that is killed, by its PID, when the guard is dropped.
pub struct ChildGuard {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to this child's PID only; it fails harmlessly once reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChildGuard {
    /// Starts `command` with stdout and stderr written to `<name>.stdout` and `<name>.stderr` in
    /// `log_dir`.
    pub fn spawn(command: Command, log_dir: &Path, name: &str) -> ChildGuard {
        ChildGuard::try_spawn(command, log_dir, name).unwrap_or_else(|e| panic!("starting {name}: {e}"))
    }

    /// [`ChildGuard::spawn`], returning the error when the program cannot be started.
    pub fn try_spawn(mut command: Command, log_dir: &Path, name: &str) -> std::io::Result<ChildGuard> {
        let stdout = log_dir.join(format!("{name}.stdout"));
        let stderr = log_dir.join(format!("{name}.stderr"));
        command.stdout(File::create(&stdout).expect("stdout file"));
        command.stderr(File::create(&stderr).expect("stderr file"));
        let child = command.spawn()?;
        Ok(ChildGuard { child, stdout, stderr })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends a signal by name (`TERM`, `INT`) with kill(1); libc is not a dependency.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// The exit status if the process has ended, without waiting.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// The exit status if the process ends within `limit`.
    pub async fn exit_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Kills the process at once with SIGKILL, as a crash or the OOM killer would, and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the child");
        self.child.wait().expect("reap the child");
    }

    /// Whether the process has not exited yet.
    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }
}

/// Runs a command that is expected to exit by itself; kills it after 10 s. Returns its exit
/// status, stdout and stderr.
pub async fn run_to_exit(command: Command, case: &str) -> (ExitStatus, String, String) {
    let logs = TempDir::new().expect("log dir");
    let mut process = ChildGuard::spawn(command, logs.path(), "run");
    let status = process.exit_within(RUN_TO_EXIT_LIMIT).await;
    let (stdout, stderr) = (process.stdout(), process.stderr());
    let status = status.unwrap_or_else(|| panic!("{case}: still running after 10 s; stderr:\n{stderr}"));
    (status, stdout, stderr)
}

/// Runs the server binary, on a free port with a fresh data dir and the store under test, with
/// `env` added, until it exits by itself (10 s at most); see [`run_to_exit`].
pub async fn run_server_to_exit(env: &[(&str, &str)], case: &str) -> (ExitStatus, String, String) {
    let data_dir = TempDir::new().expect("data dir");
    let mut command = server_command_on(free_port(), data_dir.path());
    command.envs(env.iter().copied()).envs(store_env());
    run_to_exit(command, case).await
}

/// A server process and how to reach it.
pub struct ServerProcess {
    /// The running binary.
    pub process: ChildGuard,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    /// A client with a 30 s timeout.
    pub client: Client,
    _logs: TempDir,
    _owned_data_dir: Option<TempDir>,
}

impl ServerProcess {
    /// Starts the binary on a free port with `data_dir` and `env`, and waits until /healthz answers.
    pub async fn start(data_dir: &Path, env: &[(String, String)]) -> ServerProcess {
        let port = free_port();
        let mut command = server_command_on(port, data_dir);
        command.envs(env.iter().map(|(k, v)| (k, v)));
        ServerProcess::start_command(command, port).await
    }

    /// Starts the binary on a free port with a data dir of its own (removed on drop), the store
    /// under test and `env`, and waits until /healthz answers.
    pub async fn start_in_fresh_data_dir(env: &[(&str, &str)]) -> ServerProcess {
        let data_dir = TempDir::new().expect("data dir");
        let mut all_env: Vec<(String, String)> =
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        all_env.extend(store_env());
        let mut server = ServerProcess::start(data_dir.path(), &all_env).await;
        server._owned_data_dir = Some(data_dir);
        server
    }

    /// Starts the binary on a free port with a data dir of its own (removed on drop) and only
    /// `env` (which names the store itself), and waits until /healthz answers.
    pub async fn start_in_fresh_data_dir_with(env: &[(String, String)]) -> ServerProcess {
        let data_dir = TempDir::new().expect("data dir");
        let mut server = ServerProcess::start(data_dir.path(), env).await;
        server._owned_data_dir = Some(data_dir);
        server
    }

    /// Starts `command`, a [`server_command`] set up to listen on `port`, and waits until
    /// /healthz answers.
    pub async fn start_command(command: Command, port: u16) -> ServerProcess {
        let logs = TempDir::new().expect("log dir");
        let process = ChildGuard::spawn(command, logs.path(), "switchboard");
        let client = http_client().timeout(Duration::from_secs(30)).build().unwrap();
        let mut server = ServerProcess { process, port, client, _logs: logs, _owned_data_dir: None };
        server.wait_until_healthy().await;
        server
    }

    /// Waits (up to 30 s) until /healthz answers 200; panics with stderr if the server exits first.
    async fn wait_until_healthy(&mut self) {
        let deadline = Instant::now() + START_UP_LIMIT;
        loop {
            if let Some(status) = self.process.exit_status() {
                panic!("the server exited during start-up with {status}; stderr:\n{}", self.process.stderr());
            }
            let health = self.client.get(self.url("/healthz")).send().await;
            if health.is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not answer /healthz in 30 s; stderr:\n{}",
                self.process.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Everything the process wrote to stdout and then to stderr.
    pub fn output(&self) -> String {
        format!("{}{}", self.process.stdout(), self.process.stderr())
    }

    /// Waits (up to 10 s) until the output holds `needle`; panics with the output if it never does.
    pub async fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.output().contains(needle) {
            assert!(Instant::now() < deadline, "no {needle:?} in the log:\n{}", self.output());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// POST of a JSON body without credentials.
    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.client.post(self.url(path)).json(body).send().await.expect("request")
    }

    /// Registers and logs in a new user; returns its email and access token.
    pub async fn user_with_token(&self) -> (String, String) {
        let email = unique_email();
        let body =
            json!({"email": email, "password": PASSWORD, "first_name": "Ada", "last_name": "Lovelace"});
        let response =
            self.client.post(self.url("/api/register")).json(&body).send().await.expect("register");
        assert_eq!(response.status(), StatusCode::CREATED, "registration succeeds");
        let token = self.login(&email).await.expect("login succeeds");
        (email, token)
    }

    /// Registers a user with [`PASSWORD`]; its id.
    pub async fn register(&self, email: &str) -> String {
        let body =
            json!({"email": email, "password": PASSWORD, "first_name": "Ada", "last_name": "Lovelace"});
        let response = self.post("/api/register", &body).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{email} registers");
        let body: Value = response.json().await.expect("register body");
        body["user"]["id"].as_str().expect("user id").to_owned()
    }

    /// Logs in with [`PASSWORD`], asserting success; the login body (tokens and user).
    pub async fn login_body(&self, email: &str) -> Value {
        let response = self.post("/api/login", &json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(response.status(), StatusCode::OK, "{email} logs in");
        response.json().await.expect("login body")
    }

    /// Opens `/ws` with a bearer token and reads `hello`.
    pub async fn connect_ws(&self, token: &str) -> WsClient {
        let url = format!("ws://127.0.0.1:{}/ws", self.port);
        WsClient::try_connect(&url, &[("authorization", &format!("Bearer {token}"))])
            .await
            .unwrap_or_else(|refused| panic!("upgrade refused: {refused:?}"))
    }

    /// Logs in with [`PASSWORD`]; the access token, or the status when refused.
    pub async fn login(&self, email: &str) -> Result<String, StatusCode> {
        let body = json!({"email": email, "password": PASSWORD});
        let response = self.client.post(self.url("/api/login")).json(&body).send().await.expect("login");
        if response.status() != StatusCode::OK {
            return Err(response.status());
        }
        let body: Value = response.json().await.expect("login body");
        Ok(body["access_token"].as_str().expect("access_token").to_owned())
    }

    /// GET with a bearer token; status and JSON body (Null when not JSON).
    pub async fn get_with(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let response =
            self.client.get(self.url(path)).bearer_auth(token).send().await.expect("request completes");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The status of a GET without credentials.
    pub async fn status_of(&self, path: &str) -> StatusCode {
        self.client.get(self.url(path)).send().await.expect("request completes").status()
    }

    /// Sends `signal` and asserts a clean exit (status 0) within 10 s.
    pub async fn stop_with(&mut self, signal: &str) {
        let sent = Instant::now();
        self.process.signal(signal);
        let status = self.process.exit_within(SHUTDOWN_LIMIT).await;
        let stderr = self.process.stderr();
        let status =
            status.unwrap_or_else(|| panic!("SIG{signal}: still running after 10 s; stderr:\n{stderr}"));
        eprintln!("SIG{signal}: exited in {:?}", sent.elapsed());
        assert_eq!(
            status.code(),
            Some(0),
            "SIG{signal}: exit status after {:?}; stderr:\n{stderr}",
            sent.elapsed()
        );
    }
}
