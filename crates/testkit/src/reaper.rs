//! Clean-up for what a test keeps in a static (a cluster shared by the tests of one
//! binary, never dropped): a watchdog shell that ends the listed process groups (SIGTERM,
//! then SIGKILL 3 s later) and removes the test's folder when the test process exits,
//! however it exits. It waits for EOF on a pipe whose only writer is the test process
//! (pipes are close-on-exec, so our children do not hold it); waiting with `kill -0 <pid>`
//! broke when the pid was reused (pid_max is 32768 on the test machines).

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result};

/// The watchdog of one folder; forgets its list when dropped (a cluster dropped normally
/// has ended its groups itself, and a group id may be reused by the kernel afterwards).
pub struct Reaper {
    list: PathBuf,
}

impl Reaper {
    /// Starts the watchdog of `dir` (its list is `dir/pgids`).
    pub fn start(dir: &Path) -> Result<Self> {
        use std::os::unix::process::CommandExt;
        let list = dir.join("pgids");
        std::fs::write(&list, "").with_context(|| format!("writing {}", list.display()))?;
        let script = r#"
cat >/dev/null
groups=$(cat "$1" 2>/dev/null)
if [ -n "$groups" ]; then
  for g in $groups; do kill -TERM "-$g" 2>/dev/null; done
  sleep 3
  for g in $groups; do kill -KILL "-$g" 2>/dev/null; done
fi
rm -rf "$2"
"#;
        let mut child = Command::new("sh")
            .args(["-c", script, "reaper"])
            .arg(&list)
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting the clean-up watchdog (sh)")?;
        // Never written, never closed by us: EOF comes when this process exits.
        std::mem::forget(child.stdin.take());
        Ok(Self { list })
    }

    /// Adds a process group (a `Proc`'s pid is its group id).
    pub fn add(&self, pgid: u32) {
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&self.list) {
            let _ = writeln!(f, "{pgid}");
        }
    }

    /// Replaces the whole list (atomically).
    pub fn set(&self, pgids: impl IntoIterator<Item = u32>) {
        let text: String = pgids.into_iter().map(|g| format!("{g}\n")).collect();
        let tmp = self.list.with_extension("tmp");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, &self.list);
        }
    }

    /// Forgets every group.
    pub fn forget(&self) {
        let _ = std::fs::write(&self.list, "");
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.forget();
    }
}
