//! Tests of the store: upstream goldens, convergence, add-wins, fetch, crash and repair,
//! restart, trust, batching.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cid::Cid;
use data_encoding::HEXLOWER;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;

use crate::*;

/// A "network" that serves the blocks of every registered replica.
#[derive(Clone, Default)]
struct Net {
    stores: Arc<Mutex<Vec<CrdtStore>>>,
    calls: Arc<AtomicUsize>,
}

impl Net {
    fn add(&self, s: &CrdtStore) {
        self.stores.lock().unwrap().push(s.clone());
    }
}

impl NodeFetcher for Net {
    async fn fetch(&self, cid: Cid) -> Result<Vec<u8>, FetchError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        // Like a network: let other tasks run while "waiting".
        tokio::task::yield_now().await;
        let stores = self.stores.lock().unwrap().clone();
        for s in stores {
            if let Some(b) = s.get_block(&cid).map_err(|e| FetchError(e.to_string()))? {
                return Ok(b);
            }
        }
        Err(FetchError(format!("nobody has {cid}")))
    }
}

/// Hangs on the first `hang` calls, fails the next `fail`, then asks `inner`.
struct Flaky<F> {
    inner: F,
    hang: usize,
    fail: usize,
    calls: AtomicUsize,
}

impl<F: NodeFetcher> NodeFetcher for Flaky<F> {
    async fn fetch(&self, cid: Cid) -> Result<Vec<u8>, FetchError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n < self.hang {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        if n < self.hang + self.fail {
            return Err(FetchError("connection refused".into()));
        }
        self.inner.fetch(cid).await
    }
}

/// Serves garbage for every CID.
struct Liar;

impl NodeFetcher for Liar {
    async fn fetch(&self, _cid: Cid) -> Result<Vec<u8>, FetchError> {
        Ok(b"not the block you asked for".to_vec())
    }
}

fn cfg() -> CrdtConfig {
    CrdtConfig {
        fetch_timeout: Duration::from_millis(200),
        fetch_attempts: 3,
        ..Default::default()
    }
}

fn open(dir: &tempfile::TempDir, name: &str, cfg: CrdtConfig) -> CrdtStore {
    CrdtStore::open(&dir.path().join(name), cfg).unwrap()
}

fn all(s: &CrdtStore) -> Vec<(String, Vec<u8>)> {
    s.list("", None, usize::MAX).unwrap()
}

fn heads(s: &CrdtStore) -> Vec<(Cid, u64)> {
    s.heads().unwrap()
}

fn v(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

// ----- upstream goldens ------------------------------------------------------------------

/// Lines `GOLDEN <label> k=v ...` printed by go-ds-crdt v0.6.8 itself (see
/// testdata/go-ds-crdt-v0.6.8-golden_test.go.txt for the Go test that printed them).
fn golden(label: &str) -> std::collections::HashMap<String, String> {
    let text = include_str!("../testdata/go-ds-crdt-v0.6.8-golden.txt");
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("GOLDEN {label} ")))
        .unwrap_or_else(|| panic!("no golden {label}"));
    line.split(' ')
        .skip(2)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn assert_golden_node(s: &CrdtStore, p: &Published, label: &str) {
    let g = golden(label);
    let bytes = s.get_block(&p.cid).unwrap().unwrap();
    assert_eq!(HEXLOWER.encode(&bytes), g["bytes"], "{label}: node bytes");
    assert_eq!(p.cid.to_string(), g["cid"], "{label}: CID");
}

/// Drives two of our replicas through the sequence the Go test drove two go-ds-crdt
/// replicas through, and compares every node (bytes and CID), the broadcast, and the values.
#[tokio::test]
async fn golden_nodes_match_go_ds_crdt() {
    let dir = tempfile::tempdir().unwrap();
    let r1 = open(&dir, "r1", cfg());
    let r2 = open(&dir, "r2", cfg());
    let net = Net::default();
    net.add(&r2);

    let a = r1.put("/k1", v("v1")).await.unwrap();
    assert_golden_node(&r1, &a, "put_k1_v1");
    assert_eq!(a.height, 1);
    let b = r1.put("/k2", v("v2")).await.unwrap();
    assert_golden_node(&r1, &b, "put_k2_v2");
    let c = r1.delete("/k1").await.unwrap().unwrap();
    assert_golden_node(&r1, &c, "delete_k1");
    // The tombstone carries the element's block id as go-ds-crdt writes it.
    let node = decode_node(&c.cid, &r1.get_block(&c.cid).unwrap().unwrap()).unwrap();
    assert_eq!(node.delta.tombstones[0].id, block_id(&a.cid));
    assert!(block_id(&a.cid).starts_with("/CIQ"));

    let x = r2.put("/k3", v("v3")).await.unwrap();
    assert_golden_node(&r2, &x, "r2_put_k3_v3");
    assert_eq!(r1.process_head(x.cid, &net).await.unwrap(), 1);
    let hs = heads(&r1);
    assert_eq!(hs.len(), 2);
    assert_eq!(r1.max_height().unwrap(), 3);
    let bc: Vec<Cid> = hs.iter().map(|h| h.0).collect();
    assert_eq!(
        HEXLOWER.encode(&encode_broadcast(&bc)),
        golden("broadcast")["bytes"]
    );
    // What rebroadcast sends is the same message.
    assert_eq!(
        HEXLOWER.encode(&r1.rebroadcast_tick().unwrap().unwrap()),
        golden("broadcast")["bytes"]
    );

    let m = r1.put("/k4", v("v4")).await.unwrap();
    assert_golden_node(&r1, &m, "merge_put_k4_v4");

    let mut batch = Batch::new();
    batch.put("/k5", v("v5")).unwrap();
    batch.put("/k6", v("v6")).unwrap();
    r1.batch_delete(&mut batch, "/k2").unwrap();
    let bb = r1.commit(batch).await.unwrap().unwrap();
    assert_golden_node(&r1, &bb, "batch_k5_k6_del_k2");

    for (k, want, prio) in [
        ("/k1", None, None),
        ("/k2", None, None),
        ("/k3", Some("v3"), Some(1)),
        ("/k4", Some("v4"), Some(4)),
        ("/k5", Some("v5"), Some(5)),
        ("/k6", Some("v6"), Some(5)),
    ] {
        assert_eq!(r1.get(k).unwrap(), want.map(v), "{k}");
        assert_eq!(r1.priority(k), prio, "{k} priority");
    }
}

/// The codec alone, on golden bytes: encode a known delta, decode an upstream node.
#[test]
fn codec_matches_go_ds_crdt_bytes() {
    let delta = pb::Delta {
        elements: vec![pb::Element {
            key: "/k1".into(),
            id: String::new(),
            value: v("v1"),
        }],
        tombstones: vec![],
        priority: 1,
    };
    let (cid, bytes) = encode_node(&delta, &[]);
    let g = golden("put_k1_v1");
    assert_eq!(HEXLOWER.encode(&bytes), g["bytes"]);
    assert_eq!(cid.to_string(), g["cid"]);
    assert_eq!(block_cid(&bytes), cid);

    let g = golden("delete_k1");
    let bytes = HEXLOWER.decode(g["bytes"].as_bytes()).unwrap();
    let cid: Cid = g["cid"].parse().unwrap();
    let n = decode_node(&cid, &bytes).unwrap();
    assert_eq!(n.delta.priority, 3);
    assert!(n.delta.elements.is_empty());
    assert_eq!(n.delta.tombstones.len(), 1);
    assert_eq!(n.delta.tombstones[0].key, "/k1");
    let first: Cid = golden("put_k1_v1")["cid"].parse().unwrap();
    assert_eq!(n.delta.tombstones[0].id, block_id(&first));
    assert_eq!(
        n.links,
        vec![golden("put_k2_v2")["cid"].parse::<Cid>().unwrap()]
    );
    // Re-encoding gives the same bytes.
    assert_eq!(encode_node(&n.delta, &n.links).1, bytes);
    // A flipped byte no longer matches the CID.
    let mut bad = bytes.clone();
    bad[10] ^= 1;
    assert!(decode_node(&cid, &bad).is_err());
}

/// Serves the blocks go-ds-crdt produced (from the golden file).
struct GoldenNet;

impl NodeFetcher for GoldenNet {
    async fn fetch(&self, cid: Cid) -> Result<Vec<u8>, FetchError> {
        let text = include_str!("../testdata/go-ds-crdt-v0.6.8-golden.txt");
        for line in text.lines() {
            let label = line.split(' ').nth(1).unwrap_or_default();
            let g = golden(label);
            if g.get("cid") == Some(&cid.to_string()) {
                return Ok(HEXLOWER.decode(g["bytes"].as_bytes()).unwrap());
            }
        }
        Err(FetchError(format!("{cid} is not in the golden file")))
    }
}

/// A fresh replica follows the DAG go-ds-crdt built (a follower of an upstream cluster, minus
/// the network): it fetches all six upstream nodes and ends with go-ds-crdt's values.
#[tokio::test]
async fn a_replica_applies_the_dag_go_ds_crdt_built() {
    let dir = tempfile::tempdir().unwrap();
    let f = open(&dir, "f", cfg());
    let head: Cid = golden("batch_k5_k6_del_k2")["cid"].parse().unwrap();
    let out = f
        .apply_broadcast("upstream", &encode_broadcast(&[head]), &GoldenNet)
        .await
        .unwrap();
    assert_eq!(
        out,
        ApplyOutcome::Applied {
            heads: 1,
            merged: 6
        }
    );
    assert_eq!(heads(&f), vec![(head, 5)]);
    // The values go-ds-crdt had (GOLDEN value lines): k1, k2 gone; k3..k6 with priorities.
    let text = include_str!("../testdata/go-ds-crdt-v0.6.8-golden.txt");
    let mut checked = 0;
    for line in text.lines().filter(|l| l.starts_with("GOLDEN value ")) {
        // GOLDEN value k3="v3" prio=1 err=<nil>
        let rest = &line["GOLDEN value ".len()..];
        let (k, rest) = rest.split_once('=').unwrap();
        let (val, rest) = rest.split_once(' ').unwrap();
        let prio: u64 = rest
            .strip_prefix("prio=")
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let val = val.trim_matches('"');
        let key = format!("/{k}");
        if prio == 0 {
            assert_eq!(f.get(&key).unwrap(), None, "{key}");
        } else {
            assert_eq!(f.get(&key).unwrap(), Some(v(val)), "{key}");
            assert_eq!(f.priority(&key), Some(prio), "{key}");
        }
        checked += 1;
    }
    assert_eq!(checked, 6);
}

/// Same priority, different values: the greater value wins on both sides (go-ds-crdt
/// compares values bytewise, not ids, despite its doc comment).
#[tokio::test]
async fn tie_break_matches_go_ds_crdt() {
    let dir = tempfile::tempdir().unwrap();
    let r3 = open(&dir, "r3", cfg());
    let r4 = open(&dir, "r4", cfg());
    let net = Net::default();
    net.add(&r3);
    net.add(&r4);
    let h3 = r3.put("/t", v("aaa")).await.unwrap();
    let h4 = r4.put("/t", v("zzz")).await.unwrap();
    let g = golden("tie");
    assert_eq!(h3.cid.to_string(), g["h3"]);
    assert_eq!(h4.cid.to_string(), g["h4"]);
    r3.process_head(h4.cid, &net).await.unwrap();
    r4.process_head(h3.cid, &net).await.unwrap();
    assert_eq!(r3.get("/t").unwrap(), Some(v(&g["r3"])));
    assert_eq!(r4.get("/t").unwrap(), Some(v(&g["r4"])));
}

#[test]
fn topic_name_matches_upstream() {
    for name in ["ipfs-cluster", "test"] {
        assert_eq!(topic_name(name), golden(&format!("topic_{name}"))["topic"]);
    }
}

#[test]
fn broadcast_and_keys_round_trip() {
    let c: Cid = "bafybeicnblwybe5ixbwm4xvcfo3gavsydnoijnik4pd4cmjwswsruxxuqe"
        .parse()
        .unwrap();
    assert_eq!(decode_broadcast(&encode_broadcast(&[c])).unwrap(), vec![c]);
    // The format before CRDTBroadcast: a bare binary CID.
    assert_eq!(decode_broadcast(&c.to_bytes()).unwrap(), vec![c]);
    assert!(decode_broadcast(b"\x0a\x03abc").is_err());

    let pin: Cid = "QmXoypizjW3WknFiJnKLwHCnL72vedxjQkDDP1mXWo6uco"
        .parse()
        .unwrap();
    let k = pin_key(&pin);
    assert!(k.starts_with("/CIQ"), "{k}");
    assert_eq!(pin_cid_from_key(&k).unwrap(), pin);
    assert!(pin_cid_from_key("nope").is_err());
}

// ----- convergence -----------------------------------------------------------------------

/// Three replicas, random puts and deletes on a few keys, broadcasts delivered in random
/// order and late; after everything is delivered every replica has the same set and heads.
#[tokio::test]
async fn three_replicas_converge_under_random_interleavings() {
    let mut crashes = 0;
    let mut repairs = 0;
    for seed in 0..12u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let dir = tempfile::tempdir().unwrap();
        let net = Net::default();
        let rs: Vec<CrdtStore> = (0..3)
            .map(|i| {
                let s = open(&dir, &format!("r{i}"), cfg());
                net.add(&s);
                s
            })
            .collect();
        let mut inbox: Vec<Vec<(String, Vec<u8>)>> = vec![Vec::new(); 3];
        for _ in 0..60 {
            let r = rng.gen_range(0..3);
            let key = format!("/k{}", rng.gen_range(0..5));
            let published = match rng.gen_range(0..10) {
                0..=4 => Some(
                    rs[r]
                        .put(&key, format!("v{}", rng.gen_range(0..4)).into_bytes())
                        .await
                        .unwrap(),
                ),
                5..=6 => rs[r].delete(&key).await.unwrap(),
                _ => {
                    if !inbox[r].is_empty() {
                        let i = rng.gen_range(0..inbox[r].len());
                        let (from, msg) = inbox[r].remove(i);
                        // Now and then the replica "crashes" in the middle of the branch and
                        // is repaired later (or never, when a later branch finishes it).
                        let crash = rng.gen_range(0..4) == 0;
                        if crash {
                            rs[r].crash_after(rng.gen_range(0..3));
                        }
                        match rs[r].apply_broadcast(&from, &msg, &net).await {
                            Ok(_) => {}
                            Err(CrdtError::SimulatedCrash) => {
                                crashes += 1;
                                assert!(rs[r].is_dirty().unwrap());
                                // Undelivered: the sender's rebroadcast would bring it again.
                                inbox[r].push((from, msg));
                            }
                            Err(e) => panic!("seed {seed}: {e}"),
                        }
                        rs[r].crash_after(usize::MAX);
                        if rng.gen_range(0..3) == 0 && rs[r].is_dirty().unwrap() {
                            repairs += 1;
                            rs[r].repair(&net).await.unwrap();
                            assert!(!rs[r].is_dirty().unwrap());
                        }
                    }
                    None
                }
            };
            if let Some(p) = published {
                for (o, inb) in inbox.iter_mut().enumerate() {
                    if o != r {
                        inb.push((format!("peer{r}"), p.broadcast.clone()));
                    }
                }
            }
        }
        // Deliver the rest in random order.
        for (r, inb) in inbox.iter_mut().enumerate() {
            while !inb.is_empty() {
                let i = rng.gen_range(0..inb.len());
                let (from, msg) = inb.remove(i);
                rs[r].apply_broadcast(&from, &msg, &net).await.unwrap();
            }
        }
        for r in &rs {
            if r.is_dirty().unwrap() {
                r.repair(&net).await.unwrap();
            }
            assert!(!r.is_dirty().unwrap());
        }
        let want = all(&rs[0]);
        for r in &rs[1..] {
            assert_eq!(all(r), want, "seed {seed}: sets differ");
        }
        let hs = heads(&rs[0]);
        for r in &rs[1..] {
            assert_eq!(heads(r), hs, "seed {seed}: heads differ");
        }
        // A new update on top links every head and is the single head everywhere after.
        let p = rs[1].put("/final", v("x")).await.unwrap();
        for r in [0, 2] {
            rs[r]
                .apply_broadcast("peer1", &p.broadcast, &net)
                .await
                .unwrap();
            assert_eq!(heads(&rs[r]), vec![(p.cid, p.height)], "seed {seed}");
        }
    }
    assert!(
        crashes > 5 && repairs > 0,
        "crashes {crashes}, repairs {repairs}"
    );
}

// ----- set semantics ---------------------------------------------------------------------

/// A delete concurrent with a put of the same key: the put wins (add-wins), everywhere.
#[tokio::test]
async fn concurrent_add_and_delete_add_wins() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::default();
    let r1 = open(&dir, "r1", cfg());
    let r2 = open(&dir, "r2", cfg());
    net.add(&r1);
    net.add(&r2);
    let p = r1.put("/k", v("one")).await.unwrap();
    r2.apply_broadcast("r1", &p.broadcast, &net).await.unwrap();
    assert_eq!(r2.get("/k").unwrap(), Some(v("one")));

    // Concurrently: r1 deletes, r2 re-adds.
    let del = r1.delete("/k").await.unwrap().unwrap();
    let add = r2.put("/k", v("two")).await.unwrap();
    r1.apply_broadcast("r2", &add.broadcast, &net)
        .await
        .unwrap();
    r2.apply_broadcast("r1", &del.broadcast, &net)
        .await
        .unwrap();
    assert_eq!(r1.get("/k").unwrap(), Some(v("two")));
    assert_eq!(r2.get("/k").unwrap(), Some(v("two")));
    assert_eq!(heads(&r1), heads(&r2));
    assert_eq!(heads(&r1).len(), 2);
}

#[tokio::test]
async fn tombstone_then_readd() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::default();
    let r1 = open(&dir, "r1", cfg());
    let r2 = open(&dir, "r2", cfg());
    net.add(&r1);
    r1.put("/k", v("a")).await.unwrap();
    r1.delete("/k").await.unwrap().unwrap();
    assert_eq!(r1.get("/k").unwrap(), None);
    // Deleting an absent key publishes nothing.
    assert!(r1.delete("/k").await.unwrap().is_none());
    let p = r1.put("/k", v("b")).await.unwrap();
    assert_eq!(r1.get("/k").unwrap(), Some(v("b")));
    // A fresh replica walks the whole chain from the last head and agrees.
    r2.apply_broadcast("r1", &p.broadcast, &net).await.unwrap();
    assert_eq!(r2.get("/k").unwrap(), Some(v("b")));
    assert_eq!(heads(&r2), heads(&r1));
}

#[tokio::test]
async fn batch_delete_drops_pending_puts_and_events_follow_changes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, "s", cfg());
    let mut ev = s.subscribe();
    s.put("/a", v("1")).await.unwrap();
    let mut b = Batch::new();
    b.put("/b", v("2")).unwrap();
    b.put("/c", v("3")).unwrap();
    s.batch_delete(&mut b, "/b").unwrap();
    s.batch_delete(&mut b, "/a").unwrap();
    s.commit(b).await.unwrap().unwrap();
    assert_eq!(all(&s), vec![("/c".to_string(), v("3"))]);
    assert!(s.commit(Batch::new()).await.unwrap().is_none());
    let mut got = Vec::new();
    while let Ok(c) = ev.try_recv() {
        got.push(c);
    }
    assert_eq!(
        got,
        vec![
            Change::Put {
                key: "/a".into(),
                value: v("1")
            },
            Change::Delete { key: "/a".into() },
            Change::Put {
                key: "/c".into(),
                value: v("3")
            },
        ]
    );
    assert!(matches!(
        s.put("no-slash", v("x")).await,
        Err(CrdtError::InvalidKey { .. })
    ));
}

/// Two puts of one key in a batch: the last one wins (one element in the delta), also on a
/// replica that already had a value of the same priority.
#[tokio::test]
async fn last_put_of_a_key_in_a_batch_wins() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, "s", cfg());
    let mut b = Batch::new();
    b.put("/k", v("zz-first")).unwrap();
    b.put("/k", v("aa-last")).unwrap();
    assert_eq!(b.len(), 2);
    let p = s.commit(b).await.unwrap().unwrap();
    assert_eq!(s.get("/k").unwrap(), Some(v("aa-last")));
    let n = decode_node(&p.cid, &s.get_block(&p.cid).unwrap().unwrap()).unwrap();
    assert_eq!(n.delta.elements.len(), 1);
}

#[test]
fn store_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, "s", cfg());
    let net = Net::default();
    assert_send(&s.apply_broadcast("p", &[], &net));
    assert_send(&s.repair(&net));
    assert_send(&s.put("/a", v("1")));
    assert_send(&s.delete("/a"));
    assert_send(&s.commit(Batch::new()));
}

// ----- fetching --------------------------------------------------------------------------

/// The fetcher hangs (timeout) then fails, then succeeds: the branch is applied.
#[tokio::test]
async fn missing_nodes_are_fetched_through_timeouts_and_failures() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::default();
    let r1 = open(&dir, "r1", cfg());
    let r2 = open(&dir, "r2", cfg());
    net.add(&r1);
    r1.put("/a", v("1")).await.unwrap();
    let p = r1.put("/b", v("2")).await.unwrap();
    let flaky = Flaky {
        inner: net.clone(),
        hang: 1,
        fail: 1,
        calls: AtomicUsize::new(0),
    };
    let out = r2
        .apply_broadcast("r1", &p.broadcast, &flaky)
        .await
        .unwrap();
    assert_eq!(
        out,
        ApplyOutcome::Applied {
            heads: 1,
            merged: 2
        }
    );
    assert_eq!(all(&r2), all(&r1));
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 4); // hang, fail, ok, ok
}

/// The same head from two peers at once is fetched once.
#[tokio::test]
async fn a_head_arriving_twice_at_once_is_walked_once() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::default();
    let r1 = open(&dir, "r1", cfg());
    let r2 = open(&dir, "r2", cfg());
    net.add(&r1);
    for i in 0..3 {
        r1.put(&format!("/k{i}"), v("x")).await.unwrap();
    }
    let p = r1.put("/last", v("x")).await.unwrap();
    let (a, b) = tokio::join!(
        r2.apply_broadcast("r1", &p.broadcast, &net),
        r2.apply_broadcast("r3", &p.broadcast, &net)
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(net.calls.load(Ordering::SeqCst), 4);
    assert_eq!(all(&r2), all(&r1));
    assert_eq!(heads(&r2), heads(&r1));
}

/// The broadcasts of one writer arrive one after the other, each naming a newer head of
/// the same chain, and are applied concurrently (as the consensus service does): every
/// missing block is fetched once, not once per walk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_walks_fetch_each_block_once() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::default();
    let r1 = open(&dir, "r1", cfg());
    let r2 = open(&dir, "r2", cfg());
    net.add(&r1);
    let mut broadcasts = Vec::new();
    for i in 0..20 {
        broadcasts.push(r1.put(&format!("/k{i}"), v("x")).await.unwrap().broadcast);
    }
    let applies: Vec<_> = broadcasts
        .iter()
        .rev()
        .map(|b| {
            let (r2, net) = (r2.clone(), net.clone());
            let b = b.clone();
            tokio::spawn(async move { r2.apply_broadcast("r1", &b, &net).await })
        })
        .collect();
    for a in applies {
        a.await.unwrap().unwrap();
    }
    assert_eq!(all(&r2), all(&r1));
    assert_eq!(heads(&r2), heads(&r1));
    assert_eq!(net.calls.load(Ordering::SeqCst), 20, "one fetch per block");
}

/// Every attempt fails: an error naming the node, nothing applied, and the next broadcast
/// with a working fetcher applies everything.
#[tokio::test]
async fn fetch_failures_leave_the_state_untouched_and_retry_later() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::default();
    let r1 = open(&dir, "r1", cfg());
    let r2 = open(&dir, "r2", cfg());
    net.add(&r1);
    let p = r1.put("/a", v("1")).await.unwrap();
    let dead = Flaky {
        inner: net.clone(),
        hang: 0,
        fail: usize::MAX / 2,
        calls: AtomicUsize::new(0),
    };
    let err = r2
        .apply_broadcast("r1", &p.broadcast, &dead)
        .await
        .unwrap_err();
    assert!(matches!(err, CrdtError::Fetch { attempts: 3, .. }), "{err}");
    assert!(err.to_string().contains(&p.cid.to_string()));
    let err = r2
        .apply_broadcast("r1", &p.broadcast, &Liar)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("do not hash"), "{err}");
    assert!(r2.is_empty().unwrap());
    assert!(heads(&r2).is_empty());
    assert!(!r2.is_dirty().unwrap());
    r2.apply_broadcast("r1", &p.broadcast, &net).await.unwrap();
    assert_eq!(r2.get("/a").unwrap(), Some(v("1")));
}

// ----- trust -----------------------------------------------------------------------------

#[tokio::test]
async fn broadcasts_from_untrusted_peers_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::default();
    let r1 = open(&dir, "r1", cfg());
    net.add(&r1);
    let follower = open(
        &dir,
        "f",
        CrdtConfig {
            trusted_peers: TrustedPeers::from_list(["trusted-peer"]),
            ..cfg()
        },
    );
    let p = r1.put("/a", v("1")).await.unwrap();
    let out = follower
        .apply_broadcast("someone-else", &p.broadcast, &net)
        .await
        .unwrap();
    assert_eq!(out, ApplyOutcome::Untrusted);
    assert_eq!(net.calls.load(Ordering::SeqCst), 0, "nothing was fetched");
    assert!(follower.is_empty().unwrap());
    // Not even counted as seen for rebroadcast purposes.
    follower
        .apply_broadcast("trusted-peer", &p.broadcast, &net)
        .await
        .unwrap();
    assert_eq!(follower.get("/a").unwrap(), Some(v("1")));

    follower.distrust("trusted-peer");
    let p2 = r1.put("/b", v("2")).await.unwrap();
    assert_eq!(
        follower
            .apply_broadcast("trusted-peer", &p2.broadcast, &net)
            .await
            .unwrap(),
        ApplyOutcome::Untrusted
    );
    follower.trust("trusted-peer");
    assert!(follower.is_trusted("trusted-peer"));
    assert!(TrustedPeers::from_list(["*"]).is_trusted("anyone"));
    assert!(!TrustedPeers::from_list(Vec::<String>::new()).is_trusted("anyone"));
}

// ----- crash, repair, restart ------------------------------------------------------------

/// A crash after merging 2 of 5 nodes of a branch: the store is dirty after restart, and
/// repair finishes the branch.
#[tokio::test]
async fn crash_mid_branch_then_repair_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::default();
    let r1 = open(&dir, "r1", cfg());
    net.add(&r1);
    let mut last = None;
    for i in 0..5 {
        last = Some(r1.put(&format!("/k{i}"), v("x")).await.unwrap());
    }
    let last = last.unwrap();
    {
        let r2 = open(&dir, "r2", cfg());
        r2.crash_after(2);
        let err = r2
            .apply_broadcast("r1", &last.broadcast, &net)
            .await
            .unwrap_err();
        assert!(matches!(err, CrdtError::SimulatedCrash));
        assert!(r2.is_dirty().unwrap());
    }
    let r2 = open(&dir, "r2", cfg());
    assert!(
        r2.is_dirty().unwrap(),
        "the pending branch survives the restart"
    );
    assert_ne!(all(&r2), all(&r1));
    // The blocks were stored; repair needs no network.
    let rep = r2.repair(&NoFetch).await.unwrap();
    assert!(rep.merged >= 3, "{rep:?}");
    assert!(!r2.is_dirty().unwrap());
    assert_eq!(all(&r2), all(&r1));
    assert_eq!(heads(&r2), heads(&r1));
    // A second repair finds nothing to do.
    assert_eq!(r2.repair(&NoFetch).await.unwrap().merged, 0);
}

/// Marked dirty by hand (upstream's `state crdt mark-dirty`): repair walks and cleans.
#[tokio::test]
async fn mark_dirty_then_repair_and_mark_clean() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, "s", cfg());
    s.put("/a", v("1")).await.unwrap();
    s.put("/b", v("2")).await.unwrap();
    s.mark_dirty().unwrap();
    assert!(s.is_dirty().unwrap());
    let rep = s.repair(&NoFetch).await.unwrap();
    assert_eq!(
        rep,
        RepairReport {
            walked: 2,
            merged: 0
        }
    );
    assert!(!s.is_dirty().unwrap());
    s.mark_dirty().unwrap();
    s.mark_clean().unwrap();
    assert!(!s.is_dirty().unwrap());
}

#[tokio::test]
async fn state_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (want, want_heads) = {
        let s = open(&dir, "s", cfg());
        for i in 0..10 {
            s.put(&format!("/k{i}"), format!("v{i}").into_bytes())
                .await
                .unwrap();
        }
        s.delete("/k3").await.unwrap().unwrap();
        (all(&s), heads(&s))
    };
    let s = open(&dir, "s", cfg());
    assert_eq!(all(&s), want);
    assert_eq!(all(&s).len(), 9);
    assert_eq!(heads(&s), want_heads);
    assert!(!s.is_dirty().unwrap());
    let p = s.put("/k3", v("back")).await.unwrap();
    assert_eq!(p.height, 12);
    assert_eq!(
        s.list("/k", Some("/k2"), 2).unwrap(),
        vec![("/k3".to_string(), v("back")), ("/k4".to_string(), v("v4"))]
    );
}

// ----- rebroadcast -----------------------------------------------------------------------

#[tokio::test]
async fn rebroadcast_skips_heads_seen_since_last_tick() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::default();
    let r1 = open(&dir, "r1", cfg());
    let r2 = open(&dir, "r2", cfg());
    net.add(&r1);
    assert_eq!(r2.rebroadcast_tick().unwrap(), None);
    let p = r1.put("/a", v("1")).await.unwrap();
    r2.apply_broadcast("r1", &p.broadcast, &net).await.unwrap();
    // r2's only head was just broadcast by r1: nothing to resend this round.
    assert_eq!(r2.rebroadcast_tick().unwrap(), None);
    // Next round it is resent.
    assert_eq!(r2.rebroadcast_tick().unwrap(), Some(p.broadcast.clone()));
    let d = r2.next_rebroadcast_delay();
    assert!(
        d >= Duration::from_secs(42) && d <= Duration::from_secs(78),
        "{d:?}"
    );
}

// ----- batching --------------------------------------------------------------------------

#[tokio::test]
async fn batcher_commits_by_size_and_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, "s", cfg());
    let (tx, mut rx) = mpsc::channel(16);
    let b = Batcher::spawn(
        s.clone(),
        BatchingConfig {
            max_batch_size: 3,
            max_batch_age: Duration::from_millis(300),
            max_queue_size: 100,
        },
        tx,
    )
    .unwrap();
    for i in 0..8 {
        b.submit(Op::Put {
            key: format!("/k{i}"),
            value: v("x"),
        })
        .unwrap();
    }
    // A delete drops the same batch's put of the key.
    b.submit(Op::Delete { key: "/k6".into() }).unwrap();
    // Two full batches at once...
    let p1 = rx.recv().await.unwrap();
    let p2 = rx.recv().await.unwrap();
    assert_eq!((p1.height, p2.height), (1, 2));
    // ...and the rest when the age runs out.
    let p3 = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p3.height, 3);
    assert_eq!(s.len().unwrap(), 7);
    assert!(!s.has("/k6").unwrap());
    b.shutdown().await;
}

#[tokio::test]
async fn batcher_queue_is_bounded_and_shutdown_commits() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, "s", cfg());
    let (tx, mut rx) = mpsc::channel(16);
    let b = Batcher::spawn(
        s.clone(),
        BatchingConfig {
            max_batch_size: 1000,
            max_batch_age: Duration::from_secs(3600),
            max_queue_size: 2,
        },
        tx,
    )
    .unwrap();
    // The task has not run yet (current-thread runtime, no await): the queue fills.
    let put = |k: &str| Op::Put {
        key: k.into(),
        value: v("x"),
    };
    b.submit(put("/a")).unwrap();
    b.submit(put("/b")).unwrap();
    let err = b.submit(put("/c")).unwrap_err();
    assert!(matches!(err, CrdtError::QueueFull { max_queue_size: 2 }));
    assert!(err.to_string().contains("max_queue_size"));
    b.shutdown().await;
    assert_eq!(rx.recv().await.unwrap().height, 1);
    assert_eq!(s.len().unwrap(), 2);
    assert!(Batcher::spawn(s, BatchingConfig::default(), mpsc::channel(1).0).is_err());
}

/// Not a test: a figure. `cargo test -p ipfs-cluster-crdt --release -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn figure_sync_of_a_long_chain() {
    let n: usize = std::env::var("CRDT_FIGURE_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    let net = Net::default();
    let w = open(&dir, "writer", cfg());
    net.add(&w);
    let t = std::time::Instant::now();
    let mut last = None;
    for i in 0..n {
        last = Some(w.put(&format!("/k{i:06}"), v("x")).await.unwrap());
    }
    let put = t.elapsed();
    let f = open(&dir, "follower", cfg());
    let t = std::time::Instant::now();
    f.apply_broadcast("w", &last.unwrap().broadcast, &net)
        .await
        .unwrap();
    let sync = t.elapsed();
    assert_eq!(f.len().unwrap(), n as u64);
    let t = std::time::Instant::now();
    let mut b = Batch::new();
    for i in 0..n {
        b.put(&format!("/b{i:06}"), v("x")).unwrap();
    }
    w.commit(b).await.unwrap();
    let batch = t.elapsed();
    eprintln!("{n} single puts: {put:?}; a follower syncing that {n}-node chain: {sync:?}; one batch of {n}: {batch:?}");
}
