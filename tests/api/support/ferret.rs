//! A FerretDB (SQLite backend) of a test's own, so the test can kill and restart the MongoDB its
//! server talks to.

use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::process::ChildGuard;
use super::{clean_command, free_port};

/// The FerretDB binary: `SWITCHBOARD_TEST_FERRETDB`, else what `scripts/install-ferretdb` installs
/// (`ferretdb-1.24.2` in Go's bin directory, `$GOPATH/bin` or `~/go/bin`), else `ferretdb` on PATH.
/// A test that needs it and finds none fails, naming the fix: it never passes untested.
pub fn ferretdb_binary() -> PathBuf {
    find_ferretdb().unwrap_or_else(|| {
        panic!(
            "this test needs FerretDB: run scripts/install-ferretdb (it installs ferretdb-1.24.2 in \
             ~/go/bin) or set SWITCHBOARD_TEST_FERRETDB to the binary"
        )
    })
}

fn find_ferretdb() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SWITCHBOARD_TEST_FERRETDB").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let go_bins = [
        std::env::var_os("GOPATH").map(PathBuf::from),
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join("go")),
    ];
    let installed = go_bins.into_iter().flatten().map(|dir| dir.join("bin").join("ferretdb-1.24.2"));
    if let Some(binary) = installed.into_iter().find(|p| p.is_file()) {
        return Some(binary);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("ferretdb")).find(|p| p.is_file())
}

/// A FerretDB process on a free port with a data dir of its own, killed when dropped.
pub struct Ferret {
    binary: PathBuf,
    data: TempDir,
    port: u16,
    process: Option<ChildGuard>,
}

impl Ferret {
    /// Starts `binary` on a free port and waits until it accepts connections.
    pub async fn start(binary: PathBuf) -> Ferret {
        let mut ferret = Ferret { binary, data: TempDir::new().unwrap(), port: free_port(), process: None };
        ferret.restart().await;
        ferret
    }

    /// (Re)starts FerretDB on the same port and data dir and waits until it accepts connections.
    pub async fn restart(&mut self) {
        let dir = self.data.path();
        let mut command = clean_command(&self.binary);
        command
            .arg("--handler=sqlite")
            .arg(format!("--sqlite-url=file:{}/", dir.display()))
            .arg(format!("--listen-addr=127.0.0.1:{}", self.port))
            // Its state file and debug listener default to the working dir and port 8088.
            .arg(format!("--state-dir={}", dir.display()))
            .arg("--debug-addr=127.0.0.1:0")
            .arg("--telemetry=disable")
            .arg("--log-level=error")
            .current_dir(dir);
        let mut process = ChildGuard::spawn(command, dir, "ferretdb");
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = process.exit_status() {
                panic!(
                    "FerretDB ({}) exited with {status}; stderr:\n{}",
                    self.binary.display(),
                    process.stderr()
                );
            }
            assert!(Instant::now() < deadline, "FerretDB did not listen on {} in 15 s", self.port);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.process = Some(process);
    }

    /// Kills FerretDB at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        drop(self.process.take());
    }

    /// `mongodb://127.0.0.1:<port>/`.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/", self.port)
    }
}
