//! The real binary: starts from an `init`ed config folder, serves Consensus on the
//! internal address, keeps pins across a kill -9 and restart, and refuses a taken port
//! with one `error:` line.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use ipfs_cluster_proto::{
    consensus::v1::{GetRequest, LeaderRequest, PinRequest},
    types::v1::{Pin, PinOptions, PinType},
    InternalToken,
};
use ipfs_cluster_testkit::free_port;

const CID: &str = "QmPZ9gcCEpqKTo6aq61g2nXGUhM4iCL3ewB6LDXZCtioEB";

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(dir: &Path, cport: u16, tport: u16) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_ipfs-cluster-consensus"))
            .arg("--config")
            .arg(dir)
            .env(
                "CLUSTER_INTERNAL_CONSENSUSLISTENMULTIADDRESS",
                format!("/ip4/127.0.0.1/tcp/{cport}"),
            )
            .env(
                "CLUSTER_INTERNAL_TRANSPORTLISTENMULTIADDRESS",
                format!("/ip4/127.0.0.1/tcp/{tport}"),
            )
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

async fn wait_ready(client: &mut ipfs_cluster_proto::client::ConsensusClient) {
    for _ in 0..150 {
        if client.leader(LeaderRequest {}).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("consensus binary did not become ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_pins_durably_and_refuses_a_taken_port() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ipfs_cluster_config::InitOptions {
        consensus: "raft".into(),
        ..Default::default()
    };
    ipfs_cluster_config::init_from(dir.path(), &opts, &|_| None).unwrap();
    let token = InternalToken::load(&dir.path().join("internal.token")).unwrap();
    let (cport, tport) = (free_port(), free_port());
    let addr = format!("127.0.0.1:{cport}").parse().unwrap();

    let mut p = spawn(dir.path(), cport, tport);
    let mut client = ipfs_cluster_proto::client::consensus(addr, &token);
    wait_ready(&mut client).await;
    let pin = Pin {
        cid: CID.into(),
        r#type: PinType::Data as i32,
        max_depth: -1,
        options: Some(PinOptions::default()),
        ..Default::default()
    };
    let got = client
        .pin(PinRequest { pin: Some(pin) })
        .await
        .unwrap()
        .into_inner()
        .pin
        .unwrap();
    assert!(got.allocations.is_empty());

    // A second instance on the same port exits non-zero with one error line.
    let second = spawn(dir.path(), cport, tport);
    let out = tokio::task::spawn_blocking(move || {
        let mut s = second;
        let status = s.0.wait().unwrap();
        let mut err = String::new();
        use std::io::Read;
        s.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        (status, err)
    })
    .await
    .unwrap();
    assert!(!out.0.success());
    assert!(out.1.contains("error: "), "{}", out.1);

    // kill -9, restart: the pin is still there.
    p.0.kill().unwrap();
    p.0.wait().unwrap();
    let _p = spawn(dir.path(), cport, tport);
    let mut client = ipfs_cluster_proto::client::consensus(addr, &token);
    wait_ready(&mut client).await;
    let again = client
        .get(GetRequest { cid: CID.into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.cid, CID);

    drop(_p);

    // A peer that left or was removed refuses to start without --bootstrap.
    std::fs::write(dir.path().join("raft.removed"), b"x").unwrap();
    let refused = spawn(dir.path(), cport, tport);
    let out = tokio::task::spawn_blocking(move || {
        let mut s = refused;
        let status = s.0.wait().unwrap();
        let mut err = String::new();
        use std::io::Read;
        s.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        (status, err)
    })
    .await
    .unwrap();
    assert!(!out.0.success());
    assert!(
        out.1.contains("error: this peer left or was removed") && out.1.contains("--bootstrap"),
        "{}",
        out.1
    );
}
