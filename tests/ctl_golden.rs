//! Golden-output tests of `ipfs-cluster-ctl` against a running cluster: every command's
//! text output is compared line by line with upstream's formats
//! after real peer IDs, CIDs, ports and times are replaced by placeholders; every command's
//! `--enc json` output is checked for 4-space indentation and upstream's field order;
//! error cases print upstream's text and exit code.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use ipfs_cluster_tests::*;
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// Running the ctl
// ---------------------------------------------------------------------------------------

/// What one ctl run printed.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `ipfs-cluster-ctl` (blocking) with optional stdin bytes and working directory.
fn ctl_blocking(args: &[String], stdin: Option<Vec<u8>>, cwd: Option<PathBuf>) -> Out {
    let mut cmd = Command::new(bin("ipfs-cluster-ctl"));
    cmd.args(args)
        .env_remove("CLUSTER_CREDENTIALS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let mut child = cmd.spawn().expect("starting ipfs-cluster-ctl");
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("ipfs-cluster-ctl {args:?} did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn ctl_full(args: &[&str], stdin: Option<&[u8]>, cwd: Option<&Path>) -> Out {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let stdin = stdin.map(<[u8]>::to_vec);
    let cwd = cwd.map(Path::to_path_buf);
    tokio::task::spawn_blocking(move || ctl_blocking(&args, stdin, cwd))
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// Normalising output: placeholders for real values
// ---------------------------------------------------------------------------------------

/// Replaces known real values (IDs, CIDs, ports) by placeholders, then times and
/// relative times by `<time>`, `<date>` and `<rel>`.
#[derive(Default, Clone)]
struct Norm {
    subs: Vec<(String, String)>,
}

impl Norm {
    fn add(&mut self, real: &str, ph: &str) {
        self.subs.push((real.to_string(), ph.to_string()));
        // Longest first so a value that contains another is replaced whole.
        self.subs.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
    }

    fn apply(&self, s: &str) -> String {
        let mut s = s.to_string();
        for (real, ph) in &self.subs {
            s = s.replace(real.as_str(), ph);
        }
        rel_times(&times(&s))
    }
}

fn digits(b: &[u8], at: usize, n: usize) -> bool {
    at + n <= b.len() && b[at..at + n].iter().all(u8::is_ascii_digit)
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±hh:mm)` → `<time>`; `YYYY-MM-DD HH:MM:SS` → `<date>`.
fn times(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        let date = digits(b, i, 4)
            && b.get(i + 4) == Some(&b'-')
            && digits(b, i + 5, 2)
            && b.get(i + 7) == Some(&b'-')
            && digits(b, i + 8, 2)
            && digits(b, i + 11, 2)
            && b.get(i + 13) == Some(&b':')
            && digits(b, i + 14, 2)
            && b.get(i + 16) == Some(&b':')
            && digits(b, i + 17, 2);
        if date && b[i + 10] == b'T' {
            let mut j = i + 19;
            if b.get(j) == Some(&b'.') {
                j += 1;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
            }
            if b.get(j) == Some(&b'Z') {
                j += 1;
            } else if matches!(b.get(j), Some(b'+') | Some(b'-')) && digits(b, j + 1, 2) {
                j += 6;
            }
            out.push_str("<time>");
            i = j;
        } else if date && b[i + 10] == b' ' {
            out.push_str("<date>");
            i += 19;
        } else {
            let ch = s[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// go-humanize relative times (`25 seconds from now`, `now`, `3 minutes ago`) → `<rel>`.
fn rel_times(s: &str) -> String {
    let mut out = Vec::new();
    for line in s.split('\n') {
        let mut l = line.to_string();
        for marker in ["Expires in: ", "Expired at: ", "Triggered at: "] {
            if let Some(pos) = l.find(marker) {
                let start = pos + marker.len();
                let end = l[start..].find(". ").map(|e| start + e).unwrap_or(l.len());
                let rel = &l[start..end];
                assert!(
                    is_humanized(rel),
                    "not a go-humanize time: {rel:?} in {line:?}"
                );
                l.replace_range(start..end, "<rel>");
            }
        }
        out.push(l);
    }
    out.join("\n")
}

fn is_humanized(rel: &str) -> bool {
    if rel == "now" {
        return true;
    }
    let Some(rest) = rel
        .strip_suffix(" from now")
        .or_else(|| rel.strip_suffix(" ago"))
    else {
        return false;
    };
    let (n, unit) = rest.split_once(' ').unwrap_or(("", rest));
    let units = [
        "second", "minute", "hour", "day", "week", "month", "year", "seconds", "minutes", "hours",
        "days", "weeks", "months", "years",
    ];
    (n == "1" && units[..7].contains(&unit))
        || (n.parse::<u64>().map(|n| n > 1).unwrap_or(false) && units[7..].contains(&unit))
}

/// The first 2 and last 6 characters of a peer ID, as the graph labels show it.
fn short(id: &str) -> String {
    format!("{}*{}", &id[..2], &id[id.len() - 6..])
}

/// Sorts the blocks of a stream output (a block starts at a line not indented by a space)
/// so streams in state order can be compared with a fixed expectation.
fn sorted_blocks(s: &str) -> String {
    let mut blocks: Vec<String> = Vec::new();
    for line in s.lines() {
        if line.starts_with(' ') && !blocks.is_empty() {
            let last = blocks.last_mut().unwrap();
            last.push_str(line);
            last.push('\n');
        } else {
            blocks.push(format!("{line}\n"));
        }
    }
    blocks.sort();
    blocks.concat()
}

// ---------------------------------------------------------------------------------------
// JSON checks
// ---------------------------------------------------------------------------------------

/// Parses consecutive JSON values (a ctl stream) and checks each is printed with 4-space
/// indentation followed by a newline, exactly as Go's `json.MarshalIndent(v, "", "    ")`.
fn json_values(text: &str) -> Vec<Value> {
    let values: Vec<Value> = serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("not a JSON stream ({e}):\n{text}"));
    let mut expected = String::new();
    for v in &values {
        // serde_json indents by 2; Go strings never hold a raw newline, so every leading
        // run of spaces is indentation and doubling it gives Go's 4-space form.
        for line in serde_json::to_string_pretty(v).unwrap().lines() {
            let body = line.trim_start_matches(' ');
            let indent = line.len() - body.len();
            expected.push_str(&" ".repeat(indent * 2));
            expected.push_str(body);
            expected.push('\n');
        }
    }
    assert_eq!(text, expected, "JSON not printed with 4-space indentation");
    values
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

const PIN_KEYS: &[&str] = &[
    "replication_factor_min",
    "replication_factor_max",
    "name",
    "mode",
    "shard_size",
    "user_allocations",
    "expire_at",
    "metadata",
    "pin_update",
    "origins",
    "cid",
    "type",
    "allocations",
    "max_depth",
    "reference",
    "timestamp",
];
const GPI_KEYS: &[&str] = &[
    "cid",
    "name",
    "allocations",
    "origins",
    "created",
    "metadata",
    "peer_map",
];
const PIN_INFO_SHORT_KEYS: &[&str] = &[
    "peername",
    "ipfs_peer_id",
    "ipfs_peer_addresses",
    "status",
    "timestamp",
    "error",
    "attempt_count",
    "priority_pin",
];
const ID_KEYS: &[&str] = &[
    "id",
    "addresses",
    "cluster_peers",
    "cluster_peers_addresses",
    "version",
    "commit",
    "rpc_protocol_version",
    "error",
    "ipfs",
    "peername",
];
const METRIC_KEYS: &[&str] = &[
    "name",
    "peer",
    "value",
    "expire",
    "valid",
    "weight",
    "partitionable",
    "received_at",
];

fn check_gpi(v: &Value) {
    assert_eq!(keys(v), GPI_KEYS, "{v}");
    // Every IPFS address here is on loopback, which the status leaves out (only public
    // addresses, as upstream), and upstream omits the empty list (`omitempty`).
    let expected: Vec<&str> = PIN_INFO_SHORT_KEYS
        .iter()
        .copied()
        .filter(|k| *k != "ipfs_peer_addresses")
        .collect();
    for p in v["peer_map"].as_object().unwrap().values() {
        assert_eq!(keys(p), expected, "{p}");
    }
}

// ---------------------------------------------------------------------------------------
// The cluster
// ---------------------------------------------------------------------------------------

/// The test kit's two-peer cluster (one Kubo node each, swarm-connected, peers named
/// `peer0` and `peer1`), with the ctl's working folder, `--host` and the normaliser.
struct Cluster {
    kit: ipfs_cluster_tests::Cluster,
    work: PathBuf,
    ids: Vec<String>,
    ipfs_ids: Vec<String>,
    host: String,
    norm: Norm,
}

/// Sets the peername (and optionally REST basic auth) in a peer's service.json.
fn edit_service_json(dir: &Path, peername: &str, auth: Option<(&str, &str)>) {
    let path = dir.join("service.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["cluster"]["peername"] = Value::from(peername);
    if let Some((user, pass)) = auth {
        v["api"]["restapi"]["basic_auth_credentials"] = serde_json::json!({ user: pass });
    }
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

async fn count_lines(url: &str, needle: &str) -> usize {
    match http("GET", url, None).await {
        Ok((200, body)) => body.matches(needle).count(),
        _ => 0,
    }
}

impl Cluster {
    async fn start() -> Self {
        let kit = ipfs_cluster_tests::Cluster::start_laid_out(
            Layout::OwnIpfs,
            2,
            Join::OneByOne,
            None,
            |i| vec![("CLUSTER_PEERNAME", format!("peer{i}"))],
        )
        .await
        .expect("two peers, each with its own Kubo node");
        kit.ipfs_of(1)
            .connect(kit.ipfs_of(0))
            .await
            .expect("swarm connect");
        // Both peers' metrics known before any golden comparison.
        for m in ["freespace", "ping"] {
            kit.wait_metric(m).await.unwrap();
        }
        let ipfs_ids = vec![kit.ipfs_of(0).id.clone(), kit.ipfs_of(1).id.clone()];
        let (id0, id1) = (kit.ids[0].clone(), kit.ids[1].clone());
        let (peers, ipfs) = (&kit.peers, [kit.ipfs_of(0), kit.ipfs_of(1)]);
        let tmp = kit.dir();
        let work = tmp.join("work");
        std::fs::create_dir_all(&work).unwrap();
        let mut norm = Norm::default();
        for (i, id) in [&id0, &id1].into_iter().enumerate() {
            norm.add(id, &format!("<id{i}>"));
            norm.add(&short(id), &format!("<short-id{i}>"));
        }
        for (i, id) in ipfs_ids.iter().enumerate() {
            norm.add(id, &format!("<ipfs{i}>"));
            norm.add(&short(id), &format!("<short-ipfs{i}>"));
        }
        for (i, p) in peers.iter().enumerate() {
            norm.add(
                &format!("/tcp/{}/", p.ports.swarm),
                &format!("/tcp/<swarm{i}>/"),
            );
        }
        for (i, n) in ipfs.iter().enumerate() {
            norm.add(
                &format!("/tcp/{}/", n.swarm_port),
                &format!("/tcp/<ipfs-swarm{i}>/"),
            );
        }
        Cluster {
            host: format!("/ip4/127.0.0.1/tcp/{}", peers[0].ports.rest),
            work,
            ids: vec![id0, id1],
            ipfs_ids,
            norm,
            kit,
        }
    }

    /// Peer `i`'s Kubo node.
    fn ipfs(&self, i: usize) -> &IpfsNode {
        self.kit.ipfs_of(i)
    }

    /// Runs the ctl against peer 0 with `args` after the global `--host`.
    async fn ctl(&self, args: &[&str]) -> Out {
        self.ctl_in(args, None).await
    }

    async fn ctl_in(&self, args: &[&str], stdin: Option<&[u8]>) -> Out {
        let mut all = vec!["--host", self.host.as_str()];
        all.extend_from_slice(args);
        ctl_full(&all, stdin, Some(&self.work)).await
    }

    /// Runs a command that must succeed and returns its normalised stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args).await;
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
        self.norm.apply(&out.stdout)
    }

    /// Runs a `--enc json` command that must succeed; returns the JSON values.
    async fn ok_json(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["--enc", "json"];
        all.extend_from_slice(args);
        let out = self.ctl(&all).await;
        assert_eq!(out.code, 0, "{all:?}: {out:?}");
        json_values(&out.stdout)
    }

    /// Peer indexes in the order of their IDs (how upstream sorts peer_map lines).
    fn by_id(&self) -> Vec<usize> {
        let mut order = vec![0, 1];
        order.sort_by(|a, b| self.ids[*a].cmp(&self.ids[*b]));
        order
    }

    /// The text of a GlobalPinInfo for `cid_ph` with every peer in `status`.
    fn gpi_text(&self, cid_ph: &str, name: &str, status: &str) -> String {
        let mut s = if name.is_empty() {
            format!("{cid_ph}:\n")
        } else {
            format!("{cid_ph} | {name}:\n")
        };
        for i in self.by_id() {
            s.push_str(&format!(
                "    > {:<20} : {status} | <time> | Attempts: 0 | Priority: false\n",
                format!("peer{i}")
            ));
        }
        s
    }

    async fn wait_pinned(&self, cid: &str) {
        let url = format!("{}/pins/{cid}", self.kit.peers[0].rest_url());
        wait_for(Duration::from_secs(60), || async {
            count_lines(&url, "\"status\":\"pinned\"").await == 2
        })
        .await
        .unwrap_or_else(|_| panic!("{cid} never pinned on both peers"));
    }
}

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_outputs_against_a_two_peer_cluster() {
    let c = Cluster::start().await;
    let order = c.by_id();

    // ---- id, version, peers ls -------------------------------------------------------
    let id_block = |i: usize| {
        format!(
            "<id{i}> | peer{i} | Sees 1 other peers\n  > Addresses:\n    - /ip4/127.0.0.1/tcp/<swarm{i}>/p2p/<id{i}>\n  > IPFS: <ipfs{i}>\n    - /ip4/127.0.0.1/tcp/<ipfs-swarm{i}>/p2p/<ipfs{i}>\n"
        )
    };
    assert_eq!(c.ok(&["id"]).await, id_block(0));
    let v = c.ok_json(&["id"]).await;
    assert_eq!(v.len(), 1);
    assert_eq!(keys(&v[0]), ID_KEYS);
    assert_eq!(v[0]["id"], c.ids[0].as_str());
    assert_eq!(v[0]["peername"], "peer0");
    assert_eq!(v[0]["version"], "1.1.6");
    assert_eq!(v[0]["ipfs"]["id"], c.ipfs_ids[0].as_str());

    assert_eq!(c.ok(&["version"]).await, "1.1.6\n");
    let v = c.ok_json(&["version"]).await;
    assert_eq!(v, vec![serde_json::json!({"version": "1.1.6"})]);

    let peers = c.ok(&["peers", "ls"]).await;
    assert_eq!(
        sorted_blocks(&peers),
        sorted_blocks(&format!("{}{}", id_block(0), id_block(1))),
        "{peers}"
    );
    let v = c.ok_json(&["peers", "ls"]).await;
    assert_eq!(v.len(), 2);
    for p in &v {
        assert_eq!(keys(p), ID_KEYS);
    }

    // ---- pin add / pin ls / status / recover / pin rm --------------------------------
    let cid_a = c.ipfs(0).add(b"ctl golden: plain pin\n").await.unwrap();
    let cid_b = c
        .ipfs(0)
        .add(b"ctl golden: pin with options\n")
        .await
        .unwrap();
    let cid_c = c.ipfs(0).add(b"ctl golden: no-status pin\n").await.unwrap();
    let cid_u = c.ipfs(0).add(b"ctl golden: update target\n").await.unwrap();
    let mut norm = c.norm.clone();
    for (cid, ph) in [
        (&cid_a, "<A>"),
        (&cid_b, "<B>"),
        (&cid_c, "<C>"),
        (&cid_u, "<U>"),
    ] {
        norm.add(cid, ph);
    }
    let n = |s: &str| norm.apply(s);

    // Plain: the status after one second may still be queued or pinning.
    let out = c.ctl(&["pin", "add", &cid_a]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let text = n(&out.stdout)
        .replace(": PIN_QUEUED |", ": PINNED |")
        .replace(": PINNING |", ": PINNED |")
        // An operation in flight on a fresh pin is a priority pin (upstream's
        // priority_pin_max_age); the status of a finished pin is not.
        .replace("| Priority: true", "| Priority: false");
    assert_eq!(text, c.gpi_text("<A>", "", "PINNED"));

    // --wait with options: pinned on both peers when it returns.
    let out = c
        .ctl(&[
            "pin",
            "add",
            "--wait",
            "--name",
            "opts",
            "--replication-min",
            "1",
            "--replication-max",
            "2",
            "--expire-in",
            "1h",
            "--metadata",
            "k1=v1",
            "--metadata",
            "k2=v2",
            &cid_b,
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(n(&out.stdout), c.gpi_text("<B>", "opts", "PINNED"));

    // --no-status prints the Pin.
    let out = c.ctl(&["pin", "add", "--no-status", &cid_c]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        n(&out.stdout),
        "<C> |  | PIN | Repl. Factor: -1 | Allocations: [everywhere] | Recursive | Metadata: no | Exp: ∞ | Added: <date>\n"
    );
    let v = c
        .ok_json(&[
            "pin",
            "add",
            "--no-status",
            "--name",
            "j",
            "--rmin",
            "1",
            "--rmax",
            "2",
            "--metadata",
            "a=b",
            "--expire-in",
            "2h",
            &cid_c,
        ])
        .await;
    assert_eq!(v.len(), 1);
    assert_eq!(keys(&v[0]), PIN_KEYS);
    assert_eq!(v[0]["cid"], cid_c.as_str());
    assert_eq!(v[0]["name"], "j");
    assert_eq!(v[0]["replication_factor_min"], 1);
    assert_eq!(v[0]["replication_factor_max"], 2);
    assert_eq!(v[0]["metadata"], serde_json::json!({"a": "b"}));
    assert_eq!(v[0]["type"], "pin");
    assert_eq!(v[0]["max_depth"], -1);
    assert_ne!(v[0]["expire_at"], "0001-01-01T00:00:00Z");
    let v = c.ok_json(&["pin", "add", "--wait", &cid_c]).await;
    assert_eq!(v.len(), 1);
    check_gpi(&v[0]);
    assert_eq!(v[0]["cid"], cid_c.as_str());
    for p in v[0]["peer_map"].as_object().unwrap().values() {
        assert_eq!(p["status"], "pinned", "{}", v[0]);
    }
    c.wait_pinned(&cid_a).await;

    // pin ls: one, all (state order, so blocks are sorted), json.
    let line_a = "<A> |  | PIN | Repl. Factor: -1 | Allocations: [everywhere] | Recursive | Metadata: no | Exp: ∞ | Added: <date>\n".to_string();
    let line_b = format!("<B> | opts | PIN | Repl. Factor: 1--2 | Allocations: [{}] | Recursive | Metadata: yes | Exp: <date> | Added: <date>\n", c.ids_sorted_ph());
    let line_c = "<C> |  | PIN | Repl. Factor: -1 | Allocations: [everywhere] | Recursive | Metadata: no | Exp: ∞ | Added: <date>\n".to_string();
    let out = c.ctl(&["pin", "ls", &cid_b]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(n(&out.stdout), line_b);
    let out = c.ctl(&["pin", "ls"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        sorted_blocks(&n(&out.stdout)),
        sorted_blocks(&format!("{line_a}{line_b}{line_c}"))
    );
    let v = c.ok_json(&["pin", "ls"]).await;
    assert_eq!(v.len(), 3);
    for p in &v {
        assert_eq!(keys(p), PIN_KEYS);
    }
    let v = c.ok_json(&["pin", "ls", &cid_b]).await;
    assert_eq!(
        v[0]["metadata"],
        serde_json::json!({"k1": "v1", "k2": "v2"})
    );
    let out = c.ctl(&["pin", "ls", "--filter", "pin"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.lines().count(), 3, "{out:?}");

    // status: one, all, several, --filter, --local.
    assert_eq!(
        n(&c.ok(&["status", &cid_a]).await),
        n(&c.gpi_text("<A>", "", "PINNED"))
    );
    let all = format!(
        "{}{}{}",
        c.gpi_text("<A>", "", "PINNED"),
        c.gpi_text("<B>", "opts", "PINNED"),
        c.gpi_text("<C>", "", "PINNED")
    );
    let out = c.ctl(&["status"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(sorted_blocks(&n(&out.stdout)), sorted_blocks(&all));
    let out = c.ctl(&["status", &cid_a, &cid_b]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        sorted_blocks(&n(&out.stdout)),
        sorted_blocks(&format!(
            "{}{}",
            c.gpi_text("<A>", "", "PINNED"),
            c.gpi_text("<B>", "opts", "PINNED")
        ))
    );
    let out = c.ctl(&["status", "--filter", "pinned"]).await;
    assert_eq!(sorted_blocks(&n(&out.stdout)), sorted_blocks(&all));
    let out = c.ctl(&["status", "--filter", "error,queued"]).await;
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:?}");
    let out = c.ctl(&["status", "--local"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let local = |cid: &str, name: &str| {
        let head = if name.is_empty() {
            format!("{cid}:\n")
        } else {
            format!("{cid} | {name}:\n")
        };
        format!(
            "{head}    > peer0                : PINNED | <time> | Attempts: 0 | Priority: false\n"
        )
    };
    assert_eq!(
        sorted_blocks(&n(&out.stdout)),
        sorted_blocks(&format!(
            "{}{}{}",
            local("<A>", ""),
            local("<B>", "opts"),
            local("<C>", "")
        ))
    );
    let v = c.ok_json(&["status"]).await;
    assert_eq!(v.len(), 3);
    v.iter().for_each(check_gpi);
    let v = c.ok_json(&["status", &cid_b]).await;
    assert_eq!(v.len(), 1);
    check_gpi(&v[0]);
    assert_eq!(v[0]["name"], "opts");

    // recover: one and all (pinned items stay pinned).
    let out = c.ctl(&["recover", &cid_a]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(n(&out.stdout), c.gpi_text("<A>", "", "PINNED"));
    // Recover all lists only what it re-queued: nothing while everything is pinned.
    for args in [vec!["recover"], vec!["recover", "--local"]] {
        let out = c.ctl(&args).await;
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (0, ""),
            "{args:?}: {out:?}"
        );
    }
    // Unpin <A> behind the cluster's back on peer0's IPFS: recover re-queues it there.
    let (st, body) = http(
        "POST",
        &format!("{}/api/v0/pin/rm?arg={cid_a}", c.ipfs(0).api_url()),
        None,
    )
    .await
    .unwrap();
    assert_eq!(st, 200, "{body}");
    let out = c.ctl(&["status", "--local", &cid_a]).await;
    assert_eq!(
        n(&out.stdout),
        "<A>:\n    > peer0                : UNEXPECTEDLY_UNPINNED: the item should be pinned but it is not | <time> | Attempts: 0 | Priority: false\n"
    );
    let out = c.ctl(&["recover"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let raw = n(&out.stdout);
    // An operation a worker is running counts the attempt it is making (upstream's
    // attempt_count + 1 while in progress); once pinned the count is back to the finished
    // attempts. Only the in-flight line is normalized.
    let raw = if raw.contains(": PINNING |") {
        raw.replace("| Attempts: 1 |", "| Attempts: 0 |")
    } else {
        raw
    };
    let text = raw
        .replace(": PIN_QUEUED |", ": PINNED |")
        .replace(": PINNING |", ": PINNED |")
        // An operation in flight on a fresh pin is a priority pin (upstream's
        // priority_pin_max_age); the status of a finished pin is not.
        .replace("| Priority: true", "| Priority: false");
    assert_eq!(
        text,
        "<A>:\n    > peer0                : PINNED | <time> | Attempts: 0 | Priority: false\n"
    );
    c.wait_pinned(&cid_a).await;
    let v = c.ok_json(&["recover", &cid_a]).await;
    check_gpi(&v[0]);

    // pin update: the new pin copies the source's options and the source stays pinned;
    // on the IPFS nodes the new CID is pinned (Kubo's pin/update where the old
    // one was pinned).
    let out = c.ctl(&["pin", "update", "--wait", &cid_b, &cid_u]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(n(&out.stdout), c.gpi_text("<U>", "opts", "PINNED"));
    let mut holders = 0;
    for node in [c.ipfs(0), c.ipfs(1)] {
        if node.pins().await.unwrap().contains(&cid_u) {
            holders += 1;
        }
    }
    assert!(holders >= 1, "no IPFS node pins the updated CID {cid_u}");
    let v = c.ok_json(&["pin", "ls", &cid_u]).await;
    assert_eq!(v[0]["name"], "opts");
    assert_eq!(v[0]["replication_factor_min"], 1);
    assert_eq!(
        v[0]["metadata"],
        serde_json::json!({"k1": "v1", "k2": "v2"})
    );
    assert_eq!(v[0]["pin_update"], cid_b.as_str());
    assert_eq!(n(&c.ok(&["pin", "ls", &cid_b]).await), line_b);
    let out = c
        .ctl(&[
            "pin",
            "update",
            "--no-status",
            "--name",
            "renamed",
            &cid_u,
            &cid_a,
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        n(&out.stdout),
        format!(
            "<A> | renamed | PIN | Repl. Factor: 1--2 | Allocations: [{}] | Recursive | Metadata: yes | Exp: <date> | Added: <date>\n",
            c.ids_sorted_ph()
        )
    );

    // pin rm: with status, --wait, --no-status, json.
    let out = c.ctl(&["pin", "rm", &cid_u]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let text = n(&out.stdout)
        .replace(": UNPINNING |", ": UNPINNED |")
        .replace(": UNPIN_QUEUED |", ": UNPINNED |");
    assert_eq!(text, c.gpi_text("<U>", "", "UNPINNED"));
    let out = c.ctl(&["pin", "rm", "--wait", &cid_b]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(n(&out.stdout), c.gpi_text("<B>", "", "UNPINNED"));
    let out = c.ctl(&["pin", "rm", "--no-status", &cid_a]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        n(&out.stdout),
        format!(
            "<A> | renamed | PIN | Repl. Factor: 1--2 | Allocations: [{}] | Recursive | Metadata: yes | Exp: <date> | Added: <date>\n",
            c.ids_sorted_ph()
        )
    );
    let v = c.ok_json(&["pin", "rm", "--no-status", &cid_c]).await;
    assert_eq!(keys(&v[0]), PIN_KEYS);
    assert_eq!(v[0]["cid"], cid_c.as_str());
    let out = c.ctl(&["pin", "ls"]).await;
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:?}");

    // ---- errors on CIDs ---------------------------------------------------------------
    // Unknown CID: pin ls and pin rm answer 404, printed as the API error block, exit 2.
    let not_found = "An error occurred:\n  Code: 404\n  Message: pin is not part of the pinset\n";
    for args in [vec!["pin", "ls", &cid_a], vec!["pin", "rm", &cid_a]] {
        let out = c.ctl(&args).await;
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (2, not_found),
            "{args:?}: {out:?}"
        );
    }
    let out = c.ctl(&["--enc", "json", "pin", "ls", &cid_a]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(
        out.stdout,
        "{\n    \"code\": 404,\n    \"message\": \"pin is not part of the pinset\"\n}\n"
    );
    // Status of an unknown CID: every peer reports unpinned (upstream behaviour).
    assert_eq!(
        n(&c.ok(&["status", &cid_a]).await),
        c.gpi_text("<A>", "", "UNPINNED")
    );
    // Invalid CIDs: local errors on stderr, exit 1.
    let out = c.ctl(&["status", "notacid"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.stdout, "");
    assert!(out.stderr.starts_with("error parsing cid: "), "{out:?}");
    let out = c.ctl(&["pin", "add", "notacid"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .starts_with("error : invalid path \"/ipfs/notacid\": "),
        "{out:?}"
    );
    let out = c.ctl(&["pin", "update", "notacid", &cid_a]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.starts_with("error parsing from Cid: "),
        "{out:?}"
    );
    for (args, err) in [
        (
            vec!["pin", "add", "--metadata", "nokv", &cid_a],
            "error parsing metadata: metadata were not in the format key=value\n",
        ),
        (
            vec!["pin", "add", "--expire-in", "3x", &cid_a],
            "error parsing expire-in: time: unknown unit \"x\" in duration \"3x\"\n",
        ),
        (
            vec!["status", "--filter", "nope"],
            "error parsing filter flag: invalid filter name\n",
        ),
    ] {
        let out = c.ctl(&args).await;
        assert_eq!(
            (out.code, out.stderr.as_str()),
            (1, err),
            "{args:?}: {out:?}"
        );
    }

    // --wait-timeout expiry: a CID no node has stays pinning; exit 62, nothing on stdout.
    let missing = only_hash(c.ipfs(0), b"ctl golden: content no node holds\n").await;
    let out = c
        .ctl(&["pin", "add", "--wait", "--wait-timeout", "2s", &missing])
        .await;
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (
            62,
            "",
            "error waiting for pin status: context deadline exceeded\n"
        ),
        "{out:?}"
    );
    let out = c.ctl(&["pin", "rm", "--no-status", &missing]).await;
    assert_eq!(out.code, 0, "{out:?}");

    // ---- add ---------------------------------------------------------------------------
    let hello = b"hello\n";
    std::fs::write(c.work.join("f1"), hello).unwrap();
    std::fs::create_dir_all(c.work.join("d/sub")).unwrap();
    std::fs::write(c.work.join("d/a"), b"file a\n").unwrap();
    std::fs::write(c.work.join("d/sub/b"), b"file b\n").unwrap();
    // The CID Kubo gives the same bytes.
    let f1 = c.ipfs(1).add(hello).await.unwrap();
    assert_eq!(f1, "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN");
    let out = c.ctl(&["add", "f1"]).await;
    assert_eq!(
        (out.code, out.stdout.clone()),
        (0, format!("added {f1} f1\n")),
        "{out:?}"
    );

    let out = c.ctl(&["add", "-r", "d"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    let names: Vec<&str> = lines
        .iter()
        .map(|l| {
            let parts: Vec<&str> = l.splitn(3, ' ').collect();
            assert_eq!(parts.len(), 3, "{l}");
            assert_eq!(parts[0], "added", "{l}");
            assert!(parts[1].starts_with("Qm") && parts[1].len() == 46, "{l}");
            parts[2]
        })
        .collect();
    assert_eq!(names, ["d/a", "d/sub/b", "d/sub", "d"]);
    let cids: Vec<&str> = lines.iter().map(|l| l.split(' ').nth(1).unwrap()).collect();
    let root = cids[3].to_string();

    let out = c.ctl(&["add", "--quiet", "-r", "d"]).await;
    assert_eq!(
        (out.code, out.stdout.clone()),
        (0, format!("{}\n", cids.join("\n"))),
        "{out:?}"
    );
    let out = c.ctl(&["add", "--quieter", "-r", "d"]).await;
    assert_eq!(
        (out.code, out.stdout.clone()),
        (0, format!("{root}\n")),
        "{out:?}"
    );
    let out = c.ctl(&["add", "--no-stream", "-r", "d"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), lines);

    let out = c.ctl_in(&["add", "-"], Some(b"from stdin\n")).await;
    let stdin_cid = c.ipfs(1).add(b"from stdin\n").await.unwrap();
    assert_eq!(
        (out.code, out.stdout.clone()),
        (0, format!("added {stdin_cid} stdin\n")),
        "{out:?}"
    );

    // CIDv1 / raw leaves: a one-block file becomes a raw block (bafkrei…), as in Kubo.
    let raw = "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am";
    for args in [
        vec!["add", "--cid-version", "1", "f1"],
        vec!["add", "--raw-leaves", "f1"],
    ] {
        let out = c.ctl(&args).await;
        assert_eq!(
            (out.code, out.stdout.clone()),
            (0, format!("added {raw} f1\n")),
            "{args:?}: {out:?}"
        );
    }
    let out = c.ctl(&["add", "-w", "f1"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let l: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(l.len(), 2, "{out:?}");
    assert_eq!(l[0], format!("added {f1} f1"));
    assert!(
        l[1].starts_with("added Qm")
            && l[1].ends_with(' ')
            && l[1].len() == "added ".len() + 46 + 1,
        "{out:?}"
    );

    let v = c.ok_json(&["add", "f1"]).await;
    assert_eq!(v.len(), 1);
    assert_eq!(keys(&v[0]), ["name", "cid", "size", "allocations"]);
    assert_eq!(v[0]["cid"], f1.as_str());
    assert_eq!(v[0]["name"], "f1");
    let out = c
        .ctl(&["--enc", "json", "add", "--no-stream", "-r", "d"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let v = json_values(&out.stdout);
    assert_eq!(v.len(), 1, "--no-stream json is one array");
    assert_eq!(v[0].as_array().unwrap().len(), 4);
    let out = c
        .ctl(&[
            "--enc",
            "json",
            "add",
            "--no-stream",
            "--quieter",
            "-r",
            "d",
        ])
        .await;
    let v = json_values(&out.stdout);
    assert_eq!(v[0].as_array().unwrap().len(), 1);
    assert_eq!(v[0][0]["cid"], root.as_str());

    // add --wait: the root reaches pinned on both peers.
    let out = c.ctl(&["add", "--wait", "f1"]).await;
    assert_eq!(
        (out.code, out.stdout.clone()),
        (0, format!("added {f1} f1\n")),
        "{out:?}"
    );
    assert_eq!(
        c.norm
            .apply(&c.ok(&["status", &f1]).await)
            .replace(&f1, "<F>"),
        c.gpi_text("<F>", "", "PINNED")
    );
    // add errors (local, exit 1).
    for (args, err) in [
        (vec!["add"], "error : need at least one path\n"),
        (
            vec!["add", "d"],
            "error : d is a directory, but Recursive option is not set\n",
        ),
    ] {
        let out = c.ctl(&args).await;
        assert_eq!(
            (out.code, out.stderr.as_str()),
            (1, err),
            "{args:?}: {out:?}"
        );
    }

    // ---- health ------------------------------------------------------------------------
    let graph = c.ok(&["health", "graph"]).await;
    let node = |kind: &str,
                top: &str,
                bottom: &str,
                group: &str,
                color: &str,
                shape: &str,
                per: bool| {
        format!(
            "{kind} [label=< <B> {top} </B> <BR/> <B> {bottom} </B> > group=\"{group}\" color=\"{color}\" style=\"filled\" colorscheme=\"x11\" fontcolor=\"black\" fontname=\"Arial\" shape=\"{shape}\" {}]",
            if per { "peripheries=\"2\" " } else { "" }
        )
    };
    let mut cl = Vec::new();
    for (n_, &i) in order.iter().enumerate() {
        cl.push(if i == 0 {
            node(
                &format!("C{n_}"),
                "peer0",
                "<short-id0>",
                "<id0>",
                "orange",
                "box3d",
                true,
            )
        } else {
            node(
                &format!("T{n_}"),
                &format!("peer{i}"),
                &format!("<short-id{i}>"),
                &format!("<id{i}>"),
                "orange",
                "box3d",
                false,
            )
        });
    }
    let cname = |i: usize| {
        if i == 0 {
            format!("C{}", order.iter().position(|&x| x == 0).unwrap())
        } else {
            format!("T{}", order.iter().position(|&x| x == i).unwrap())
        }
    };
    let mut ipfs_order = [0, 1];
    ipfs_order.sort_by(|a, b| c.ipfs_ids[*a].cmp(&c.ipfs_ids[*b]));
    let iname = |i: usize| format!("I{}", ipfs_order.iter().position(|&x| x == i).unwrap());
    let il: Vec<String> = ipfs_order
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            node(
                &format!("I{k}"),
                "IPFS",
                &format!("<short-ipfs{i}>"),
                &format!("<ipfs{i}>"),
                "turquoise3",
                "cylinder",
                false,
            )
        })
        .collect();
    let expected_graph = format!(
        "digraph cluster {{\n/* The nodes of the connectivity graph */\n/* The cluster-service peers */\nsubgraph  {{\nrank=\"min\"\n{}\n{}\n}}\n\n/* The ipfs peers */\nsubgraph  {{\nrank=\"max\"\n{}\n{}\n}}\n\n/* Edges representing active connections in the cluster */\n/* The connections among cluster-service peers */\n{} -> {}\n{} -> {}\n\n/* The connections between cluster peers and their ipfs daemons */\n{} -> {}\n{} -> {}\n\n/* The swarm peer connections among ipfs daemons in the cluster */\n{} -> {}\n{} -> {}\n}}",
        cl[0], cl[1], il[0], il[1],
        cname(order[0]), cname(order[1]), cname(order[1]), cname(order[0]),
        cname(order[0]), iname(order[0]), cname(order[1]), iname(order[1]),
        iname(ipfs_order[0]), iname(ipfs_order[1]), iname(ipfs_order[1]), iname(ipfs_order[0]),
    );
    assert_eq!(graph, expected_graph);
    // --file writes the same dot to a file and prints nothing; --all-ipfs-peers adds no
    // node here (every IPFS swarm peer is a cluster peer's daemon).
    let dot = c.work.join("graph.dot");
    let out = c
        .ctl(&["health", "graph", "--file", dot.to_str().unwrap()])
        .await;
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:?}");
    assert_eq!(
        c.norm.apply(&std::fs::read_to_string(&dot).unwrap()),
        expected_graph
    );
    assert_eq!(
        c.ok(&["health", "graph", "--all-ipfs-peers"]).await,
        expected_graph
    );
    // JSON encoding still prints dot.
    assert_eq!(
        c.norm
            .apply(&c.ctl(&["--enc", "json", "health", "graph"]).await.stdout),
        expected_graph
    );

    assert_eq!(
        c.ok(&["health", "metrics"]).await,
        "freespace\nping\npinqueue\ntag:group\n"
    );
    let v = c.ok_json(&["health", "metrics"]).await;
    assert_eq!(
        v,
        vec![serde_json::json!([
            "freespace",
            "ping",
            "pinqueue",
            "tag:group"
        ])]
    );
    let free = c.ok(&["health", "metrics", "freespace"]).await;
    let lines: Vec<&str> = free.lines().collect();
    assert_eq!(lines.len(), 2, "{free}");
    let mut seen = Vec::new();
    for l in &lines {
        // <peer> | freespace: <SI bytes> | Expires in: <rel>
        let parts: Vec<&str> = l.split(" | ").collect();
        assert_eq!(parts.len(), 3, "{l}");
        seen.push(parts[0].to_string());
        let value = parts[1]
            .strip_prefix("freespace: ")
            .unwrap_or_else(|| panic!("{l}"));
        let (num, unit) = value.split_once(' ').unwrap_or_else(|| panic!("{l}"));
        assert!(
            ["B", "kB", "MB", "GB", "TB", "PB", "EB"].contains(&unit),
            "{l}"
        );
        let f: f64 = num.parse().unwrap_or_else(|_| panic!("{l}"));
        assert!(
            if f < 10.0 {
                num.contains('.') || unit == "B"
            } else {
                !num.contains('.')
            },
            "{l}"
        );
        assert_eq!(parts[2], "Expires in: <rel>", "{l}");
    }
    seen.sort();
    assert_eq!(seen, ["<id0>", "<id1>"]);
    let ping = c.ok(&["health", "metrics", "ping"]).await;
    let mut pl: Vec<&str> = ping.lines().collect();
    pl.sort();
    assert_eq!(pl.len(), 2, "{ping}");
    for (l, i) in pl.iter().zip([0, 1]) {
        assert!(l.starts_with(&format!("<id{i}> | ping: {{")), "{l}");
        assert!(l.ends_with("} | Expires in: <rel>"), "{l}");
        assert!(l.contains(&format!("\"peer_name\":\"peer{i}\"")), "{l}");
    }
    let v = c.ok_json(&["health", "metrics", "freespace"]).await;
    assert_eq!(v.len(), 1, "metrics print as one JSON array");
    for m in v[0].as_array().unwrap() {
        assert_eq!(keys(m), METRIC_KEYS);
        assert_eq!(m["value"].as_str().unwrap(), m["weight"].to_string());
    }
    // No peer is down: no alerts.
    let out = c.ctl(&["health", "alerts"]).await;
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:?}");
    let out = c.ctl(&["--enc", "json", "health", "alerts"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        matches!(out.stdout.as_str(), "[]\n" | "null\n" | ""),
        "{out:?}"
    );

    // ---- ipfs gc -----------------------------------------------------------------------
    let gc = c.ok(&["ipfs", "gc"]).await;
    // <peername padded to 15>\n  > CIDs:\n    - <cid>… per peer, sorted by peer ID.
    let mut heads = Vec::new();
    for l in gc.lines() {
        if !l.starts_with(' ') {
            heads.push(l.to_string());
        } else {
            assert!(l == "  > CIDs:" || l.starts_with("    - "), "{gc}");
        }
    }
    let expected_heads: Vec<String> = order
        .iter()
        .map(|i| format!("{:<15}", format!("peer{i}")))
        .collect();
    assert_eq!(heads, expected_heads, "{gc}");
    assert_eq!(gc.matches("  > CIDs:\n").count(), 2, "{gc}");
    let v = c.ok_json(&["ipfs", "gc", "--local"]).await;
    let pm = v[0]["peer_map"].as_object().unwrap();
    assert_eq!(pm.len(), 1);
    let r = pm.values().next().unwrap();
    assert_eq!(&keys(r)[..2], ["peer", "peername"]);
    assert_eq!(r["peername"], "peer0");

    // ---- health bandwidth ----------------------------------------------------------------
    // Real per-protocol bytes from the transport: two connected peers exchange at least
    // gossipsub and the peer-call protocol.
    let out = c.ctl(&["health", "bandwidth"]).await;
    {
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.lines().count() >= 2, "{out:?}");
        assert!(out.stdout.contains("/meshsub/"), "{out:?}");
        for l in out.stdout.lines() {
            // <protocol right-aligned to 25 (%25s: longer ids overflow)>: In: <7>. Out: <7>.
            // RateIn: x.xxB/s. RateOut: x.xxB/s
            let at = l.find(": In: ").unwrap_or_else(|| panic!("{l}"));
            let (proto, rest) = l.split_at(at);
            assert!(
                proto.len() >= 25 && proto.trim_start().starts_with('/'),
                "{l}"
            );
            assert!(proto.len() == 25 || !proto.starts_with(' '), "{l}");
            assert!(
                rest.starts_with(": In: ") && rest.contains(". Out: "),
                "{l}"
            );
            assert!(rest.contains(". RateIn: ") && rest.ends_with("B/s"), "{l}");
        }
    }

    // ---- peers rm ----------------------------------------------------------------------
    let out = c.ctl(&["peers", "rm", "notapeer"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .starts_with("error parsing peer ID: failed to parse peer ID: "),
        "{out:?}"
    );
    let out = c.ctl(&["peers", "rm", &c.ids[1]]).await;
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:?}");
    let rest0 = c.kit.peers[0].rest_url();
    wait_for(Duration::from_secs(30), || async {
        count_lines(&format!("{rest0}/peers"), "\"peername\"").await == 1
    })
    .await
    .expect("peer1 still listed after peers rm");
    assert_eq!(
        c.ok(&["peers", "ls"]).await,
        id_block(0).replace("Sees 1 other peers", "Sees 0 other peers")
    );

    // ---- unreachable host --------------------------------------------------------------
    let port = free_port();
    let out = ctl_full(
        &["--host", &format!("/ip4/127.0.0.1/tcp/{port}"), "id"],
        None,
        None,
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stdout,
        format!("An error occurred:\n  Code: 0\n  Message: Get \"http://127.0.0.1:{port}/id\": dial tcp 127.0.0.1:{port}: connect: connection refused\n")
    );
    let out = ctl_full(
        &[
            "--host",
            &format!("/ip4/127.0.0.1/tcp/{port}"),
            "--enc",
            "json",
            "version",
        ],
        None,
        None,
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stdout,
        format!("{{\n    \"code\": 0,\n    \"message\": \"Get \\\"http://127.0.0.1:{port}/version\\\": dial tcp 127.0.0.1:{port}: connect: connection refused\"\n}}\n")
    );
    // Fail-over to the next address of --host.
    let hosts = format!("/ip4/127.0.0.1/tcp/{port},{}", c.host);
    let out = ctl_full(&["--host", &hosts, "version"], None, None).await;
    assert_eq!((out.code, out.stdout.as_str()), (0, "1.1.6\n"), "{out:?}");

    // ---- 401 ---------------------------------------------------------------------------
    let auth_dir = c.work.join("authpeer");
    let auth_peer =
        PeerDir::init(&auth_dir, &c.ipfs(0).multiaddr(), Some(&"d8".repeat(32))).unwrap();
    edit_service_json(&auth_dir, "authpeer", Some(("alice", "s3cret")));
    let auth_daemon = start_with_auth(&auth_peer).await;
    let ahost = format!("/ip4/127.0.0.1/tcp/{}", auth_peer.ports.rest);
    let out = ctl_full(&["--host", &ahost, "id"], None, None).await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (
            2,
            "An error occurred:\n  Code: 401\n  Message: unauthorized: no auth provided\n"
        ),
        "{out:?}"
    );
    let out = ctl_full(
        &[
            "--host",
            &ahost,
            "--force-http",
            "--basic-auth",
            "alice:wrong",
            "id",
        ],
        None,
        None,
    )
    .await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (
            2,
            "An error occurred:\n  Code: 401\n  Message: unauthorized: access denied\n"
        ),
        "{out:?}"
    );
    let out = ctl_full(&["--host", &ahost, "--enc", "json", "id"], None, None).await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (
            2,
            "{\n    \"code\": 401,\n    \"message\": \"unauthorized: no auth provided\"\n}\n"
        ),
        "{out:?}"
    );
    let out = ctl_full(
        &[
            "--host",
            &ahost,
            "--force-http",
            "--basic-auth",
            "alice:s3cret",
            "version",
        ],
        None,
        None,
    )
    .await;
    assert_eq!((out.code, out.stdout.as_str()), (0, "1.1.6\n"), "{out:?}");
    drop(auth_daemon);
}

/// The CID IPFS would give `data`, without storing it (`add?only-hash=true`).
async fn only_hash(node: &IpfsNode, data: &[u8]) -> String {
    let boundary = "----ctlgoldenboundary";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let req = hyper::Request::post(format!(
        "{}/api/v0/add?pin=false&only-hash=true",
        node.api_url()
    ))
    .header(
        "content-type",
        format!("multipart/form-data; boundary={boundary}"),
    )
    .body(http_body_util::Full::new(bytes::Bytes::from(body)))
    .unwrap();
    let (st, text) = send(req).await.unwrap();
    assert_eq!(st, 200, "{text}");
    let v: Value = serde_json::from_str(text.lines().last().unwrap_or("")).unwrap();
    v["Hash"].as_str().unwrap().to_string()
}

impl Cluster {
    /// Both peer IDs as placeholders, sorted by the real IDs (allocations are printed sorted).
    fn ids_sorted_ph(&self) -> String {
        self.by_id()
            .iter()
            .map(|i| format!("<id{i}>"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Starts a peer whose REST API requires basic auth (PeerDir::start polls /id without
/// credentials, which now answers 401): waits for any HTTP answer instead.
async fn start_with_auth(p: &PeerDir) -> Proc {
    let log = std::fs::File::create(p.dir.join("daemon.log")).unwrap();
    let proc = Proc::spawn(
        "ipfs-cluster-service",
        Command::new(bin("ipfs-cluster-service"))
            .arg("--config")
            .arg(&p.dir)
            .arg("daemon")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null()),
    )
    .unwrap();
    let url = format!("{}/id", p.rest_url());
    wait_for(Duration::from_secs(60), || async {
        matches!(http("GET", &url, None).await, Ok((401, _)))
    })
    .await
    .unwrap_or_else(|_| panic!("auth peer never answered 401; log:\n{}", p.log_tail()));
    proc
}

/// Commands that need no cluster: versions, bad flags, unknown commands, completion,
/// the command list, bad global options.
#[tokio::test]
async fn local_behaviour_without_a_cluster() {
    // Same version number from both binaries.
    let ctl = ctl_full(&["--version"], None, None).await;
    assert_eq!(
        (ctl.code, ctl.stdout.as_str()),
        (0, "ipfs-cluster-ctl version 1.1.6\n")
    );
    let svc = tokio::task::spawn_blocking(|| run_bin("ipfs-cluster-service", &["--version"], &[]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(svc.0, 0, "{svc:?}");
    let num = |s: &str| s.trim().rsplit(' ').next().unwrap().to_string();
    assert_eq!(num(&svc.1), num(&ctl.stdout), "service: {svc:?}");
    assert_eq!(svc.1, "ipfs-cluster-service version 1.1.6\n");

    // Help pages, usage errors (`Incorrect Usage`), unknown commands and the `commands`
    // listing are compared with recordings of upstream's ctl in
    // crates/ctl/tests/upstream_help.rs (tests/compat/record-ctl-help.sh makes them).

    // Bad encoding, bad host, bad secret.
    let out = ctl_full(&["--enc", "xml", "id"], None, None).await;
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (1, "error : unsupported encoding\n"),
        "{out:?}"
    );
    let out = ctl_full(&["--host", "foo", "id"], None, None).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.starts_with("error parsing host multiaddress: "),
        "{out:?}"
    );
    let out = ctl_full(&["--secret", "zz", "id"], None, None).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.starts_with("error parsing secret: "), "{out:?}");

    // completion scripts (beyond upstream).
    for (shell, marker) in [
        ("bash", "complete"),
        ("zsh", "#compdef"),
        ("fish", "complete -c"),
    ] {
        let out = ctl_full(&["completion", shell], None, None).await;
        assert_eq!(out.code, 0, "{shell}: {out:?}");
        assert!(out.stdout.contains(marker), "{shell}: {}", out.stdout);
        assert!(out.stdout.contains("ipfs-cluster-ctl"), "{shell}");
    }
    let out = ctl_full(&["completion", "tcsh"], None, None).await;
    assert_ne!(out.code, 0, "{out:?}");
}

#[test]
fn normaliser_replaces_times_and_relative_times() {
    assert_eq!(
        times(
            "a 2026-11-26T22:37:53.704501411Z | b 2024-05-01T10:20:30+02:00 c 2024-05-01 10:20:30."
        ),
        "a <time> | b <time> c <date>."
    );
    assert_eq!(
        rel_times("x | Expires in: 25 seconds from now\ny: n. Expired at: 1 minute ago. Triggered at: now"),
        "x | Expires in: <rel>\ny: n. Expired at: <rel>. Triggered at: <rel>"
    );
    assert!(!is_humanized("1 seconds ago"));
    assert_eq!(
        short("12D3KooWABY3VGJ8DC62R1s92Q4UyPkfjLazLJeKZ1y96WeJmUwe"),
        "12*eJmUwe"
    );
}

// ---------------------------------------------------------------------------------------
// libp2p-http (`--host …/p2p/<id>`)
// ---------------------------------------------------------------------------------------

/// Sets api.restapi's own libp2p endpoint (listen address, id, private_key).
fn set_restapi_libp2p(dir: &Path, listen: &str, id: &str, key: &str) {
    let path = dir.join("service.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let r = &mut v["api"]["restapi"];
    r["libp2p_listen_multiaddress"] = Value::from(listen);
    r["id"] = Value::from(id);
    r["private_key"] = Value::from(key);
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// The ctl over the cluster host's `/libp2p-http` (with the secret): id, pin add, status;
/// a wrong or missing secret fails like a connection error (code 0, exit 1); the tunnel
/// shows up in GET /health/bandwidth; then the REST API's own libp2p host answers `id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libp2p_http_over_the_cluster_host_and_its_own_host() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("ipfs")).unwrap();
    let ipfs = IpfsNode::start(&tmp.path().join("ipfs")).await.unwrap();
    let secret = "5c".repeat(32);
    let p = PeerDir::init(&tmp.path().join("peer"), &ipfs.multiaddr(), Some(&secret)).unwrap();
    edit_service_json(&p.dir, "p2ppeer", None);
    let mut daemon = p.start(&[]).await.unwrap();
    let id = get_json(&format!("{}/id", p.rest_url())).await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let host = format!("/ip4/127.0.0.1/tcp/{}/p2p/{id}", p.ports.swarm);
    let run = |args: Vec<String>| async move {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        ctl_full(&a, None, None).await
    };
    let with = |secret: &str, rest: &[&str]| {
        let mut v = vec!["--host".to_string(), host.clone()];
        if !secret.is_empty() {
            v.extend(["--secret".to_string(), secret.to_string()]);
        }
        v.extend(rest.iter().map(|s| s.to_string()));
        v
    };

    // Unlike upstream, holding the secret is not enough while the REST API has no
    // credentials: the ctl's throw-away host is not a cluster member, so the cluster host
    // refuses its /libp2p-http stream.
    let refused = run(with(&secret, &["id"])).await;
    assert_eq!(refused.code, 1, "{refused:?}");
    wait_for(Duration::from_secs(10), || async {
        p.log_tail().contains("not a cluster member")
    })
    .await
    .unwrap_or_else(|_| panic!("no refusal logged:\n{}", p.log_tail()));
    // With basic_auth_credentials the REST API's own auth guards tunnelled requests.
    daemon.terminate(Duration::from_secs(20));
    edit_service_json(&p.dir, "p2ppeer", Some(("alice", "s3cret")));
    let mut daemon = p.start_until(&[], "/health", 204).await.unwrap();
    let with = |secret: &str, rest: &[&str]| {
        let mut v = with(secret, &["--basic-auth", "alice:s3cret", "--force-http"]);
        v.extend(rest.iter().map(|s| s.to_string()));
        v
    };

    // id over libp2p-http: the same block as over HTTP.
    let over_p2p = run(with(&secret, &["id"])).await;
    assert_eq!(over_p2p.code, 0, "{over_p2p:?}\n{}", p.log_tail());
    let over_http = run(vec![
        "--host".into(),
        format!("/ip4/127.0.0.1/tcp/{}", p.ports.rest),
        "--basic-auth".into(),
        "alice:s3cret".into(),
        "--force-http".into(),
        "id".into(),
    ])
    .await;
    assert_eq!(over_p2p.stdout, over_http.stdout);
    assert!(over_p2p.stdout.starts_with(&format!("{id} | p2ppeer | ")));

    // pin add + status over libp2p-http; the pin really reaches IPFS.
    let cid = ipfs.add(b"pinned through libp2p-http\n").await.unwrap();
    let out = run(with(&secret, &["pin", "add", &cid])).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with(&format!("{cid}:\n")), "{out:?}");
    wait_for(Duration::from_secs(30), || {
        let args = with(&secret, &["status", &cid]);
        async move {
            let o = run(args).await;
            o.code == 0 && o.stdout.contains(": PINNED |")
        }
    })
    .await
    .expect("status over libp2p-http never showed PINNED");
    assert!(ipfs.pins().await.unwrap().contains(&cid));

    // A wrong secret, and no secret, fail as a connection error: code 0, exit 1.
    for bad in ["a1".repeat(32), String::new()] {
        let out = run(with(&bad, &["id"])).await;
        assert_eq!(out.code, 1, "{out:?}");
        assert!(
            out.stdout.starts_with(&format!(
                "An error occurred:\n  Code: 0\n  Message: Get \"libp2p://{id}/id\": "
            )),
            "{out:?}"
        );
    }
    // A secret that is not 32 bytes is a local error.
    let out = run(with("abcd", &["id"])).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.starts_with("error parsing secret: "), "{out:?}");

    // The tunnel's bytes are counted under /libp2p-http.
    let req = hyper::Request::get(format!("{}/health/bandwidth", p.rest_url()))
        .header("authorization", "Basic YWxpY2U6czNjcmV0")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let (st, text) = send(req).await.unwrap();
    assert_eq!(st, 200, "{text}");
    let bw: Value = serde_json::from_str(&text).unwrap();
    let t = &bw["/libp2p-http"];
    assert!(
        t["total_in"].as_i64().unwrap() > 0 && t["total_out"].as_i64().unwrap() > 0,
        "{bw}"
    );
    let out = run(vec![
        "--host".into(),
        format!("/ip4/127.0.0.1/tcp/{}", p.ports.rest),
        "--basic-auth".into(),
        "alice:s3cret".into(),
        "--force-http".into(),
        "health".into(),
        "bandwidth".into(),
    ])
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("             /libp2p-http: In: ")),
        "{out:?}"
    );

    // The REST API's own libp2p host: a second identity from a scratch `init`. Unlike
    // upstream it is a private network keyed by the cluster secret: without it (or with
    // another one) nothing connects; with it, the REST API's credentials apply.
    daemon.terminate(Duration::from_secs(20));
    let scratch = tmp.path().join("scratch");
    let (code, _, err) = run_bin(
        "ipfs-cluster-service",
        &["--config", scratch.to_str().unwrap(), "init"],
        &[],
    )
    .unwrap();
    assert_eq!(code, 0, "{err}");
    let ident: Value =
        serde_json::from_str(&std::fs::read_to_string(scratch.join("identity.json")).unwrap())
            .unwrap();
    let api_id = ident["id"].as_str().unwrap();
    let port = free_port();
    set_restapi_libp2p(
        &p.dir,
        &format!("/ip4/127.0.0.1/tcp/{port}"),
        api_id,
        ident["private_key"].as_str().unwrap(),
    );
    let _daemon = p.start_until(&[], "/health", 204).await.unwrap();
    let own = |secret: &str| {
        let mut v = vec![
            "--host".to_string(),
            format!("/ip4/127.0.0.1/tcp/{port}/p2p/{api_id}"),
            "--basic-auth".into(),
            "alice:s3cret".into(),
            "--force-http".into(),
        ];
        if !secret.is_empty() {
            v.extend(["--secret".to_string(), secret.to_string()]);
        }
        v.push("id".into());
        v
    };
    let out = run(own(&secret)).await;
    assert_eq!(out.code, 0, "{out:?}\n{}", p.log_tail());
    assert_eq!(out.stdout, over_http.stdout);
    for bad in ["a1".repeat(32), String::new()] {
        let out = run(own(&bad)).await;
        assert_eq!(
            out.code, 1,
            "the own host without the right secret: {out:?}"
        );
    }
    // The access log names the libp2p peer (ctl's own id), not an address.
    let log = std::fs::read_to_string(p.dir.join("daemon.log")).unwrap_or_default();
    assert!(
        log.lines()
            .any(|l| l.contains("restapilog: 12D3KooW") && l.contains(" - alice [")),
        "no access log line naming a peer id:\n{}",
        p.log_tail()
    );
}
