//! The peer folder's consensus layout, in one place because two programs act on it: the
//! consensus service (which writes the markers when this peer leaves, joins or gives its
//! one-peer cluster up, and backs the raft folder up) and the launcher (whose
//! `state cleanup` removes the markers and rotates backups, and which restarts consensus
//! at once on [`RESTART_STAGING_EXIT`]).
//!
//! Beside the raft folder `<peer>/raft`:
//! * `raft.removed`: this peer left or was removed; a start without `--bootstrap` refuses.
//! * `raft.joining`: a join through `--bootstrap` has not completed (holds the addresses).
//! * `raft.staging`: this peer gave its one-peer cluster up to be added by a leader of
//!   another cluster, and waits in staging.
//! * `raft.old.0`, `raft.old.1`, …: backups, newest first, at most
//!   `consensus.raft.backups_rotate` of them.

use std::path::{Path, PathBuf};

/// Exit code of the consensus service meaning "restart me now, in staging": its one-peer
/// cluster was backed up because a leader of another cluster is adding this peer. The
/// launcher restarts it at once, not as a crash.
pub const RESTART_STAGING_EXIT: i32 = 75;

/// A backup or marker operation that failed, naming the path.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error("{action} {path}: {source} (check the permissions and free space of the peer folder)")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> FolderError + 'a {
    move |source| FolderError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// `<raft dir><suffix>`, beside the raft folder (`raft` when the folder has no name).
fn sibling(raft_dir: &Path, suffix: &str) -> PathBuf {
    let name = raft_dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "raft".into());
    raft_dir.with_file_name(format!("{name}{suffix}"))
}

/// The file that says this peer left or was removed: `<raft dir>.removed`. While it
/// exists the consensus service refuses to start without `--bootstrap`.
pub fn removed_marker(raft_dir: &Path) -> PathBuf {
    sibling(raft_dir, ".removed")
}

/// The file that says a join through `--bootstrap` has not completed yet:
/// `<raft dir>.joining`, holding the addresses. A restart without `--bootstrap` (the
/// launcher restarts crashed services without it) must not bootstrap a new one-peer
/// cluster from the empty staging store: it resumes as a member when a leader already
/// added this peer, else it resumes the join through the marker's addresses (a marker
/// without addresses, from an older version, makes it refuse to start).
pub fn joining_marker(raft_dir: &Path) -> PathBuf {
    sibling(raft_dir, ".joining")
}

/// The file that says this peer gave its one-peer cluster up to be added by a leader of
/// another cluster: `<raft dir>.staging`. While it exists a start without `--bootstrap`
/// stays in staging (waits to be added); it is removed once a leader added this peer.
pub fn staging_marker(raft_dir: &Path) -> PathBuf {
    sibling(raft_dir, ".staging")
}

/// Backup number `i` of the raft folder: `<raft dir>.old.<i>` (0 is the newest).
pub fn backup_slot(raft_dir: &Path, i: u32) -> PathBuf {
    sibling(raft_dir, &format!(".old.{i}"))
}

/// Where the newest backup goes: `<raft dir>.old.0`.
pub fn backup_path(raft_dir: &Path) -> PathBuf {
    backup_slot(raft_dir, 0)
}

/// Shifts `<dir>.old.i` to `.old.i+1`, dropping what would exceed `keep` (at least 1);
/// returns the now free `.old.0` path.
pub fn rotate_backups(raft_dir: &Path, keep: u32) -> Result<PathBuf, FolderError> {
    let keep = keep.max(1);
    let oldest = backup_slot(raft_dir, keep - 1);
    if oldest.exists() {
        std::fs::remove_dir_all(&oldest).map_err(io("removing the oldest backup", &oldest))?;
    }
    for i in (0..keep - 1).rev() {
        let from = backup_slot(raft_dir, i);
        if from.exists() {
            std::fs::rename(&from, backup_slot(raft_dir, i + 1))
                .map_err(io("rotating the backup", &from))?;
        }
    }
    Ok(backup_path(raft_dir))
}

/// Moves the raft folder to `<raft dir>.old.0`, rotating older backups (as upstream's
/// cleanup and `--bootstrap` do). Returns the backup's path.
pub fn move_to_backup(raft_dir: &Path, keep: u32) -> Result<PathBuf, FolderError> {
    let backup = rotate_backups(raft_dir, keep)?;
    std::fs::rename(raft_dir, &backup).map_err(io("moving to a backup", raft_dir))?;
    Ok(backup)
}

/// Copies the raft folder to `<raft dir>.old.0`, rotating older backups and keeping the
/// folder in place (before an import replaces the state). Returns the backup's path.
pub fn copy_to_backup(raft_dir: &Path, keep: u32) -> Result<PathBuf, FolderError> {
    let backup = rotate_backups(raft_dir, keep)?;
    copy_dir(raft_dir, &backup).map_err(io("copying to a backup", raft_dir))?;
    Ok(backup)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_and_backups_sit_beside_the_raft_folder() {
        let raft = Path::new("/p/raft");
        assert_eq!(removed_marker(raft), Path::new("/p/raft.removed"));
        assert_eq!(joining_marker(raft), Path::new("/p/raft.joining"));
        assert_eq!(staging_marker(raft), Path::new("/p/raft.staging"));
        assert_eq!(backup_path(raft), Path::new("/p/raft.old.0"));
        assert_eq!(backup_slot(raft, 3), Path::new("/p/raft.old.3"));
    }

    #[test]
    fn rotation_keeps_at_most_n() {
        let tmp = tempfile::tempdir().unwrap();
        let raft = tmp.path().join("raft");
        for round in 0..4 {
            std::fs::create_dir_all(&raft).unwrap();
            std::fs::write(raft.join("f"), format!("{round}")).unwrap();
            assert_eq!(move_to_backup(&raft, 2).unwrap(), backup_path(&raft));
        }
        assert!(!raft.exists());
        let read = |i| std::fs::read_to_string(backup_slot(&raft, i).join("f")).unwrap();
        assert_eq!(read(0), "3");
        assert_eq!(read(1), "2");
        assert!(!backup_slot(&raft, 2).exists());
    }

    #[test]
    fn a_copy_keeps_the_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let raft = tmp.path().join("raft");
        std::fs::create_dir_all(raft.join("sub")).unwrap();
        std::fs::write(raft.join("sub/f"), "x").unwrap();
        let b = copy_to_backup(&raft, 6).unwrap();
        assert_eq!(std::fs::read_to_string(b.join("sub/f")).unwrap(), "x");
        assert!(raft.join("sub/f").exists());
    }

    #[test]
    fn a_failure_names_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let e = move_to_backup(&tmp.path().join("raft"), 1).unwrap_err();
        assert!(e.to_string().contains("raft"), "{e}");
    }
}
