//! When a service stops: one rule for all four. SIGTERM (systemd, the launcher, `kill`),
//! SIGINT (Ctrl-C) and SIGHUP (a closed terminal or SSH session, and what many scripts send
//! to stop a daemon; upstream stops cleanly on it) all mean "stop now, gracefully". A
//! service started by the launcher also stops when that launcher is gone (SIGKILLed,
//! crashed): the launcher passes its pid in `IPFS_CLUSTER_LAUNCHER_PID`, and a service
//! whose parent is no longer that pid shuts down instead of living on as an orphan that
//! holds the peer's ports. Once asked to stop, a service that has not exited within
//! `HARD_EXIT_AFTER` is ended by a watchdog thread, whatever its tasks or its stderr (a
//! dead launcher's pipe) are doing.

use std::time::Duration;

/// The environment variable the launcher sets to its own pid for every service it starts.
pub const LAUNCHER_PID_ENV: &str = "IPFS_CLUSTER_LAUNCHER_PID";

/// How long a graceful stop may take before the process exits anyway.
pub const HARD_EXIT_AFTER: Duration = Duration::from_secs(30);

/// How often a launched service checks that its launcher still runs.
const PARENT_CHECK: Duration = Duration::from_millis(500);

/// Why a service stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Terminate,
    Interrupt,
    Hangup,
    LauncherGone,
}

impl StopReason {
    /// The signal's name (`SIGTERM`…), or what happened to the launcher.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Terminate => "SIGTERM",
            StopReason::Interrupt => "SIGINT",
            StopReason::Hangup => "SIGHUP",
            StopReason::LauncherGone => "the launcher that started this service is gone",
        }
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The three signals that mean "stop now, gracefully" (SIGTERM, SIGINT, SIGHUP), for the
/// services and the launcher alike.
pub struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers; fails only when the runtime cannot register them.
    pub fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next of the three signals to arrive.
    pub async fn recv(&mut self) -> StopReason {
        tokio::select! {
            _ = self.term.recv() => StopReason::Terminate,
            _ = self.int.recv() => StopReason::Interrupt,
            _ = self.hup.recv() => StopReason::Hangup,
        }
    }
}

/// The launcher pid this process was started by, when it was.
fn launcher_pid() -> Option<u32> {
    std::env::var(LAUNCHER_PID_ENV).ok()?.trim().parse().ok()
}

/// Resolves when the service should stop, and arms the hard-exit watchdog.
pub async fn stop_requested() -> StopReason {
    let reason = wait_for_stop().await;
    arm_hard_exit(reason);
    reason
}

async fn wait_for_stop() -> StopReason {
    let launcher = launcher_pid();
    let launcher_gone = async move {
        let Some(pid) = launcher else {
            return std::future::pending().await;
        };
        loop {
            if std::os::unix::process::parent_id() != pid {
                return;
            }
            tokio::time::sleep(PARENT_CHECK).await;
        }
    };
    let Ok(mut signals) = StopSignals::new() else {
        // Without signal handlers only the launcher check (if any) can stop us; the
        // default dispositions still end the process on those signals.
        launcher_gone.await;
        return StopReason::LauncherGone;
    };
    tokio::select! {
        reason = signals.recv() => reason,
        _ = launcher_gone => StopReason::LauncherGone,
    }
}

/// Ends the process `HARD_EXIT_AFTER` from now, unless it exits first.
fn arm_hard_exit(reason: StopReason) {
    let _ = std::thread::Builder::new()
        .name("hard-exit".into())
        .spawn(move || {
            std::thread::sleep(HARD_EXIT_AFTER);
            // No logging here: stderr may be a dead launcher's pipe.
            let code = if reason == StopReason::LauncherGone {
                1
            } else {
                0
            };
            std::process::exit(code);
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_well() {
        assert_eq!(StopReason::Hangup.to_string(), "SIGHUP");
        assert!(StopReason::LauncherGone.to_string().contains("launcher"));
    }

    #[tokio::test]
    async fn a_launcher_that_is_not_our_parent_means_stop() {
        // Pretend our launcher is a pid that is not our parent.
        std::env::set_var(LAUNCHER_PID_ENV, "1");
        let not_parent = std::os::unix::process::parent_id() != 1;
        if not_parent {
            let r = tokio::time::timeout(Duration::from_secs(5), wait_for_stop()).await;
            assert_eq!(r.unwrap(), StopReason::LauncherGone);
        }
        std::env::remove_var(LAUNCHER_PID_ENV);
    }
}
