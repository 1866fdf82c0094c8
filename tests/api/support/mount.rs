//! Small file systems a test mounts (tmpfs) to fill up or to make read-only, unmounted when
//! dropped. Mounting needs root with `CAP_SYS_ADMIN`; where that is missing the test fails,
//! naming the fix, because a test that passed without its file system would have proved nothing.
//! `.ci/run` checks the capability before the suite starts.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A tmpfs mounted on a test's directory; unmounted when dropped.
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs with `options` (e.g. `size=8m`, `ro,size=1m`) on the existing directory
    /// `path`; panics when the mount is refused.
    pub fn mount(path: &Path, options: &str) -> Tmpfs {
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(path)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("could not run mount(8) ({e}); {HINT}"));
        assert!(
            output.status.success(),
            "mount -t tmpfs -o {options} on {} was refused ({}): {}; {HINT}",
            path.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Tmpfs { path: path.to_owned() }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).stderr(Stdio::null()).status();
    }
}

const HINT: &str = "this test needs a small file system of its own: run the suite as root with \
                    CAP_SYS_ADMIN (a privileged container), or leave the test out by name \
                    (cargo test -- --skip <name>) knowing it has not run";
