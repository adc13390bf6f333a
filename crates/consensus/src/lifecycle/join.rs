//! Joining a cluster through `--bootstrap` addresses, retried until it works.
//!
//! Upstream gives up when the first join fails (the daemon exits after its ready timeout).
//! In a compose stack every peer starts at once and `depends_on` does not wait for
//! readiness, so a joiner often dials before its bootstrap peer listens (or before the
//! peer's DNS name even resolves). So a join is retried, round after round through every
//! address, with a backoff of 1 s doubling to 30 s and one log line per failed round, until
//! it succeeds, a leader adds this peer by other means, or the operator stops the peer.
//! Only an address no retry can fix (not dialable by our transport) is dropped; when none
//! is left the join fails.
//!
//! The addresses are also written into the `<raft dir>.joining` marker, so a consensus
//! service restarted without `--bootstrap` (the launcher restarts crashed services without
//! it) resumes the same join instead of refusing to start.

use std::{future::Future, time::Duration};

/// First wait between two rounds of join attempts.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest wait between two rounds.
pub const MAX_RETRY: Duration = Duration::from_secs(30);

/// The first line of the `.joining` marker; the addresses follow, one per line.
const MARKER_HEAD: &str = "this peer is joining a cluster through --bootstrap";

/// Exponential backoff: `first`, doubling, capped at `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            next: first.min(max),
            max,
        }
    }

    /// The wait before the next round.
    pub fn next_wait(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.max);
        now
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(FIRST_RETRY, MAX_RETRY)
    }
}

/// The outcome of one join attempt through one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Joined through this peer.
    Joined(String),
    /// Not now (unreachable, not resolvable yet, no leader, refused): try again later.
    Failed(String),
    /// This address can never work (our transport cannot dial it): drop it.
    Unusable(String),
}

/// How a join ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// Through this peer.
    Through(String),
    /// A leader added this peer meanwhile (an earlier attempt's answer was lost, or an
    /// operator added it with `POST /peers` on a member).
    AlreadyMember,
}

/// Why a join can never succeed (each address was dropped as unusable, or none given).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("no --bootstrap address given")]
    NoAddress,
    /// Each `address: reason`.
    #[error("could not join the cluster: no usable --bootstrap address ({})", .0.join("; "))]
    NoUsableAddress(Vec<String>),
}

/// Tries every address in turn, round after round, waiting `backoff` between rounds, until
/// one joins (`Ok`) or none is left that could ever work (`Err`, naming why). Before each
/// round `member()` is asked whether a leader already added us.
pub async fn join_until<A, AF, M, MF>(
    addrs: &[String],
    mut backoff: Backoff,
    mut attempt: A,
    mut member: M,
) -> Result<Joined, JoinError>
where
    A: FnMut(String) -> AF,
    AF: Future<Output = Attempt>,
    M: FnMut() -> MF,
    MF: Future<Output = bool>,
{
    let mut live: Vec<String> = addrs.to_vec();
    let mut unusable: Vec<String> = Vec::new();
    let mut round = 0u64;
    let since = tokio::time::Instant::now();
    loop {
        if live.is_empty() {
            return Err(if unusable.is_empty() {
                JoinError::NoAddress
            } else {
                JoinError::NoUsableAddress(unusable)
            });
        }
        round += 1;
        if member().await {
            return Ok(Joined::AlreadyMember);
        }
        let mut failures = Vec::new();
        let mut i = 0;
        while i < live.len() {
            let a = live[i].clone();
            match attempt(a.clone()).await {
                Attempt::Joined(peer) => {
                    tracing::info!(%peer, through = %a, attempt = round, waited_s = since.elapsed().as_secs(), "joined the cluster");
                    return Ok(Joined::Through(peer));
                }
                Attempt::Failed(e) => {
                    failures.push(format!("{a}: {e}"));
                    i += 1;
                }
                Attempt::Unusable(e) => {
                    tracing::error!(addr = %a, error = %e, "dropping this --bootstrap address: it can never be dialled; fix it and restart with --bootstrap");
                    unusable.push(format!("{a}: {e}"));
                    live.remove(i);
                }
            }
        }
        if live.is_empty() {
            continue;
        }
        let wait = backoff.next_wait();
        tracing::warn!(
            attempt = round,
            retry_in = ?wait,
            waited_s = since.elapsed().as_secs(),
            error = %failures.join("; "),
            "could not join the cluster yet (is the bootstrap peer up and reachable, with the same cluster secret?); retrying until it works or this peer is stopped"
        );
        tokio::time::sleep(wait).await;
    }
}

/// The `.joining` marker's text for these addresses.
pub fn marker_text(addrs: &[String]) -> String {
    let mut s = format!("{MARKER_HEAD}\n");
    for a in addrs {
        s.push_str(a);
        s.push('\n');
    }
    s
}

/// The addresses in a `.joining` marker (none in a marker written before they were kept).
pub fn marker_addresses(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with('/'))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap() {
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..8).map(|_| b.next_wait().as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        let mut b = Backoff::new(Duration::from_secs(60), Duration::from_secs(5));
        assert_eq!(b.next_wait(), Duration::from_secs(5));
    }

    #[test]
    fn marker_round_trip_and_old_markers() {
        let addrs = vec![
            "/dns4/cluster0/tcp/9096".to_string(),
            "/ip4/10.0.0.2/tcp/9096/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"
                .to_string(),
        ];
        let text = marker_text(&addrs);
        assert!(text.starts_with(MARKER_HEAD), "{text}");
        assert_eq!(marker_addresses(&text), addrs);
        assert!(marker_addresses(&format!("{MARKER_HEAD}\n")).is_empty());
    }

    /// A bootstrap peer that comes up only after several rounds is joined; every address
    /// is tried in every round, in order (the waits are `backoff_doubles_to_the_cap`'s,
    /// shortened here).
    #[tokio::test]
    async fn keeps_trying_until_the_peer_is_up() {
        let tried = Arc::new(Mutex::new(Vec::<String>::new()));
        let t = tried.clone();
        let res = join_until(
            &["/dns4/a/tcp/1".to_string(), "/dns4/b/tcp/1".to_string()],
            Backoff::new(Duration::from_millis(1), Duration::from_millis(4)),
            move |a: String| {
                let t = t.clone();
                async move {
                    let mut v = t.lock().unwrap();
                    v.push(a.clone());
                    // b comes up in the sixth round.
                    if a == "/dns4/b/tcp/1" && v.len() >= 12 {
                        Attempt::Joined("peerB".into())
                    } else {
                        Attempt::Failed("connection refused".into())
                    }
                }
            },
            || async { false },
        )
        .await;
        assert_eq!(res, Ok(Joined::Through("peerB".into())));
        let v = tried.lock().unwrap().clone();
        assert_eq!(v.len(), 12, "{v:?}");
        for pair in v.chunks(2) {
            assert_eq!(pair, ["/dns4/a/tcp/1", "/dns4/b/tcp/1"]);
        }
    }

    #[tokio::test]
    async fn stops_when_a_leader_added_us_meanwhile() {
        let rounds = Arc::new(Mutex::new(0));
        let r = rounds.clone();
        let res = join_until(
            &["/dns4/a/tcp/1".to_string()],
            Backoff::new(Duration::from_millis(1), Duration::from_millis(2)),
            |_| async { Attempt::Failed("join answer lost".into()) },
            move || {
                let r = r.clone();
                async move {
                    let mut n = r.lock().unwrap();
                    *n += 1;
                    *n == 3
                }
            },
        )
        .await;
        assert_eq!(res, Ok(Joined::AlreadyMember));
        assert_eq!(*rounds.lock().unwrap(), 3);
    }

    /// Unusable addresses are dropped; the others are still retried; with none left the
    /// join fails naming each address and why.
    #[tokio::test]
    async fn unusable_addresses_are_dropped() {
        let calls = Arc::new(Mutex::new(Vec::<String>::new()));
        let c = calls.clone();
        let res = join_until(
            &[
                "/dns4/q/udp/1/quic-v1".to_string(),
                "/dns4/a/tcp/1".to_string(),
            ],
            Backoff::new(Duration::from_millis(1), Duration::from_millis(2)),
            move |a: String| {
                let c = c.clone();
                async move {
                    let mut v = c.lock().unwrap();
                    v.push(a.clone());
                    if a.contains("quic") {
                        Attempt::Unusable("not supported".into())
                    } else if v.len() >= 4 {
                        Attempt::Joined("peerA".into())
                    } else {
                        Attempt::Failed("refused".into())
                    }
                }
            },
            || async { false },
        )
        .await;
        assert_eq!(res, Ok(Joined::Through("peerA".into())));
        let v = calls.lock().unwrap().clone();
        assert_eq!(v.iter().filter(|a| a.contains("quic")).count(), 1, "{v:?}");

        let e = join_until(
            &["/dns4/q/udp/1/quic-v1".to_string()],
            Backoff::default(),
            |_| async { Attempt::Unusable("not supported".into()) },
            || async { false },
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("could not join the cluster")
                && e.contains("/dns4/q/udp/1/quic-v1: not supported"),
            "{e}"
        );
    }
}
