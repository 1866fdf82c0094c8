//! A Redis of a test's own (Debian's `redis-server`, no persistence), on a free port, so the test
//! can kill it and start it again as an outage would.

use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::process::ChildGuard;
use super::{clean_command, free_port};

/// The Redis server binary: `SWITCHBOARD_TEST_REDIS_SERVER`, else `redis-server` on PATH. The
/// cluster tests need it: without it they fail, naming the setting, never skip.
pub fn redis_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SWITCHBOARD_TEST_REDIS_SERVER") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file())
        .expect("the cluster tests need redis-server on PATH (apt-get install redis-server) or SWITCHBOARD_TEST_REDIS_SERVER")
}

/// A redis-server process, killed when dropped.
pub struct RedisServer {
    dir: TempDir,
    port: u16,
    process: Option<ChildGuard>,
}

impl RedisServer {
    /// Starts Redis on a free port and waits until it accepts connections.
    pub async fn start() -> RedisServer {
        let mut redis = RedisServer { dir: TempDir::new().unwrap(), port: free_port(), process: None };
        redis.restart().await;
        redis
    }

    /// (Re)starts Redis on the same port, empty (nothing is saved), and waits until it listens.
    pub async fn restart(&mut self) {
        let dir = self.dir.path();
        let mut command = clean_command(redis_server_binary());
        command
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "yes"])
            .arg("--dir")
            .arg(dir)
            .current_dir(dir);
        let mut process = ChildGuard::spawn(command, dir, "redis");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = process.exit_status() {
                panic!("redis-server exited with {status}; output:\n{}", process.stdout());
            }
            assert!(Instant::now() < deadline, "redis-server did not listen on {} in 10 s", self.port);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.process = Some(process);
    }

    /// Kills Redis at once (SIGKILL), as a crash would; what it held is gone.
    pub fn kill(&mut self) {
        drop(self.process.take());
    }

    /// Sends one command (as RESP) and answers Redis's reply as text, e.g. `CLIENT KILL TYPE
    /// pubsub` to cut every node's subscription as a network blip would.
    pub async fn command(&self, args: &[&str]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request += &format!("${}\r\n{arg}\r\n", arg.len());
        }
        let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.expect("reach redis");
        socket.write_all(request.as_bytes()).await.expect("send to redis");
        let mut reply = vec![0u8; 4096];
        let n = socket.read(&mut reply).await.expect("redis answers");
        String::from_utf8_lossy(&reply[..n]).into_owned()
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}
