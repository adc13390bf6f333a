//! Disk checks shared by the services that keep a store: after a write failed on a full
//! disk, a service waits until its folder takes writes again before restarting on a
//! reopened store (restarting earlier would only fail again and use up the launcher's
//! restart budget).

use std::{path::Path, time::Duration};

/// Waits until `dir` takes a 1 MiB file (written and fsync'd, then removed), probing
/// every second.
pub async fn wait_writable(dir: &Path) {
    let probe = dir.join(".write-probe");
    loop {
        let p = probe.clone();
        let ok = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let r = std::fs::File::create(&p)
                .and_then(|mut f| f.write_all(&vec![0u8; 1 << 20]).and_then(|_| f.sync_all()));
            let _ = std::fs::remove_file(&p);
            r.is_ok()
        })
        .await
        .unwrap_or(false);
        if ok {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_writable_folder_returns_at_once_and_leaves_no_probe() {
        let dir = tempfile::tempdir().unwrap();
        super::wait_writable(dir.path()).await;
        assert!(!dir.path().join(".write-probe").exists());
    }
}
