//! The connector's view of the test kit's Kubo node: the node plus the connector's own
//! Kubo client pointed at it. The fake consensus these tests feed is the test kit's
//! (`ipfs_cluster_testkit::FakeConsensus`).
#![allow(dead_code)]

use std::{path::Path, time::Duration};

use ipfs_cluster_ipfs_connector::{Kubo, NodeAddr, Timeouts};
use ipfs_cluster_testkit::KuboNode;

/// A real Kubo daemon (the test kit's) on free loopback ports, with the connector's own
/// Kubo client pointed at it; killed on drop.
pub struct Ipfs {
    pub node: KuboNode,
}

impl Ipfs {
    /// Starts a node whose repo and log live in `dir`.
    pub async fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let node = KuboNode::start(dir)
            .await
            .unwrap_or_else(|e| panic!("starting Kubo: {e:#}"));
        Self { node }
    }

    /// Starts the daemon again on the same repo and ports and waits for `id`.
    pub async fn spawn(&mut self) {
        self.node
            .restart()
            .await
            .unwrap_or_else(|e| panic!("restarting Kubo: {e:#}"));
    }

    /// SIGTERM (SIGKILL after 30 s).
    pub async fn stop(&mut self) {
        self.node.stop().await;
    }

    pub fn multiaddr(&self) -> String {
        self.node.multiaddr()
    }

    pub fn kubo(&self) -> Kubo {
        Kubo::new(
            NodeAddr::Tcp(format!("127.0.0.1:{}", self.node.api_port)),
            Timeouts {
                request: Duration::from_secs(10),
                ..Default::default()
            },
            false,
        )
    }

    /// `add` of one file without pinning; returns its CID.
    pub async fn add(&self, data: &[u8]) -> String {
        self.node.add(data).await.expect("ipfs add")
    }
}
