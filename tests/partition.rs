//! A real network partition of a running cluster: three peers, each with
//! its own Kubo node, in network namespaces (the test kit's `Cluster::start_in_netns`).
//! The test asks the peers who leads, cuts exactly that peer off the network, and checks
//! what a client talking to it gets: a refusal naming the cause, within the election
//! timeout plus a margin, never a hang or an acknowledged write. The majority elects a new
//! leader and keeps writing; once healed, the old leader follows the new one.
//! Needs root and iproute2 (`ip netns`); without them the test kit's `skip()` fails under
//! CI and reports a skip elsewhere.

use std::time::{Duration, Instant};

use ipfs_cluster_tests::*;

/// The raft timings of this test (`consensus.raft` in service.json).
const HEARTBEAT: Duration = Duration::from_secs(1);
const ELECTION: Duration = Duration::from_secs(3);

/// What a client of an isolated leader is told: consensus refuses because this peer,
/// although it still believes it leads, has no majority behind it.
const REFUSAL: &str = "consensus: this peer leads but cannot reach a majority of the cluster";

#[test]
fn isolated_leader_refuses_writes_within_the_election_timeout() {
    let net = match Netns::create(3) {
        Ok(n) => n,
        Err(e) => {
            skip(
                "isolated_leader_refuses_writes_within_the_election_timeout",
                &format!("network namespaces are not available here: {e:#}"),
            );
            return;
        }
    };
    one_at_a_time(async move {
        let timings = |_| {
            vec![
                (
                    "CLUSTER_RAFT_HEARTBEATTIMEOUT",
                    format!("{}s", HEARTBEAT.as_secs()),
                ),
                (
                    "CLUSTER_RAFT_ELECTIONTIMEOUT",
                    format!("{}s", ELECTION.as_secs()),
                ),
            ]
        };
        let c = Cluster::start_in_netns(net, 3, Join::AllAtOnce, timings)
            .await
            .expect("a 3-peer cluster in network namespaces");
        let net = c.netns.as_ref().unwrap();
        let all = [0, 1, 2];
        let leader = c
            .agreed_leader(&all, &[], Duration::from_secs(60))
            .await
            .unwrap();
        let majority: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
        println!("peer {leader} leads; cutting it off");

        net.isolate(leader, true).unwrap();
        // The client sits next to the isolated leader (its namespace reaches only itself).
        let url = format!("{}/pins/{}", c.rest(leader), random_cid());
        let t0 = Instant::now();
        let (status, body) = in_netns_async(net.ns(leader), move || async move {
            http("POST", &url, None).await
        })
        .await
        .unwrap()
        .expect("the isolated leader answers the write");
        let took = t0.elapsed();
        println!(
            "isolated leader answered in {took:?}: {status} {}",
            body.trim()
        );
        assert_eq!(status, 500, "{body}\n{}", c.logs());
        let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
        let message = v["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(REFUSAL) && message.contains("it is probably partitioned"),
            "{message}"
        );
        // A functional deadline, not a timing: openraft lets a leader go unconfirmed for up
        // to twice the election timeout before it counts as lost; 20 s covers two loaded
        // cores. The old behaviour (no quorum check) hung until the client gave up.
        let deadline = ELECTION * 2 + HEARTBEAT * 2 + Duration::from_secs(20);
        assert!(
            took < deadline,
            "the refusal took {took:?}, more than the election timeout and a margin ({deadline:?})"
        );

        // The other two elect a leader among themselves and keep writing.
        let new_leader = c
            .agreed_leader(&majority, &[leader], Duration::from_secs(60))
            .await
            .unwrap();
        let cid = random_cid();
        let (st, body) = http("POST", &format!("{}/pins/{cid}", c.rest(majority[0])), None)
            .await
            .unwrap();
        assert_eq!(
            st,
            200,
            "the majority refused a write: {body}\n{}",
            c.logs()
        );

        // Healed: the old leader follows the new one and gets the majority's write.
        net.isolate(leader, false).unwrap();
        let back = c
            .agreed_leader(&all, &[], Duration::from_secs(90))
            .await
            .unwrap();
        assert_eq!(back, new_leader);
        wait_for(Duration::from_secs(60), || async {
            c.state(leader)
                .await
                .map(|s| s.contains_key(&cid))
                .unwrap_or(false)
        })
        .await
        .unwrap_or_else(|_| panic!("the healed peer lacks the majority's pin\n{}", c.logs()));
    });
}
