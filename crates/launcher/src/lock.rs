//! `cluster.lock`: the exclusive lock on a peer's folder, held by the daemon and by the
//! offline state commands so they never touch the same raft data at once (as upstream).

use std::{fs::File, path::Path};

use anyhow::{bail, Context, Result};

pub const LOCK_FILE: &str = "cluster.lock";

/// Takes the folder's lock; the lock lasts as long as the returned file is open.
pub fn lock_config_dir(dir: &Path) -> Result<File> {
    let lock_path = dir.join(LOCK_FILE);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        bail!(
            "{} is locked: another ipfs-cluster-service daemon or state command is using {}; stop it first",
            lock_path.display(),
            dir.display()
        );
    }
    Ok(lock)
}
