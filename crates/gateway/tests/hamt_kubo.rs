//! Large directories through `POST /add` against the real Kubo binary: the same generated
//! directory trees are written to disk and added with `ipfs add -r -n` (Kubo 0.43.0,
//! whose boxo shards directories with the same rule and layout as upstream's adder), and
//! posted to the gateway's real `/add` as the Go client sends them. Every output line
//! (files, then directories in upstream's listing order) and the root CID must be equal:
//! directories just at and just above boxo's 256 KiB sharding threshold, 10,000 files of
//! 4 KiB, names of varied lengths and characters, nested directories inside a sharded one,
//! CIDv0 and CIDv1 with raw leaves, wrapped. Our side runs against the gateway's contract
//! doubles (`common`); only our own gRPC contracts are faked, never IPFS.

use std::{path::Path, process::Command};

use ipfs_cluster_gateway::add::hamt;
use ipfs_cluster_testkit::{kubo_bin, skip};

mod common;

use common::*;

/// One generated tree: (path relative to the top directory, content); directories are
/// implied by the paths.
struct Tree {
    top: &'static str,
    files: Vec<(String, Vec<u8>)>,
}

impl Tree {
    fn write(&self, root: &Path) {
        for (path, data) in &self.files {
            let p = root.join(self.top).join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
    }

    /// The multipart body the Go client sends for the top directory: every directory part
    /// before its entries, entries by name, paths query-escaped.
    fn multipart(&self) -> (String, Vec<u8>) {
        let mut files: Vec<&(String, Vec<u8>)> = self.files.iter().collect();
        files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let boundary = "----hamtkuboboundary";
        let mut body = Vec::new();
        let mut part = |name: &str, ctype: &str, data: &[u8]| {
            let escaped: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{escaped}\"\r\nContent-Type: {ctype}\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        };
        part(self.top, "application/x-directory", b"");
        let mut dirs_sent: Vec<String> = Vec::new();
        for (path, data) in files {
            let segs: Vec<&str> = path.split('/').collect();
            for i in 1..segs.len() {
                let d = segs[..i].join("/");
                if !dirs_sent.contains(&d) {
                    part(&format!("{}/{d}", self.top), "application/x-directory", b"");
                    dirs_sent.push(d);
                }
            }
            part(
                &format!("{}/{path}", self.top),
                "application/octet-stream",
                data,
            );
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        (format!("multipart/form-data; boundary={boundary}"), body)
    }
}

/// `ipfs add -r -n` of `dir` in a fresh repo: every `added <cid> <path>` line as
/// (path, cid), in Kubo's order.
fn kubo_add(ipfs: &Path, repo: &Path, dir: &Path, args: &[&str]) -> Vec<(String, String)> {
    let out = Command::new(ipfs)
        .env("IPFS_PATH", repo)
        .args(["add", "-r", "-n", "--progress=false"])
        .args(args)
        .arg(dir)
        .current_dir(dir.parent().unwrap())
        .output()
        .expect("running ipfs add");
    assert!(
        out.status.success(),
        "ipfs add {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("added ")?;
            let (cid, path) = rest.split_once(' ').unwrap_or((rest, ""));
            Some((path.to_string(), cid.to_string()))
        })
        .collect()
}

/// `POST /add?<query>` of the tree: every output line as (name, cid).
async fn our_add(h: &Harness, query: &str, tree: &Tree) -> Vec<(String, String)> {
    let (ct, body) = tree.multipart();
    let tcp = tokio::net::TcpStream::connect(h.rest).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::post(format!("/add?{query}"))
        .header("host", "127.0.0.1")
        .header("content-type", ct)
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let c = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&c.to_bytes()).into_owned();
    text.lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert!(v.get("code").is_none(), "error from /add: {l}");
            (
                v["name"].as_str().unwrap().to_string(),
                v["cid"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `n` files whose names have exactly `len` bytes (the last one `len + extra`).
fn fixed_names(n: usize, len: usize, extra: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let want = if i + 1 == n { len + extra } else { len };
            let mut name = format!("f{i:05}-");
            while name.len() < want {
                name.push((b'a' + (name.len() % 26) as u8) as char);
            }
            (name, format!("entry {i}\n").into_bytes())
        })
        .collect()
}

/// 4 KiB of content distinct per file.
fn four_kib(i: usize) -> Vec<u8> {
    let mut x = i as u64 * 2_654_435_761 + 1;
    (0..4096)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

/// Names of many lengths (1 to 200 bytes) and characters, some in subdirectories.
fn varied(n: usize) -> Vec<(String, Vec<u8>)> {
    let alphabet: Vec<char> = "abcXYZ019 _-+=,;@()[]éßü漢字".chars().collect();
    (0..n)
        .map(|i| {
            let len = 1 + (i * 7919) % 200;
            let mut name = format!("{i}");
            let mut k = i;
            while name.len() < len {
                name.push(alphabet[k % alphabet.len()]);
                k = k / 3 + 7;
            }
            let name = name.trim_end().to_string();
            let path = if i % 250 == 0 {
                format!("sub{}/{name}", i / 250)
            } else {
                name
            };
            (path, format!("varied {i}").into_bytes())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_directories_match_kubo() {
    let ipfs = match kubo_bin() {
        Ok(p) => p,
        Err(e) => {
            skip("hamt_kubo", &format!("no Kubo: {e:#}"));
            return;
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("ipfs-repo");
    let init = Command::new(&ipfs)
        .env("IPFS_PATH", &repo)
        .args(["init", "--profile", "test", "--empty-repo"])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let h = start(|_| {}).await;

    let v0: (&str, &[&str]) = ("", &[]);
    let v1: (&str, &[&str]) = (
        "cid-version=1&raw-leaves=true",
        &["--cid-version=1", "--raw-leaves"],
    );
    let wrap = |q: &str| {
        if q.is_empty() {
            "wrap-with-directory=true".to_string()
        } else {
            format!("{q}&wrap-with-directory=true")
        }
    };
    let ten_k = || -> Vec<(String, Vec<u8>)> {
        (0..10_000)
            .map(|i| (format!("file-{i:05}.bin"), four_kib(i)))
            .collect()
    };
    // (name, tree, query, Kubo flags, sharded?)
    let cases: Vec<(&str, Tree, String, Vec<&str>, bool)> = vec![
        // CIDv0: 34-byte CIDs, so 4096 names of 30 bytes estimate exactly 262144.
        (
            "at threshold v0",
            Tree {
                top: "at0",
                files: fixed_names(4096, 30, 0),
            },
            v0.0.into(),
            v0.1.to_vec(),
            false,
        ),
        (
            "one byte over v0",
            Tree {
                top: "over0",
                files: fixed_names(4096, 30, 1),
            },
            v0.0.into(),
            v0.1.to_vec(),
            true,
        ),
        // CIDv1: 36-byte CIDs, names of 28 bytes.
        (
            "at threshold v1",
            Tree {
                top: "at1",
                files: fixed_names(4096, 28, 0),
            },
            v1.0.into(),
            v1.1.to_vec(),
            false,
        ),
        (
            "one byte over v1",
            Tree {
                top: "over1",
                files: fixed_names(4096, 28, 1),
            },
            v1.0.into(),
            v1.1.to_vec(),
            true,
        ),
        (
            "10000 files of 4 KiB v0",
            Tree {
                top: "tenk0",
                files: ten_k(),
            },
            v0.0.into(),
            v0.1.to_vec(),
            true,
        ),
        (
            "10000 files of 4 KiB v1, wrapped",
            Tree {
                top: "tenk1",
                files: ten_k(),
            },
            wrap(v1.0),
            [v1.1, &["-w"]].concat(),
            true,
        ),
        (
            "varied names and subdirectories v0, wrapped",
            Tree {
                top: "varied0",
                files: varied(3000),
            },
            wrap(v0.0),
            vec!["-w"],
            true,
        ),
        (
            "varied names and subdirectories v1",
            Tree {
                top: "varied1",
                files: varied(3000),
            },
            v1.0.into(),
            v1.1.to_vec(),
            true,
        ),
    ];

    let mut failures = Vec::new();
    for (name, tree, query, flags, sharded) in &cases {
        let dir = tmp.path().join("trees");
        tree.write(&dir);
        let est = hamt::estimate(tree.files.iter().filter(|(p, _)| !p.contains('/')).map(
            |(p, _)| {
                (
                    p.as_str(),
                    if query.contains("cid-version=1") {
                        36
                    } else {
                        34
                    },
                )
            },
        ));
        let theirs = kubo_add(&ipfs, &repo, &dir.join(tree.top), flags);
        let ours = our_add(&h, query, tree).await;
        assert!(
            theirs.len() > tree.files.len(),
            "{name}: Kubo printed {} lines",
            theirs.len()
        );
        let root = |v: &[(String, String)]| v.last().map(|l| l.1.clone()).unwrap_or_default();
        println!(
            "{name}: {} entries, top-level estimate {est}: ours {} vs Kubo {}",
            tree.files.len(),
            root(&ours),
            root(&theirs)
        );
        // The estimate printed ignores subdirectories; the flat cases are exact.
        if !tree.files.iter().any(|(p, _)| p.contains('/')) {
            assert_eq!(
                hamt::needs_sharding(est),
                *sharded,
                "{name}: estimate {est}"
            );
        }
        if ours != theirs {
            let first = ours
                .iter()
                .zip(theirs.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(ours.len().min(theirs.len()));
            failures.push(format!(
                "{name}: {} lines vs Kubo's {}; first difference at line {first}: ours {:?} vs Kubo {:?}",
                ours.len(),
                theirs.len(),
                ours.get(first),
                theirs.get(first)
            ));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
