//! The proxy routes that need more than one call: `add`,
//! `block/put?pin=true` and `dag/put?pin=true` go to the daemon and the CIDs they produce
//! are then pinned through the cluster (so they land on the allocated peers, not only
//! here); `repo/stat` and `repo/gc` run on every cluster member through the transport.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::{body::Frame, Request, Response};
use ipfs_cluster_proto::{
    consensus::v1::{MembersRequest, PinRequest},
    ipfsconnector::v1::{RepoGcResponse, RepoStatResponse},
    transport::v1::PeerCallManyRequest,
    types::v1::{Empty, Pin, PinOptions, PinType},
};
use ipfs_cluster_runtime::ErrorCode;
use prost::Message;
use tokio::sync::mpsc;

use super::{json, kubo_error, server_header, Body, Proxy};

const CONNECTOR: &str = "ipfscluster.ipfsconnector.v1.IpfsConnector";

/// Which CIDs of the daemon's answer get pinned in the cluster.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Roots {
    /// `add` output `{"Name","Hash",…}`: top-level entries (no `/` in the name), or
    /// only the wrapping directory with `wrap-with-directory`.
    Add { wrap: bool },
    /// `block/put` output `{"Key","Size"}`: every key.
    BlockPut,
    /// `dag/put` output `{"Cid":{"/":…}}`: every CID.
    DagPut,
}

/// Collects the CIDs to pin from the daemon's output lines.
#[derive(Default)]
struct Collector {
    entries: Vec<(String, String)>,
}

impl Collector {
    fn line(&mut self, roots: Roots, line: &[u8]) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
            return;
        };
        let items = match v {
            serde_json::Value::Array(a) => a,
            v => vec![v],
        };
        for v in items {
            let cid = match roots {
                Roots::Add { .. } => v["Hash"].as_str(),
                Roots::BlockPut => v["Key"].as_str(),
                Roots::DagPut => v["Cid"]["/"].as_str().or_else(|| v["Cid"].as_str()),
            };
            if let Some(c) = cid {
                let name = v["Name"].as_str().unwrap_or("").to_string();
                self.entries.push((name, c.to_string()));
            }
        }
    }

    fn roots(&self, roots: Roots) -> Vec<String> {
        let mut out: Vec<String> = match roots {
            Roots::Add { wrap: true } => self
                .entries
                .last()
                .map(|(_, c)| c.clone())
                .into_iter()
                .collect(),
            Roots::Add { wrap: false } => self
                .entries
                .iter()
                .filter(|(n, _)| !n.contains('/'))
                .map(|(_, c)| c.clone())
                .collect(),
            Roots::BlockPut | Roots::DagPut => {
                self.entries.iter().map(|(_, c)| c.clone()).collect()
            }
        };
        let mut seen = std::collections::HashSet::new();
        out.retain(|c| seen.insert(c.clone()));
        out
    }
}

impl Proxy {
    /// Forwards `req` to the daemon, streams its answer to the client unchanged, and
    /// before ending the stream pins the produced roots through `Consensus.Pin` with
    /// `options` (default: the cluster's replication). Pin errors go to the
    /// `X-Stream-Error` trailer.
    pub(crate) async fn forward_and_pin(
        &self,
        req: Request<super::ReqBody>,
        roots: Roots,
        options: PinOptions,
    ) -> Response<Body> {
        let resp = self.forward(req).await;
        if resp.status() != StatusCode::OK {
            return resp;
        }
        let (mut parts, mut body) = resp.into_parts();
        parts.headers.remove(header::CONTENT_LENGTH);
        parts
            .headers
            .insert(header::TRAILER, HeaderValue::from_static("X-Stream-Error"));
        parts.headers.insert(header::SERVER, server_header());
        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, super::BoxError>>(64);
        let consensus = self.consensus.clone();
        tokio::spawn(async move {
            let mut col = Collector::default();
            let mut partial: Vec<u8> = Vec::new();
            let mut errors: Vec<String> = Vec::new();
            loop {
                match body.frame().await {
                    None => break,
                    Some(Err(e)) => {
                        errors.push(format!("reading the IPFS daemon's answer: {e}"));
                        break;
                    }
                    Some(Ok(f)) => {
                        if let Some(d) = f.data_ref() {
                            partial.extend_from_slice(d);
                            while let Some(i) = partial.iter().position(|b| *b == b'\n') {
                                let line: Vec<u8> = partial.drain(..=i).collect();
                                col.line(roots, &line);
                            }
                            if tx.send(Ok(Frame::data(d.clone()))).await.is_err() {
                                return; // client went away: pin nothing
                            }
                        } else if let Ok(t) = f.into_trailers() {
                            if let Some(e) = t.get("x-stream-error").and_then(|v| v.to_str().ok()) {
                                if !e.is_empty() {
                                    errors.push(e.to_string());
                                }
                            }
                        }
                    }
                }
            }
            if !partial.is_empty() {
                col.line(roots, &partial);
            }
            // An add the daemon did not finish is not pinned.
            if errors.is_empty() {
                for cid in col.roots(roots) {
                    let pin = Pin {
                        cid: cid.clone(),
                        r#type: PinType::Data as i32,
                        max_depth: -1,
                        options: Some(options.clone()),
                        ..Default::default()
                    };
                    if let Err(e) = consensus.clone().pin(PinRequest { pin: Some(pin) }).await {
                        errors.push(format!("cluster pin of {cid}: {}", e.message()));
                    }
                }
            }
            if !errors.is_empty() {
                let mut t = HeaderMap::new();
                let text = errors.join("; ").replace(['\r', '\n'], " ");
                if let Ok(v) = HeaderValue::from_str(&text) {
                    t.insert("x-stream-error", v);
                }
                let _ = tx.send(Ok(Frame::trailers(t))).await;
            }
        });
        Response::from_parts(
            parts,
            StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed(),
        )
    }

    /// The cluster members' peer ids (the local one included).
    async fn members(&self) -> Result<Vec<String>, tonic::Status> {
        let m = self
            .consensus
            .clone()
            .members(MembersRequest {})
            .await?
            .into_inner();
        Ok(m.members.into_iter().map(|m| m.peer_id).collect())
    }
}

/// `repo/stat`: `RepoStat` on every member, sizes summed, failing peers skipped.
pub(crate) async fn repo_stat(p: &Proxy) -> Response<Body> {
    let peers = match p.members().await {
        Ok(m) => m,
        Err(e) => return kubo_error(ErrorCode::Internal, e.message().to_string()),
    };
    let req = PeerCallManyRequest {
        peers,
        service: CONNECTOR.into(),
        method: "RepoStat".into(),
        payload: Empty {}.encode_to_vec(),
        timeout_ms: p.kubo.timeouts().request.as_millis().min(u32::MAX as u128) as u32,
    };
    let res = match p.transport.clone().call_many(req).await {
        Ok(r) => r.into_inner(),
        Err(e) => return kubo_error(ErrorCode::Internal, e.message().to_string()),
    };
    let (mut size, mut max) = (0u64, 0u64);
    for r in res.results {
        if r.code != 0 {
            tracing::debug!(peer = %r.peer, error = %r.error, "repo/stat: peer skipped");
            continue;
        }
        if let Ok(s) = RepoStatResponse::decode(r.payload.as_slice()) {
            size = size.saturating_add(s.repo_size);
            max = max.saturating_add(s.storage_max);
        }
    }
    json(
        StatusCode::OK,
        serde_json::json!({"RepoSize": size, "StorageMax": max}),
    )
}

/// `repo/gc`: `RepoGc` on every member; NDJSON `{"Key":{"/":cid}}` lines (with `"Error"`
/// when `stream-errors=true`, else errors joined into the `X-Stream-Error` trailer).
pub(crate) async fn repo_gc(p: &Proxy, query: &str) -> Response<Body> {
    let stream_errors = super::flag(query, "stream-errors", false);
    let peers = match p.members().await {
        Ok(m) => m,
        Err(e) => return kubo_error(ErrorCode::Internal, e.message().to_string()),
    };
    let req = PeerCallManyRequest {
        peers,
        service: CONNECTOR.into(),
        method: "RepoGc".into(),
        payload: Empty {}.encode_to_vec(),
        timeout_ms: p.kubo.timeouts().repogc.as_millis().min(u32::MAX as u128) as u32,
    };
    let res = match p.transport.clone().call_many(req).await {
        Ok(r) => r.into_inner(),
        Err(e) => return kubo_error(ErrorCode::Internal, e.message().to_string()),
    };
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for r in res.results {
        if r.code != 0 {
            errors.push(format!("{}: {}", r.peer, r.error));
            continue;
        }
        let Ok(gc) = RepoGcResponse::decode(r.payload.as_slice()) else {
            errors.push(format!("{}: undecodable RepoGc answer", r.peer));
            continue;
        };
        if !gc.error.is_empty() {
            errors.push(format!("{}: {}", r.peer, gc.error));
        }
        for k in gc.keys {
            let mut v = serde_json::json!({"Key": {"/": k.key}});
            if !k.error.is_empty() {
                if stream_errors {
                    v["Error"] = serde_json::Value::String(k.error);
                } else {
                    errors.push(k.error);
                }
            }
            out.extend(serde_json::to_vec(&v).expect("json"));
            out.push(b'\n');
        }
    }
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, super::BoxError>>(2);
    let _ = tx.try_send(Ok(Frame::data(Bytes::from(out))));
    if !errors.is_empty() {
        let mut t = HeaderMap::new();
        let text = errors.join("; ").replace(['\r', '\n'], " ");
        if let Ok(v) = HeaderValue::from_str(&text) {
            t.insert("x-stream-error", v);
        }
        let _ = tx.try_send(Ok(Frame::trailers(t)));
    }
    drop(tx);
    let mut r =
        Response::new(StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(header::SERVER, server_header());
    r.headers_mut()
        .insert(header::TRAILER, HeaderValue::from_static("X-Stream-Error"));
    r.headers_mut()
        .insert("x-chunked-output", HeaderValue::from_static("1"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_roots() {
        let mut c = Collector::default();
        for l in [
            r#"{"Name":"d/a","Hash":"A","Size":"1"}"#,
            r#"{"Name":"d/b","Hash":"B"}"#,
            r#"{"Name":"d","Hash":"D"}"#,
            r#"{"Name":"x","Bytes":10}"#,
            r#"{"Name":"f","Hash":"F"}"#,
        ] {
            c.line(Roots::Add { wrap: false }, l.as_bytes());
        }
        assert_eq!(c.roots(Roots::Add { wrap: false }), vec!["D", "F"]);
        assert_eq!(c.roots(Roots::Add { wrap: true }), vec!["F"]);
        let mut c = Collector::default();
        c.line(Roots::DagPut, br#"{"Cid":{"/":"bafy"}}"#);
        assert_eq!(c.roots(Roots::DagPut), vec!["bafy"]);
        let mut c = Collector::default();
        c.line(Roots::BlockPut, br#"{"Key":"bafk","Size":3}"#);
        c.line(Roots::BlockPut, b"not json");
        assert_eq!(c.roots(Roots::BlockPut), vec!["bafk"]);
    }
}
