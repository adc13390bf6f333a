//! `POST /add`: a multipart upload turned into a UnixFS DAG with Kubo's CIDs, its
//! blocks stored on the destination peers' IPFS through their ipfs connectors in
//! batches (`Transport.CallMany(..., IpfsConnector.BlockPutMany)`, see `sender`), then
//! cluster-pinned (recursive).
//! Output is NDJSON of AddedOutput in upstream's order (files as they complete, then
//! directories depth-first children first, then the wrapper), or one JSON array with
//! `stream-channels=false`. Failures after the 200 go to the `X-Stream-Error` trailer.

pub mod car;
pub mod chunker;
pub mod dag;
pub mod hamt;
pub mod multipart;
pub mod sender;
pub mod spool;

use std::{collections::BTreeMap, convert::Infallible};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use ipfs_cluster_api as api;
use tokio::sync::mpsc;

use crate::{
    backend::Backends,
    http::reply::{self, ApiError, Body},
};
use chunker::ChunkerSpec;
use dag::{Block, DagError, DagParams, FileBuilder, HashFn, Layout, Link};
use multipart::{AddError, Event, Multipart};
use sender::Sender;
use spool::Spool;

/// Encoded outputs waiting for a slow client.
const OUTPUT_QUEUE: usize = 64;

/// Options this gateway refuses before reading the upload (400).
fn refused(p: &api::AddParams) -> Result<(), ApiError> {
    let unsupported =
        |what: &str| ApiError::bad_request(format!("{what} is not supported by this gateway"));
    if p.shard {
        return Err(unsupported("shard=true (sharded adds)"));
    }
    if p.no_copy {
        return Err(unsupported("nocopy (filestore/urlstore)"));
    }
    Ok(())
}

/// How the DAG is built. Like upstream, a bad value here is not a 400: the answer is a
/// 200 whose stream ends with the error (in the order upstream meets them: CID version,
/// hash function, then the chunker when the first file is read).
fn dag_params(p: &api::AddParams) -> Result<DagParams, DagError> {
    let cid_version = match p.cid_version {
        0 => 0,
        1 => 1,
        v => return Err(DagError::CidVersion(v)),
    };
    let hash = HashFn::from_name(&p.hash_fun)?;
    if cid_version == 0 && hash != HashFn::Sha2_256 {
        return Err(DagError::CidV0Hash(p.hash_fun.clone()));
    }
    let chunker = ChunkerSpec::parse(&p.chunker)?;
    Ok(DagParams {
        chunker,
        raw_leaves: p.raw_leaves,
        cid_version,
        hash,
        layout: if p.layout == "trickle" {
            Layout::Trickle
        } else {
            Layout::Balanced
        },
    })
}

/// boxo/files: query-unescape the filename (`+` is a space), then clean `/`+name.
fn part_path(raw: &str) -> Vec<String> {
    let unescaped: String = form_urlencoded::parse(format!("x={raw}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| raw.to_string());
    let mut out: Vec<String> = Vec::new();
    for seg in unescaped.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_string()),
        }
    }
    out
}

#[derive(Debug)]
enum Node {
    Leaf(Link),
    Dir(BTreeMap<String, Node>),
}

/// The entry at `path`, creating implicit directories on the way.
fn insert(root: &mut BTreeMap<String, Node>, path: &[String], node: Node) -> Result<(), AddError> {
    let (last, parents) = path
        .split_last()
        .ok_or("a multipart part has no file name")?;
    let mut dir = root;
    for p in parents {
        let entry = dir
            .entry(p.clone())
            .or_insert_with(|| Node::Dir(BTreeMap::new()));
        dir = match entry {
            Node::Dir(d) => d,
            Node::Leaf(_) => return Err(format!("{p} is a file, it cannot contain {last}").into()),
        };
    }
    match (dir.get_mut(last), node) {
        (Some(Node::Dir(_)), Node::Dir(_)) => Ok(()),
        (_, node) => {
            dir.insert(last.clone(), node);
            Ok(())
        }
    }
}

/// Stores blocks on the destination peers' IPFS and reports outputs.
struct Adder {
    backends: Backends,
    params: DagParams,
    /// Where blocks are stored while adding.
    destinations: Vec<String>,
    /// The allocations AddedOutput reports (upstream's BlockAllocate answer): the
    /// destinations, or every member for a pin that goes everywhere (those get the blocks
    /// from the spool once the add is done).
    reported: Vec<String>,
    /// Kept when the allocations are the consensus's choice (not `local`, no
    /// user-allocations) so the blocks can follow the pin to every allocated peer.
    spool: tokio::sync::Mutex<Option<Spool>>,
    /// Batches the blocks to the destinations (flushed before pinning).
    sender: tokio::sync::Mutex<Sender>,
    out: mpsc::Sender<api::AddedOutput>,
}

impl Adder {
    /// Stores blocks on the destinations, and keeps them in the spool when one is kept.
    /// Batched (see `sender`): a block is stored once `flush` returns.
    async fn put(&self, blocks: Vec<Block>) -> Result<(), AddError> {
        let mut spool = self.spool.lock().await;
        let mut sender = self.sender.lock().await;
        for b in blocks {
            if let Some(s) = spool.as_mut() {
                s.push(&b.cid, &b.data)
                    .await
                    .map_err(|e| format!("keeping block {} in the add spool: {e}", b.cid))?;
            }
            sender.push(b).await?;
        }
        Ok(())
    }

    /// Waits until every block put so far is stored on the destinations.
    async fn flush(&self) -> Result<(), AddError> {
        self.sender.lock().await.flush().await
    }

    async fn emit(&self, name: &str, link: &Link) {
        let o = api::AddedOutput {
            name: name.to_string(),
            cid: Some(api::Cid::from(link.cid)),
            bytes: 0,
            size: link.tsize,
            allocations: self.reported.clone(),
        };
        let _ = self.out.send(o).await;
    }

    /// Builds the directory nodes of `tree` (children first), emitting each. Children are
    /// visited in the order upstream lists the finished directory (its `outputDirs`): by
    /// name for a basic directory, by name hash for a sharded one.
    fn dir<'a>(
        &'a self,
        name: String,
        tree: &'a BTreeMap<String, Node>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Link, AddError>> + Send + 'a>>
    {
        Box::pin(async move {
            let mut entries = Vec::new();
            for n in self.listing_order(tree) {
                let link = match &tree[n] {
                    Node::Leaf(l) => l.clone(),
                    Node::Dir(d) => self.dir(format!("{name}/{n}"), d).await?,
                };
                entries.push((n.to_string(), link));
            }
            let (blocks, link) = hamt::directory(&self.params, &entries)?;
            self.put(blocks).await?;
            self.emit(&name, &link).await;
            Ok(link)
        })
    }

    /// Whether the directory made of `tree` is sharded. That is known before its
    /// subdirectories are built: their CIDs all have the length of a dag-pb CID of these
    /// parameters.
    fn sharded(&self, tree: &BTreeMap<String, Node>) -> bool {
        let dir_cid = self.params.dag_pb_cid_len();
        hamt::needs_sharding(hamt::estimate(tree.iter().map(|(n, node)| {
            let cid_len = match node {
                Node::Leaf(l) => l.cid.encoded_len(),
                Node::Dir(_) => dir_cid,
            };
            (n.as_str(), cid_len)
        })))
    }

    /// The names of `tree` in the order the directory made of it lists them.
    fn listing_order<'a>(&self, tree: &'a BTreeMap<String, Node>) -> Vec<&'a str> {
        let names = tree.keys().map(String::as_str);
        if self.sharded(tree) {
            hamt::listing_order(names)
        } else {
            names.collect()
        }
    }

    /// `format=car`: reads the first top-level part as a CARv1 with a single root, stores
    /// every (verified) block and emits one output `{name, cid: root, bytes, size}`.
    async fn run_car(&self, mut mp: Multipart) -> Result<Option<Link>, AddError> {
        let name = loop {
            match mp.next().await? {
                Some(Event::Part(h)) => {
                    if matches!(
                        h.content_type.as_str(),
                        "application/x-directory" | "multipart/form-data" | "multipart/mixed"
                    ) {
                        return Err("expected CAR file is not of type file".into());
                    }
                    break part_path(h.filename.as_deref().unwrap_or("")).join("/");
                }
                Some(_) => continue,
                None => return Err("format=car: the upload has no file part".into()),
            }
        };
        let mut car = crate::add::car::CarReader::default();
        let mut root: Option<cid::Cid> = None;
        let (mut total, mut size) = (0u64, 0u64);
        loop {
            let chunk = match mp.next().await? {
                Some(Event::Data(d)) => d,
                Some(Event::PartEnd) | None => break,
                Some(Event::Part(_)) => {
                    return Err("multipart: a part started inside a part".into())
                }
            };
            car.feed(&chunk);
            if root.is_none() {
                match car.header()? {
                    None => continue,
                    Some([r]) => root = Some(*r),
                    // go-car's words, as upstream's carAdder reports them.
                    Some([]) => return Err("empty car, no roots".into()),
                    Some(_) => return Err("only CAR files with a single root are supported".into()),
                }
            }
            while let Some((cid, data)) = car.block()? {
                total += data.len() as u64;
                if Some(cid) == root {
                    size = crate::add::car::unixfs_size(&cid, &data);
                }
                self.put(vec![Block {
                    cid,
                    data: data.into(),
                }])
                .await?;
            }
        }
        // Only the first top-level entry is read (as upstream): drain the rest.
        while mp.next().await?.is_some() {}
        // A cut header or block: go-car's `io.ReadFull` errors, as upstream answers.
        let Some(root) = root else {
            return Err(if car.leftover() == 0 {
                "EOF".into()
            } else {
                "unexpected EOF".into()
            });
        };
        if car.leftover() > 0 {
            return Err("unexpected EOF".into());
        }
        let o = api::AddedOutput {
            name,
            cid: Some(api::Cid::from(root)),
            bytes: total,
            size,
            allocations: self.reported.clone(),
        };
        let _ = self.out.send(o).await;
        Ok(Some(Link {
            cid: root,
            tsize: total,
            filesize: size,
        }))
    }

    /// Reads every part, stores the DAG, returns the root (last top-level entry, or the
    /// wrapper).
    async fn run(&self, mut mp: Multipart, wrap: bool) -> Result<Option<Link>, AddError> {
        let mut tree: BTreeMap<String, Node> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        // Top-level names already in `order` (an add of many files lists each once).
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        while let Some(ev) = mp.next().await? {
            let Event::Part(h) = ev else { continue };
            let path = part_path(h.filename.as_deref().unwrap_or(""));
            if path.is_empty() {
                return Err(
                    "a multipart part has no file name (Content-Disposition filename)".into(),
                );
            }
            if seen.insert(path[0].clone()) {
                order.push(path[0].clone());
            }
            let name = path.join("/");
            match h.content_type.as_str() {
                "application/x-directory" | "multipart/form-data" | "multipart/mixed" => {
                    skip_part(&mut mp).await?;
                    insert(&mut tree, &path, Node::Dir(BTreeMap::new()))?;
                }
                "application/symlink" => {
                    let target = read_part(&mut mp, 4096).await?;
                    let (block, link) = self.params.symlink(&String::from_utf8_lossy(&target));
                    self.put(vec![block]).await?;
                    self.emit(&name, &link).await;
                    insert(&mut tree, &path, Node::Leaf(link))?;
                }
                _ => {
                    let mut f = FileBuilder::new(self.params);
                    loop {
                        match mp.next().await? {
                            Some(Event::Data(d)) => self.put(f.push(&d)?).await?,
                            Some(Event::PartEnd) | None => break,
                            Some(Event::Part(_)) => {
                                return Err("multipart: a part started inside a part".into())
                            }
                        }
                    }
                    let (blocks, link) = f.finish()?;
                    self.put(blocks).await?;
                    self.emit(&name, &link).await;
                    insert(&mut tree, &path, Node::Leaf(link))?;
                }
            }
        }
        let mut root = None;
        let mut tops = Vec::new();
        // A sharded wrapper is listed by name hash, as `dir` does.
        let order: Vec<&str> = if wrap && self.sharded(&tree) {
            hamt::listing_order(tree.keys().map(String::as_str))
        } else {
            order.iter().map(String::as_str).collect()
        };
        for top in order {
            let link = match tree.get(top) {
                Some(Node::Dir(d)) => self.dir(top.to_string(), d).await?,
                Some(Node::Leaf(l)) => l.clone(),
                None => continue,
            };
            tops.push((top.to_string(), link.clone()));
            root = Some(link);
        }
        if wrap {
            let (blocks, link) = hamt::directory(&self.params, &tops)?;
            self.put(blocks).await?;
            self.emit("", &link).await;
            root = Some(link);
        }
        Ok(root)
    }
}

/// After the add: the peers of `targets` (the pin's allocations, or every member) that
/// the add did not reach get every spooled block (upstream sends blocks to all
/// allocations before pinning; see `spool`), in batches as during the add.
async fn send_spool(
    backends: &Backends,
    spool: Spool,
    targets: &[String],
    reached: &[String],
) -> Result<(), AddError> {
    let missing: Vec<String> = targets
        .iter()
        .filter(|p| !reached.contains(p))
        .cloned()
        .collect();
    if missing.is_empty() || spool.is_empty() {
        return Ok(());
    }
    let blocks = spool.len();
    let mut r = spool
        .replay()
        .await
        .map_err(|e| format!("reading the add spool: {e}"))?;
    let mut sender = Sender::new(
        backends.clone(),
        missing.clone(),
        "sending the added blocks to the other peers failed (the local peer has them)",
    );
    while let Some((cid, data)) = r
        .next()
        .await
        .map_err(|e| format!("reading the add spool: {e}"))?
    {
        sender
            .push(Block {
                cid,
                data: data.into(),
            })
            .await?;
    }
    sender.flush().await?;
    tracing::debug!(blocks, peers = ?missing, "add: blocks sent to the other allocated peers");
    Ok(())
}

async fn skip_part(mp: &mut Multipart) -> Result<(), AddError> {
    loop {
        match mp.next().await? {
            Some(Event::Data(_)) => {}
            _ => return Ok(()),
        }
    }
}

async fn read_part(mp: &mut Multipart, limit: usize) -> Result<Vec<u8>, AddError> {
    let mut out = Vec::new();
    loop {
        match mp.next().await? {
            Some(Event::Data(d)) => {
                out.extend_from_slice(&d);
                if out.len() > limit {
                    return Err(format!("a symlink target is longer than {limit} bytes").into());
                }
            }
            _ => return Ok(out),
        }
    }
}

fn add_headers(h: &mut HeaderMap, streaming: bool) {
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    if streaming {
        h.insert("x-chunked-output", HeaderValue::from_static("1"));
        h.insert(header::TRAILER, HeaderValue::from_static("X-Stream-Error"));
    }
}

/// The whole `POST /add`.
pub async fn handle(
    b: &Backends,
    query: &str,
    content_type: Option<&str>,
    body: crate::add::multipart::LimitedBody,
) -> Result<Response<Body>, ApiError> {
    // Upstream's adder asks for allocations before storing the first block, which a
    // follower refuses: nothing is added to IPFS.
    if b.follower_mode {
        return Err(ApiError::internal(ipfs_cluster_config::FOLLOWER_MODE_ERROR));
    }
    let params = api::AddParams::from_query(query).map_err(|e| ApiError::bad_request(e.0))?;
    refused(&params)?;
    let is_car = params.format == "car";
    // A CAR upload brings its own blocks: the DAG options do not apply. Wrapping one is
    // an error in the stream, as upstream's carAdder gives it (not a 400).
    let dag = if is_car {
        if params.wrap {
            Err(DagError::WrapCar)
        } else {
            Ok(DagParams::default())
        }
    } else {
        dag_params(&params)
    };
    let boundary = crate::add::multipart::boundary(content_type)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let user_allocations = params
        .pin_options
        .user_allocations
        .as_ref()
        .filter(|u| !u.is_empty() && !params.local);
    let destinations = match user_allocations {
        Some(u) => u.clone(),
        None => vec![b.id().await?.id],
    };
    // Upstream allocates before adding: a pin with replication -1 (given, or the
    // cluster's default) goes to every peer, and AddedOutput says so.
    let everywhere = user_allocations.is_none() && !params.local && {
        let o = &params.pin_options;
        let rmin = if o.replication_factor_min == 0 {
            b.default_replication_min
        } else {
            o.replication_factor_min
        };
        rmin < 0
    };
    let reported = if everywhere {
        let mut all = b.member_list().await?;
        all.sort();
        all
    } else {
        destinations.clone()
    };
    let spool = if user_allocations.is_none() && !params.local && (!params.no_pin || everywhere) {
        Some(Spool::new(body.limits().spool_max()).await.map_err(|e| {
            ApiError::internal(format!(
                "cannot create the add spool in the temp folder ({}): {e}",
                std::env::temp_dir().display()
            ))
        })?)
    } else {
        None
    };
    let (tx, mut rx) = mpsc::channel::<api::AddedOutput>(OUTPUT_QUEUE);
    let backends = b.clone();
    let mp = Multipart::new(body, &boundary);
    let mut pin_opts = params.pin_options.clone();
    pin_opts.mode = api::PinMode::Recursive;
    let (no_pin, wrap) = (params.no_pin, params.wrap);
    let work = async move {
        let sender = Sender::new(backends.clone(), destinations.clone(), "");
        let adder = Adder {
            backends,
            params: dag?,
            destinations,
            reported,
            spool: tokio::sync::Mutex::new(spool),
            sender: tokio::sync::Mutex::new(sender),
            out: tx,
        };
        let root = if is_car {
            adder.run_car(mp).await?
        } else {
            adder.run(mp, wrap).await?
        };
        adder.flush().await?;
        let Some(root) = root else { return Ok(()) };
        if no_pin {
            // No pin: the blocks still go where upstream would have sent them.
            if let Some(spool) = adder.spool.lock().await.take() {
                send_spool(&adder.backends, spool, &adder.reported, &adder.destinations).await?;
            }
            return Ok(());
        }
        let pin = api::Pin::new_data(api::Cid::from(root.cid), pin_opts);
        let pinned = adder
            .backends
            .pin(pin.into())
            .await
            .map_err(|e| e.message)?;
        if let Some(spool) = adder.spool.lock().await.take() {
            let allocated = if pinned.allocations.is_empty() {
                adder.backends.member_list().await.map_err(|e| e.message)?
            } else {
                pinned.allocations.clone()
            };
            send_spool(&adder.backends, spool, &allocated, &adder.destinations).await?;
        }
        Ok::<(), AddError>(())
    };

    if !params.stream_channels {
        let (res, outputs) = tokio::join!(work, async move {
            let mut v = Vec::new();
            while let Some(o) = rx.recv().await {
                v.push(o);
            }
            v
        });
        res.map_err(|e| ApiError::from_service(&e))?;
        let body = if outputs.is_empty() {
            reply::json_line(&serde_json::Value::Null)
        } else {
            reply::json_line(&outputs)
        };
        let mut r = reply::ok_json(&serde_json::Value::Null);
        *r.body_mut() = reply::full(body);
        add_headers(r.headers_mut(), false);
        return Ok(r);
    }

    let (ftx, frx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(OUTPUT_QUEUE);
    tokio::spawn(async move {
        // Owns the receiver: if the client goes away, dropping it makes further outputs
        // fail fast instead of filling the queue and stalling the add.
        let data_tx = ftx.clone();
        let forward = async move {
            while let Some(o) = rx.recv().await {
                if data_tx
                    .send(Ok(Frame::data(reply::json_line(&o))))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        };
        let (res, _) = tokio::join!(work, forward);
        if let Err(e) = res {
            tracing::warn!(error = %e, "POST /add failed");
            let mut t = HeaderMap::new();
            let v = HeaderValue::from_str(&e.to_string().replace(['\r', '\n'], " "))
                .unwrap_or(HeaderValue::from_static("add failed"));
            t.insert(reply::STREAM_ERROR, v);
            let _ = ftx.send(Ok(Frame::trailers(t))).await;
        }
    });
    let mut r = reply::ok_json(&serde_json::Value::Null);
    *r.body_mut() =
        StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(frx)).boxed_unsync();
    add_headers(r.headers_mut(), true);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_params() {
        assert_eq!(
            part_path("testFolder%2Fabc.txt"),
            vec!["testFolder", "abc.txt"]
        );
        assert_eq!(part_path("a+b.txt"), vec!["a b.txt"]);
        assert_eq!(part_path("../x/./y"), vec!["x", "y"]);
        let p = |q: &str| dag_params(&api::AddParams::from_query(q).unwrap());
        assert_eq!(p("").unwrap(), DagParams::default());
        let v1 = p("cid-version=1").unwrap();
        assert_eq!((v1.cid_version, v1.raw_leaves), (1, true));
        assert_eq!(
            p("chunker=size-1024&raw-leaves=true").unwrap().chunker,
            ChunkerSpec::Size(1024)
        );
        assert_eq!(
            p("chunker=size-0").unwrap_err().to_string(),
            "chunker size must be greater than 0"
        );
        assert_eq!(
            p("chunker=rabin-16-32-64").unwrap().chunker,
            ChunkerSpec::Rabin {
                min: 16,
                avg: 32,
                max: 64
            }
        );
        assert_eq!(p("layout=trickle").unwrap().layout, Layout::Trickle);
        assert_eq!(
            p("hash=SHA3-512&cid-version=1").unwrap().hash,
            HashFn::Sha3_512
        );
        assert!(p("hash=sha3-512")
            .unwrap_err()
            .to_string()
            .contains("cid-version=1"));
        assert_eq!(
            p("hash=nope").unwrap_err().to_string(),
            "hash function name not known"
        );
        assert_eq!(
            p("cid-version=7").unwrap_err().to_string(),
            "bad CID Version: unknown CID version: 7"
        );
        let r = |q: &str| refused(&api::AddParams::from_query(q).unwrap());
        assert!(r("format=car").is_ok());
        assert!(
            r("format=car&wrap-with-directory=true").is_ok(),
            "a stream error"
        );
        assert!(r("shard=true").is_err());
    }
}
