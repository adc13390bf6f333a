//! Free listening ports for `init --randomports`, the tests and the benchmark, picked
//! outside the kernel's ephemeral range.
//!
//! Why not `bind(port 0)`: the kernel answers port 0 from the same range
//! (`net.ipv4.ip_local_port_range`, 32768–60999 by default) it uses for the local end of
//! every outbound connection. A port picked that way and written into service.json is free
//! only until the next outbound connect: any client on the machine (an HTTP call, a libp2p
//! dial, a gRPC channel) may be given it as its local port, and the service that starts or
//! restarts later fails with "address already in use". Ports below the ephemeral range are
//! never handed out that way, so once free they stay free until someone binds them on
//! purpose.

use std::{
    collections::HashSet,
    io,
    net::{IpAddr, TcpListener},
    sync::{Mutex, OnceLock},
};

use rand::Rng;

/// The lowest port we hand out: above the well-known and the common service ports
/// (IPFS 4001/5001/8080, cluster 9094–9097, …).
const FLOOR: u16 = 20_000;
/// Tries before giving up (each is one `bind`).
const TRIES: usize = 2_000;

/// The kernel's ephemeral port range, from /proc; Linux's default when unreadable.
pub fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(str::parse::<u16>);
            Some((it.next()?.ok()?, it.next()?.ok()?))
        })
        .unwrap_or((32_768, 60_999))
}

/// The ports we pick from: below the ephemeral range when there is room there, else above
/// it; `None` when the ephemeral range leaves no room (then we fall back to port 0).
fn candidate_range() -> Option<(u16, u16)> {
    let (lo, hi) = ephemeral_range();
    if lo > FLOOR + 1_000 {
        Some((FLOOR, lo - 1))
    } else if hi < 64_535 {
        Some((hi + 1, 65_535))
    } else {
        None
    }
}

/// A TCP port free on `ip` right now, outside the ephemeral range, and not handed out
/// before by this process (tests in one binary pick ports from parallel threads).
pub fn free_listen_port(ip: IpAddr) -> io::Result<u16> {
    free_listen_ports_in_a_row(ip, 1)
}

/// The first of `n` consecutive ports that are all what [`free_listen_port`] gives (the
/// Prometheus endpoint P serves the four services on P..P+3).
pub fn free_listen_ports_in_a_row(ip: IpAddr, n: u16) -> io::Result<u16> {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    pick(
        ip,
        candidate_range(),
        n,
        GIVEN.get_or_init(Default::default),
    )
}

fn pick(
    ip: IpAddr,
    range: Option<(u16, u16)>,
    n: u16,
    given: &Mutex<HashSet<u16>>,
) -> io::Result<u16> {
    let n = n.max(1);
    // All n free at once (held together while checking) and none handed out before.
    let take = |first: u16| -> bool {
        let Some(last) = first.checked_add(n - 1) else {
            return false;
        };
        let held: Vec<TcpListener> = (first..=last)
            .map_while(|p| TcpListener::bind((ip, p)).ok())
            .collect();
        if held.len() != usize::from(n) {
            return false;
        }
        let mut g = given.lock().unwrap_or_else(|e| e.into_inner());
        if (first..=last).any(|p| g.contains(&p)) {
            return false;
        }
        g.extend(first..=last);
        true
    };
    if let Some((lo, hi)) = range.filter(|(lo, hi)| hi.saturating_sub(*lo) + 1 >= n) {
        let mut rng = rand::thread_rng();
        for _ in 0..TRIES {
            let first = rng.gen_range(lo..=hi - (n - 1));
            if take(first) {
                return Ok(first);
            }
        }
    }
    // No room outside the ephemeral range (or all of it taken): the kernel's choice.
    for _ in 0..TRIES {
        let first = TcpListener::bind((ip, 0))?.local_addr()?.port();
        if take(first) {
            return Ok(first);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("no {n} consecutive free TCP ports found on {ip}"),
    ))
}

/// [`free_listen_port`] on 127.0.0.1.
pub fn free_loopback_port() -> io::Result<u16> {
    free_listen_port(IpAddr::from([127, 0, 0, 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_distinct_and_outside_the_ephemeral_range() {
        let (lo, hi) = ephemeral_range();
        let mut seen = HashSet::new();
        for _ in 0..50 {
            let p = free_loopback_port().unwrap();
            assert!(seen.insert(p), "port {p} handed out twice");
            if candidate_range().is_some() {
                assert!(
                    !(lo..=hi).contains(&p),
                    "{p} is in the ephemeral range {lo}-{hi}"
                );
            }
            TcpListener::bind(("127.0.0.1", p)).expect("the port is free");
        }
    }

    #[test]
    fn a_port_in_use_is_never_handed_out() {
        let ip = IpAddr::from([127, 0, 0, 1]);
        // Five consecutive ports, four of them held: the fifth is the only answer.
        let (first, held) = (FLOOR..FLOOR + 5_000)
            .step_by(5)
            .find_map(|p| {
                let held: Vec<TcpListener> = (p..p + 4)
                    .map_while(|q| TcpListener::bind((ip, q)).ok())
                    .collect();
                (held.len() == 4 && TcpListener::bind((ip, p + 4)).is_ok()).then_some((p, held))
            })
            .expect("five free consecutive ports");
        for _ in 0..20 {
            let fresh = Mutex::new(HashSet::new());
            assert_eq!(
                pick(ip, Some((first, first + 4)), 1, &fresh).unwrap(),
                first + 4
            );
        }
        // Once handed out, not again: the next pick falls back to the kernel's choice.
        let given = Mutex::new(HashSet::from([first + 4]));
        let p = pick(ip, Some((first, first + 4)), 1, &given).unwrap();
        assert!(!(first..=first + 4).contains(&p));
        drop(held);
    }

    #[test]
    fn runs_of_ports_are_free_together() {
        let ip = IpAddr::from([127, 0, 0, 1]);
        for _ in 0..20 {
            let p = free_listen_ports_in_a_row(ip, 4).unwrap();
            let held: Vec<TcpListener> = (p..p + 4)
                .map(|q| TcpListener::bind((ip, q)).expect("every port of the run is free"))
                .collect();
            assert_eq!(held.len(), 4);
            // None of the run is handed out again.
            let q = free_loopback_port().unwrap();
            assert!(!(p..p + 4).contains(&q));
        }
    }
}
