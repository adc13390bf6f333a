//! Network namespaces for tests that need a real network fault (a partition) rather than
//! a killed process: a "switch" namespace holding a bridge, one namespace per peer joined
//! to it by a veth pair (`<subnet>.(i+1)/24`), and one veth from the test's own namespace
//! to the switch (`<subnet>.254`) so the test reaches every peer's REST API directly.
//! Cutting a peer takes its switch port down: the peer keeps running and answering on its
//! own addresses (reach it from inside with [`in_netns`]) but reaches no one else.
//! Dropping the `Netns` deletes the namespaces and with them every veth.
//! Needs root and `ip` (iproute2); tests call [`crate::skip`] when `create` fails.

use std::{
    os::fd::AsFd,
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{bail, Context, Result};

/// `ip ARGS…`, failing with its stderr.
pub fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A 10.79.x /24 no interface of the test's namespace uses yet (another test process may
/// hold one: two host veths on one subnet would make replies go the wrong way).
fn free_subnet(start: u32) -> Result<String> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .stdin(Stdio::null())
        .output()
        .context("running ip (iproute2)")?;
    let used = String::from_utf8_lossy(&out.stdout).into_owned();
    (0..250)
        .map(|k| format!("10.79.{}", start.wrapping_add(k) % 250 + 1))
        .find(|net| !used.contains(&format!(" {net}.")))
        .context("every 10.79.x.0/24 is in use by other test namespaces")
}

/// A switch and `n` peer namespaces (see the module comment).
pub struct Netns {
    switch: String,
    host_link: String,
    peers: Vec<String>,
    subnet: String,
}

impl Netns {
    /// Creates the namespaces; names and the /24 are unique to this process and call.
    pub fn create(n: usize) -> Result<Self> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // Interface names are at most 15 bytes: "tk" + 5 digits + seq + suffix.
        let tag = format!("tk{:05}{}", pid % 100_000, seq % 10);
        let mut net = Netns {
            switch: format!("{tag}sw"),
            host_link: format!("{tag}h"),
            peers: Vec::new(),
            subnet: free_subnet(pid.wrapping_mul(7).wrapping_add(seq))?,
        };
        ip(&["netns", "add", &net.switch])?;
        ip(&["-n", &net.switch, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &net.switch, "link", "set", "br0", "up"])?;
        ip(&[
            "link",
            "add",
            &net.host_link,
            "type",
            "veth",
            "peer",
            "name",
            "host",
            "netns",
            &net.switch,
        ])?;
        ip(&[
            "addr",
            "add",
            &format!("{}.254/24", net.subnet),
            "dev",
            &net.host_link,
        ])?;
        ip(&["link", "set", &net.host_link, "up"])?;
        ip(&["-n", &net.switch, "link", "set", "host", "master", "br0"])?;
        ip(&["-n", &net.switch, "link", "set", "host", "up"])?;
        for i in 0..n {
            let ns = format!("{tag}p{i}");
            ip(&["netns", "add", &ns])?;
            net.peers.push(ns.clone());
            let port = format!("s{i}");
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                &ns,
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                &net.switch,
            ])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", net.ip(i)),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &net.switch, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &net.switch, "link", "set", &port, "up"])?;
        }
        Ok(net)
    }

    /// Peer `i`'s namespace name.
    pub fn ns(&self, i: usize) -> &str {
        &self.peers[i]
    }

    /// Peer `i`'s address on the switch.
    pub fn ip(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, i + 1)
    }

    /// The prefix that runs a program in peer `i`'s namespace.
    pub fn wrap(&self, i: usize) -> Vec<String> {
        ["ip", "netns", "exec", self.ns(i)]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// Cuts peer `i` off the switch (the others and the test), or reconnects it.
    pub fn isolate(&self, i: usize, cut: bool) -> Result<()> {
        ip(&[
            "-n",
            &self.switch,
            "link",
            "set",
            &format!("s{i}"),
            if cut { "down" } else { "up" },
        ])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in self.peers.iter().chain(std::iter::once(&self.switch)) {
            let _ = ip(&["netns", "del", ns]);
        }
        // Gone with the switch namespace already; this only covers a half-made switch.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs `f` on a fresh thread that entered network namespace `ns` (what `ip netns exec`
/// does for a process): every socket `f` opens lives there, e.g. to reach a peer's
/// loopback-only internal gRPC, or a peer cut off from the switch.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || -> Result<T> {
        let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("entering network namespace {path}"))?;
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the thread in network namespace {ns} panicked"))?
}

/// [`in_netns`] for async work: `f()` runs to completion on a current-thread runtime of
/// the namespaced thread, off the caller's runtime.
pub async fn in_netns_async<T, Fut>(ns: &str, f: impl FnOnce() -> Fut + Send + 'static) -> Result<T>
where
    T: Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    let ns = ns.to_string();
    tokio::task::spawn_blocking(move || {
        in_netns(&ns, move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(f()))
        })
    })
    .await
    .context("the namespaced task")??
    .context("a runtime for the namespaced task")
}
