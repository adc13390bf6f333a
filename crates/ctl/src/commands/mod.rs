//! Command actions: each one makes upstream's REST call(s) and prints the result in
//! the chosen encoding. Pin/unpin/update share the post-processing (wait / status).

pub mod add;

use std::io::Write;
use std::time::Duration;

use http::Method;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use ipfs_cluster_api as api;

use crate::cli::{self, Cli, Command, HealthCmd, IpfsCmd, PeersCmd, PinCmd, WaitArgs};
use crate::client::{Body, Client, ClientConfig, Endpoint};
use crate::error::{ArgError, CtlError, CtlResult, LocalError, RestError};
use crate::format;
use crate::go_text;

/// What every command needs: the client and the output encoding.
pub struct Ctx {
    pub client: Client,
    pub json: bool,
    pub debug: bool,
}

impl Ctx {
    pub fn new(c: &Cli, json: bool, stderr: &mut dyn Write) -> CtlResult<Ctx> {
        // Upstream's order: the secret's hex first, then the addresses.
        let secret_bytes = match c.secret.as_str() {
            "" => None,
            hex => Some(
                go_hex_decode(hex)
                    .map_err(|e| CtlError::local("parsing secret", format!("encoding/hex: {e}")))?,
            ),
        };
        let mut endpoints = Vec::new();
        for addr in c.host.split(',') {
            endpoints.push(Endpoint::parse(addr)?);
        }
        let mut secret = None;
        // Only libp2p-http uses the secret; upstream ignores it for an HTTP address.
        if let Some(bytes) = secret_bytes {
            if endpoints.iter().any(|e| matches!(e, Endpoint::P2p { .. })) {
                secret = Some(<[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                    CtlError::local(
                        "parsing secret",
                        format!(
                            "the secret must be 32 bytes (64 hex characters), got {} bytes",
                            bytes.len()
                        ),
                    )
                })?);
            }
        }
        let mut cfg = ClientConfig {
            https: c.https,
            no_verify: c.no_check_certificate,
            timeout: (c.timeout > 0).then(|| Duration::from_secs(c.timeout)),
            debug: c.debug,
            secret,
            ..Default::default()
        };
        if let Some(cred) = c.basic_auth.as_deref().filter(|s| !s.is_empty()) {
            let (u, p) = cred.split_once(':').unwrap_or((cred, ""));
            cfg.basic_auth = Some((u.to_string(), p.to_string()));
            if !u.is_empty() && !cfg.https && !c.force_http {
                if c.debug {
                    let _ = writeln!(stderr, "SSL automatically enabled with basic auth credentials. Set \"force-http\" to disable");
                }
                cfg.https = true;
            }
        }
        cfg.endpoints = endpoints;
        Ok(Ctx {
            client: Client::new(cfg)?,
            json,
            debug: c.debug,
        })
    }

    /// Prints one object after checking it decodes as `T`: JSON is the re-encoded `T`
    /// (upstream decodes and re-encodes), text is rendered from the value as received (so
    /// times keep the offset they arrived with).
    pub fn show<T: DeserializeOwned + Serialize>(
        &self,
        out: &mut dyn Write,
        v: &Value,
        text: impl Fn(&Value) -> String,
    ) -> CtlResult<()> {
        let typed: T = decode(v)?;
        let s = if self.json {
            format::json_pretty(&typed)
        } else {
            text(v)
        };
        let _ = out.write_all(s.as_bytes());
        let _ = out.flush();
        Ok(())
    }
}

pub async fn dispatch(
    ctx: &Ctx,
    cmd: Command,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> CtlResult<()> {
    let c = &ctx.client;
    match cmd {
        Command::Id => {
            if let Some(v) = c.call(Method::GET, "/id", Body::Empty).await? {
                ctx.show::<api::Id>(out, &v, format::id)?;
            }
        }
        Command::Version => {
            if let Some(v) = c.call(Method::GET, "/version", Body::Empty).await? {
                ctx.show::<api::Version>(out, &v, format::version)?;
            }
        }
        Command::Peers(PeersCmd::Ls) => {
            c.stream(Method::GET, "/peers", Body::Empty, &mut |v| {
                ctx.show::<api::Id>(out, &v, format::id)?;
                Ok(())
            })
            .await?;
        }
        Command::Peers(PeersCmd::Rm { peer }) => {
            validate_peer_id(&peer).map_err(|e| {
                CtlError::local("parsing peer ID", format!("failed to parse peer ID: {e}"))
            })?;
            c.call(Method::DELETE, &format!("/peers/{peer}"), Body::Empty)
                .await?;
        }
        Command::Add(args) => add::add(ctx, args, out, err).await?,
        Command::Pin(PinCmd::Add(a)) => {
            let (rmin, rmax) = if a.replication != 0 {
                (a.replication, a.replication)
            } else {
                (a.replication_min, a.replication_max)
            };
            let mut allocs = Vec::new();
            if !a.allocations.is_empty() {
                for p in a.allocations.split(',').map(str::trim) {
                    if validate_peer_id(p).is_err() {
                        return Err(CtlError::local(
                            "decoding allocations",
                            "some peer IDs could not be decoded",
                        ));
                    }
                    allocs.push(p.to_string());
                }
            }
            let expire_at = parse_expire_in(&a.expire_in)?;
            let metadata = parse_metadata(&a.metadata)?;
            let mode = if a.mode == "direct" {
                "direct"
            } else {
                "recursive"
            };
            let q = PinQuery {
                rmin,
                rmax,
                name: a.name.clone(),
                mode: mode.into(),
                allocs,
                expire_at,
                metadata,
                pin_update: None,
            };
            let path = ipfs_path(&a.arg).map_err(local_in_client)?;
            let pin = c
                .call(
                    Method::POST,
                    &format!("/pins{}?{}", escape_path(&path), q.encode()),
                    Body::Empty,
                )
                .await?;
            let pin = pin.unwrap_or(Value::Null);
            handle_pin_response(ctx, &a.wait, &pin, "pinned", out).await?;
        }
        Command::Pin(PinCmd::Rm(a)) => {
            let path = ipfs_path(&a.arg).map_err(local_in_client)?;
            let pin = c
                .call(
                    Method::DELETE,
                    &format!("/pins{}", escape_path(&path)),
                    Body::Empty,
                )
                .await?;
            handle_pin_response(ctx, &a.wait, &pin.unwrap_or(Value::Null), "unpinned", out).await?;
        }
        Command::Pin(PinCmd::Update(a)) => {
            let from = parse_cid(&a.from).map_err(|e| CtlError::local("parsing from Cid", e))?;
            let expire_at = parse_expire_in(&a.expire_in)?;
            let q = PinQuery {
                rmin: 0,
                rmax: 0,
                name: a.name.clone(),
                mode: "recursive".into(),
                allocs: vec![],
                expire_at,
                metadata: vec![],
                pin_update: Some(from),
            };
            let path = ipfs_path(&a.to).map_err(local_in_client)?;
            let pin = c
                .call(
                    Method::POST,
                    &format!("/pins{}?{}", escape_path(&path), q.encode()),
                    Body::Empty,
                )
                .await?;
            handle_pin_response(ctx, &a.wait, &pin.unwrap_or(Value::Null), "pinned", out).await?;
        }
        Command::Pin(PinCmd::Ls(a)) => match a.cid {
            Some(cid) => {
                let cid = parse_cid(&cid).map_err(|e| CtlError::local("parsing cid", e))?;
                if let Some(v) = c
                    .call(Method::GET, &format!("/allocations/{cid}"), Body::Empty)
                    .await?
                {
                    ctx.show::<api::Pin>(out, &v, format::pin)?;
                }
            }
            None => {
                let f = pin_type_filter(&a.filter);
                c.stream(
                    Method::GET,
                    &format!("/allocations?filter={}", query_escape(&f)),
                    Body::Empty,
                    &mut |v| {
                        ctx.show::<api::Pin>(out, &v, format::pin)?;
                        Ok(())
                    },
                )
                .await?;
            }
        },
        Command::Status(a) => {
            let mut cids = Vec::new();
            for s in &a.cids {
                cids.push(parse_cid(s).map_err(|e| CtlError::local("parsing cid", e))?);
            }
            let local = a.local;
            match cids.len() {
                1 => {
                    if let Some(v) = c
                        .call(
                            Method::GET,
                            &format!("/pins/{}?local={local}", cids[0]),
                            Body::Empty,
                        )
                        .await?
                    {
                        ctx.show::<api::GlobalPinInfo>(out, &v, format::global_pin_info)?;
                    }
                }
                0 => {
                    // As upstream's TrackerStatusFromString: spaces removed, unknown names
                    // ignored.
                    let filter = api::TrackerStatusFilter::parse(&a.filter.replace(' ', ""));
                    if filter.is_empty() && !a.filter.is_empty() {
                        return Err(CtlError::local(
                            "parsing filter flag",
                            "invalid filter name",
                        ));
                    }
                    let f = filter.to_query_string();
                    let path = format!("/pins?local={local}&filter={}&cids=", query_escape(&f));
                    c.stream(Method::GET, &path, Body::Empty, &mut |v| {
                        ctx.show::<api::GlobalPinInfo>(out, &v, format::global_pin_info)?;
                        Ok(())
                    })
                    .await?;
                }
                _ => {
                    let path = format!(
                        "/pins?local={local}&filter=&cids={}",
                        query_escape(&cids.join(","))
                    );
                    c.stream(Method::GET, &path, Body::Empty, &mut |v| {
                        ctx.show::<api::GlobalPinInfo>(out, &v, format::global_pin_info)?;
                        Ok(())
                    })
                    .await?;
                }
            }
        }
        Command::Recover(a) => match a.cid {
            Some(cid) => {
                let cid = parse_cid(&cid).map_err(|e| CtlError::local("parsing cid", e))?;
                let path = format!("/pins/{cid}/recover?local={}", a.local);
                if let Some(v) = c.call(Method::POST, &path, Body::Empty).await? {
                    ctx.show::<api::GlobalPinInfo>(out, &v, format::global_pin_info)?;
                }
            }
            None => {
                let path = format!("/pins/recover?local={}", a.local);
                c.stream(Method::POST, &path, Body::Empty, &mut |v| {
                    ctx.show::<api::GlobalPinInfo>(out, &v, format::global_pin_info)?;
                    Ok(())
                })
                .await?;
            }
        },
        Command::Health(HealthCmd::Graph(g)) => {
            let Some(v) = c.call(Method::GET, "/health/graph", Body::Empty).await? else {
                return Ok(());
            };
            let dot = crate::graph::make_dot(&v, g.all_ipfs_peers);
            if g.file.is_empty() {
                let _ = out.write_all(dot.as_bytes());
            } else {
                std::fs::write(&g.file, dot)
                    .map_err(|e| CtlError::local("creating output file", e))?;
            }
        }
        Command::Health(HealthCmd::Metrics { name }) => match name {
            None => {
                if let Some(v) = c.call(Method::GET, "/monitor/metrics", Body::Empty).await? {
                    print_list::<String>(ctx, out, &v, |v| {
                        format!("{}\n", v.as_str().unwrap_or(""))
                    })?;
                }
            }
            Some(n) => {
                let path = format!("/monitor/metrics/{}", path_escape_segment(&n));
                if let Some(v) = c.call(Method::GET, &path, Body::Empty).await? {
                    let now = go_text::now_ns();
                    print_list::<api::Metric>(ctx, out, &v, |m| format::metric(m, now))?;
                }
            }
        },
        Command::Health(HealthCmd::Alerts) => {
            if let Some(v) = c.call(Method::GET, "/health/alerts", Body::Empty).await? {
                let now = go_text::now_ns();
                print_list::<api::Alert>(ctx, out, &v, |a| format::alert(a, now))?;
            }
        }
        Command::Health(HealthCmd::Bandwidth) => {
            if let Some(v) = c
                .call(Method::GET, "/health/bandwidth", Body::Empty)
                .await?
            {
                ctx.show::<api::BandwidthByProtocol>(out, &v, format::bandwidth)?;
            }
        }
        Command::Ipfs(IpfsCmd::Gc { local }) => {
            if let Some(v) = c
                .call(
                    Method::POST,
                    &format!("/ipfs/gc?local={local}"),
                    Body::Empty,
                )
                .await?
            {
                ctx.show::<api::GlobalRepoGc>(out, &v, format::repo_gc)?;
            }
        }
        Command::Commands | Command::Completion { .. } => {}
    }
    Ok(())
}

/// A JSON array printed whole in JSON mode, one text rendering per element otherwise.
fn print_list<T: DeserializeOwned + Serialize>(
    ctx: &Ctx,
    out: &mut dyn Write,
    v: &Value,
    text: impl Fn(&Value) -> String,
) -> CtlResult<()> {
    let typed: Option<Vec<T>> = decode(v)?;
    if ctx.json {
        let _ = out.write_all(format::json_pretty(&typed).as_bytes());
        return Ok(());
    }
    for item in v.as_array().into_iter().flatten() {
        let _ = out.write_all(text(item).as_bytes());
    }
    Ok(())
}

/// Decodes a response into its API type, as the Go client does: a value that does not fit
/// is an error `{code: 200, message: <decode error>}`.
pub fn decode<T: DeserializeOwned>(v: &Value) -> CtlResult<T> {
    serde_json::from_value(v.clone()).map_err(|e| {
        RestError {
            code: 200,
            message: e.to_string(),
        }
        .into()
    })
}

/// After a pin, unpin or update: optionally wait, then print the Pin or the status.
pub async fn handle_pin_response(
    ctx: &Ctx,
    w: &WaitArgs,
    pin: &Value,
    target: &str,
    out: &mut dyn Write,
) -> CtlResult<()> {
    let cid = pin
        .get("cid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut status = None;
    if w.wait {
        let limit = w.wait_limit.unwrap_or_else(|| {
            if target == "pinned" {
                pin.get("replication_factor_min")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
            } else {
                0
            }
        });
        let timeout = go_text::go_duration_std(&w.wait_timeout)
            .map_err(|e| CtlError::local("parsing wait-timeout", e))?;
        status = Some(wait_for(ctx, &cid, target, timeout, limit).await?);
    }
    if w.no_status {
        ctx.show::<api::Pin>(out, pin, format::pin)?;
        return Ok(());
    }
    let status = match status {
        Some(s) => s,
        None => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            ctx.client
                .call(
                    Method::GET,
                    &format!("/pins/{cid}?local=false"),
                    Body::Empty,
                )
                .await?
                .unwrap_or(Value::Null)
        }
    };
    ctx.show::<api::GlobalPinInfo>(out, &status, format::global_pin_info)?;
    Ok(())
}

/// Polls the status every second until `target` is reached. `--wait-timeout` applies
/// when longer than 1 s and ends with exit 62.
pub async fn wait_for(
    ctx: &Ctx,
    cid: &str,
    target: &str,
    timeout: Duration,
    limit: i64,
) -> CtlResult<Value> {
    let poll = async {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let st = ctx
                .client
                .call(
                    Method::GET,
                    &format!("/pins/{cid}?local=false"),
                    Body::Empty,
                )
                .await
                .map_err(|e| match e {
                    CtlError::Rest(a) => CtlError::local("waiting for pin status", a),
                    other => other,
                })?
                .unwrap_or(Value::Null);
            if status_reached(&st, target, limit)? {
                return Ok(st);
            }
        }
    };
    if timeout > Duration::from_secs(1) {
        match tokio::time::timeout(timeout, poll).await {
            Ok(r) => r,
            Err(_) => Err(LocalError::deadline("waiting for pin status").into()),
        }
    } else {
        poll.await
    }
}

/// Whether a GlobalPinInfo has reached `target` under `limit`; errors abort the wait.
pub fn status_reached(st: &Value, target: &str, limit: i64) -> CtlResult<bool> {
    let empty = serde_json::Map::new();
    let map = st
        .get("peer_map")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let statuses: Vec<&str> = map
        .values()
        .map(|p| {
            p.get("status")
                .and_then(Value::as_str)
                .unwrap_or("undefined")
        })
        .collect();
    if statuses.iter().any(|s| {
        matches!(
            *s,
            "undefined" | "cluster_error" | "pin_error" | "unpin_error"
        )
    }) {
        return Err(CtlError::local(
            "waiting for pin status",
            format!("error has occurred while attempting to reach status: {target}"),
        ));
    }
    if limit > 0 {
        let limit = (limit as usize).min(statuses.len());
        let n = statuses.iter().filter(|s| **s == target).count();
        return Ok(n >= limit);
    }
    Ok(statuses
        .iter()
        .all(|s| *s == target || (target == "pinned" && *s == "remote")))
}

/// Pin options serialised like the Go client's `ToQuery` (keys sorted, Go query escaping).
pub struct PinQuery {
    pub rmin: i64,
    pub rmax: i64,
    pub name: String,
    pub mode: String,
    pub allocs: Vec<String>,
    pub expire_at: Option<String>,
    pub metadata: Vec<(String, String)>,
    pub pin_update: Option<String>,
}

impl PinQuery {
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut v = vec![
            ("mode".to_string(), self.mode.clone()),
            ("name".to_string(), self.name.clone()),
            ("replication-max".to_string(), self.rmax.to_string()),
            ("replication-min".to_string(), self.rmin.to_string()),
            ("shard-size".to_string(), "0".to_string()),
            ("user-allocations".to_string(), self.allocs.join(",")),
        ];
        if let Some(e) = &self.expire_at {
            v.push(("expire-at".into(), e.clone()));
        }
        for (k, val) in &self.metadata {
            v.push((format!("meta-{k}"), val.clone()));
        }
        if let Some(p) = &self.pin_update {
            v.push(("pin-update".into(), p.clone()));
        }
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub fn encode(&self) -> String {
        encode_pairs(&self.pairs())
    }
}

pub fn encode_pairs(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Go's `url.QueryEscape`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Escapes a URL path, keeping `/` (Go's `url.PathEscape` per segment).
pub fn escape_path(p: &str) -> String {
    p.split('/')
        .map(path_escape_segment)
        .collect::<Vec<_>>()
        .join("/")
}

pub fn path_escape_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
            | b'$'
            | b'&'
            | b'+'
            | b'='
            | b':'
            | b'@'
            | b','
            | b';'
            | b'!'
            | b'\''
            | b'('
            | b')'
            | b'*' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A CID as go-cid reads it; errors in go-cid's words (`invalid cid: …`).
pub fn parse_cid(s: &str) -> Result<String, ArgError> {
    cid::Cid::try_from(s)
        .map(|c| c.to_string())
        .map_err(|e| ArgError::Cid(api::go_cid_error(s, &e.to_string())))
}

/// go-path `ParsePath`: a bare CID (optionally followed by a sub-path) gets `/ipfs/`;
/// `/ipfs/`, `/ipld/` paths need a CID first, `/ipns/` any name.
pub fn ipfs_path(txt: &str) -> Result<String, ArgError> {
    if txt.is_empty() {
        // Upstream reads a missing argument as the empty CID, so the path `/ipfs/`.
        return Err(ArgError::PathTooShort("/ipfs/".into()));
    }
    let parts: Vec<&str> = txt.split('/').collect();
    let bad_cid = |path: String| {
        move |e: ArgError| ArgError::PathCid {
            path,
            cid: e.to_string(),
        }
    };
    if !parts[0].is_empty() {
        // Upstream reads a bare CID as `/ipfs/<txt>` and names that path in errors.
        parse_cid(parts[0]).map_err(bad_cid(format!("/ipfs/{txt}")))?;
        return Ok(format!("/ipfs/{txt}"));
    }
    if parts.len() < 3 {
        return Err(ArgError::PathNoSlash(txt.into()));
    }
    match parts[1] {
        "ipfs" | "ipld" => {
            if parts[2].is_empty() {
                return Err(ArgError::PathNoCid(txt.into()));
            }
            parse_cid(parts[2]).map_err(bad_cid(txt.into()))?;
        }
        "ipns" => {
            if parts[2].is_empty() {
                return Err(ArgError::PathNoCid(txt.into()));
            }
        }
        other => {
            return Err(ArgError::PathNamespace {
                path: txt.into(),
                namespace: other.into(),
            })
        }
    }
    Ok(txt.to_string())
}

/// A peer ID in base58btc (`12D3KooW…`, `Qm…`) or CID form (`bafz…`, `k51…`).
pub fn validate_peer_id(s: &str) -> Result<(), ArgError> {
    if s.is_empty() {
        // go-libp2p decodes anything not base58 as a CID; go-cid's words for "".
        return Err(ArgError::Cid(api::go_cid_error(s, "")));
    }
    let bytes = if s.starts_with('1') || s.starts_with("Qm") {
        cid::multibase::Base::Base58Btc
            .decode(s)
            .map_err(|_| ArgError::PeerNotBase58)?
    } else {
        let c = cid::Cid::try_from(s)
            .map_err(|e| ArgError::Cid(api::go_cid_error(s, &e.to_string())))?;
        if c.codec() != 0x72 {
            return Err(ArgError::PeerCidCodec(c.codec()));
        }
        return Ok(());
    };
    let mh = cid::multihash::Multihash::<64>::from_bytes(&bytes)
        .map_err(|e| ArgError::PeerMultihash(e.to_string()))?;
    match mh.code() {
        0x00 | 0x12 => Ok(()),
        c => Err(ArgError::PeerHashCode(c)),
    }
}

/// `--expire-in` → `expire-at` (RFC3339Nano, UTC).
pub fn parse_expire_in(s: &str) -> CtlResult<Option<String>> {
    if s.is_empty() {
        return Ok(None);
    }
    let ns = go_text::parse_go_duration(s).map_err(|e| CtlError::local("parsing expire-in", e))?;
    Ok(Some(go_text::expire_at_from_now(ns)))
}

/// `--metadata k=v` (repeatable).
pub fn parse_metadata(items: &[String]) -> CtlResult<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for it in items {
        let Some((k, v)) = it.split_once('=') else {
            return Err(CtlError::local(
                "parsing metadata",
                "metadata were not in the format key=value",
            ));
        };
        out.retain(|(ek, _)| ek != k);
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// `pin ls --filter`: OR of pin types; `all` stays `all`, unknown names only → empty.
pub fn pin_type_filter(s: &str) -> String {
    const TYPES: [(&str, u32); 4] = [
        ("pin", 2),
        ("meta-pin", 4),
        ("clusterdag-pin", 8),
        ("shard-pin", 16),
    ];
    let mut bits = 0;
    for f in s.split(',') {
        bits |= match f {
            "all" => 30,
            other => TYPES
                .iter()
                .find(|(n, _)| *n == other)
                .map(|(_, b)| *b)
                .unwrap_or(0),
        };
    }
    if bits == 30 {
        return "all".into();
    }
    TYPES
        .iter()
        .filter(|(_, b)| b & bits != 0)
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(",")
}

/// For `cli` consumers: the default `--host`.
pub fn default_host() -> &'static str {
    cli::DEFAULT_HOST
}

/// A transport-level RestError (code 0) for callers outside this module.
pub fn transport_error(msg: &str) -> RestError {
    RestError::transport(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CID: &str = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";

    #[test]
    fn pin_query_matches_go_client() {
        let q = PinQuery {
            rmin: 0,
            rmax: 0,
            name: "".into(),
            mode: "recursive".into(),
            allocs: vec![],
            expire_at: None,
            metadata: vec![],
            pin_update: None,
        };
        assert_eq!(q.encode(), "mode=recursive&name=&replication-max=0&replication-min=0&shard-size=0&user-allocations=");
        let q = PinQuery {
            rmin: 2,
            rmax: 3,
            name: "my pin".into(),
            mode: "direct".into(),
            allocs: vec!["A".into(), "B".into()],
            expire_at: Some("2024-05-01T10:00:00+02:00".into()),
            metadata: vec![("k".into(), "v".into())],
            pin_update: Some(CID.into()),
        };
        assert_eq!(
            q.encode(),
            format!(
                "expire-at=2024-05-01T10%3A00%3A00%2B02%3A00&meta-k=v&mode=direct&name=my+pin&pin-update={CID}&replication-max=3&replication-min=2&shard-size=0&user-allocations=A%2CB"
            )
        );
    }

    #[test]
    fn paths_like_go_path() {
        assert_eq!(ipfs_path(CID).unwrap(), format!("/ipfs/{CID}"));
        assert_eq!(
            ipfs_path(&format!("{CID}/a")).unwrap(),
            format!("/ipfs/{CID}/a")
        );
        assert_eq!(
            ipfs_path(&format!("/ipfs/{CID}")).unwrap(),
            format!("/ipfs/{CID}")
        );
        assert_eq!(ipfs_path("/ipns/example.com").unwrap(), "/ipns/example.com");
        assert_eq!(
            ipfs_path("notacid").unwrap_err().to_string(),
            "invalid path \"/ipfs/notacid\": invalid cid: selected encoding not supported"
        );
        assert_eq!(
            ipfs_path("/x").unwrap_err().to_string(),
            "invalid path \"/x\": path does not begin with '/'"
        );
        assert_eq!(
            ipfs_path("/abc/def").unwrap_err().to_string(),
            "invalid path \"/abc/def\": unknown namespace \"abc\""
        );
        assert_eq!(
            ipfs_path("/ipfs/notacid").unwrap_err().to_string(),
            "invalid path \"/ipfs/notacid\": invalid cid: selected encoding not supported"
        );
    }

    #[test]
    fn empty_arguments_fail_in_upstreams_words() {
        assert_eq!(
            ipfs_path("").unwrap_err().to_string(),
            "invalid path \"/ipfs/\": path does not have enough components"
        );
        assert_eq!(
            validate_peer_id("").unwrap_err().to_string(),
            "invalid cid: cid too short"
        );
    }

    #[test]
    fn peer_ids() {
        assert!(validate_peer_id("12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA").is_ok());
        assert!(validate_peer_id("QmcQ5XvrSQ4DouNkQyQtEoLczbMr6D9bSenGy6WQUCQUBt").is_ok());
        assert!(validate_peer_id("notapeer").is_err());
        assert!(validate_peer_id("").is_err());
    }

    #[test]
    fn filters() {
        assert_eq!(pin_type_filter("all"), "all");
        assert_eq!(pin_type_filter("pin,shard-pin"), "pin,shard-pin");
        assert_eq!(pin_type_filter("bogus"), "");
        assert_eq!(query_escape("pin,shard-pin"), "pin%2Cshard-pin");
    }

    #[test]
    fn metadata_and_expire() {
        assert_eq!(
            parse_metadata(&["a=b=c".into()]).unwrap(),
            vec![("a".to_string(), "b=c".to_string())]
        );
        let e = parse_metadata(&["nope".into()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "error parsing metadata: metadata were not in the format key=value"
        );
        let e = parse_expire_in("soon").unwrap_err();
        assert_eq!(
            e.to_string(),
            "error parsing expire-in: time: invalid duration \"soon\""
        );
        assert!(parse_expire_in("1h").unwrap().unwrap().ends_with('Z'));
        assert_eq!(parse_expire_in("").unwrap(), None);
    }

    #[test]
    fn wait_conditions() {
        let st =
            |a: &str, b: &str| json!({"cid":CID,"peer_map":{"p1":{"status":a},"p2":{"status":b}}});
        assert!(status_reached(&st("pinned", "remote"), "pinned", 0).unwrap());
        assert!(!status_reached(&st("pinned", "pinning"), "pinned", 0).unwrap());
        assert!(status_reached(&st("pinned", "pinning"), "pinned", 1).unwrap());
        assert!(status_reached(&st("pinned", "pinning"), "pinned", 1).unwrap());
        assert!(!status_reached(&st("pinned", "pinning"), "pinned", 5).unwrap());
        assert!(status_reached(&st("unpinned", "unpinned"), "unpinned", 0).unwrap());
        assert!(!status_reached(&st("unpinned", "remote"), "unpinned", 0).unwrap());
        let e = status_reached(&st("pin_error", "pinned"), "pinned", 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "error waiting for pin status: error has occurred while attempting to reach status: pinned"
        );
    }
}

/// A local error of a step upstream takes inside its client (see `log_not_api_error`).
fn local_in_client(e: ArgError) -> CtlError {
    crate::client::log_not_api_error();
    CtlError::local("", e)
}

/// Go's `hex.DecodeString` errors, in its words (`InvalidByteError`, `ErrLength`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum GoHexError {
    /// The byte as Go's `%#U` of the rune it turns the byte into (Latin-1).
    #[error("invalid byte: U+{:04X}{}", .0, quoted(*.0))]
    InvalidByte(u8),
    #[error("odd length hex string")]
    OddLength,
}

/// ` 'c'` after the code point for a printable byte, as `%#U` adds it.
fn quoted(b: u8) -> String {
    let c = b as char;
    if c.is_control() {
        String::new()
    } else {
        format!(" '{c}'")
    }
}

/// Go's `hex.DecodeString`: the first invalid byte is reported before an odd length.
fn go_hex_decode(s: &str) -> Result<Vec<u8>, GoHexError> {
    fn nibble(b: u8) -> Result<u8, GoHexError> {
        (b as char)
            .to_digit(16)
            .map(|d| d as u8)
            .ok_or(GoHexError::InvalidByte(b))
    }
    let src = s.as_bytes();
    let mut out = Vec::with_capacity(src.len() / 2);
    for pair in src.chunks(2) {
        let hi = nibble(pair[0])?;
        let Some(&lo) = pair.get(1) else {
            return Err(GoHexError::OddLength);
        };
        out.push(hi << 4 | nibble(lo)?);
    }
    Ok(out)
}

#[cfg(test)]
mod hex_tests {
    /// Texts printed by upstream v1.1.6's ctl for `--secret <s>`.
    #[test]
    fn go_hex_words() {
        assert_eq!(
            super::go_hex_decode("zz").unwrap_err().to_string(),
            "invalid byte: U+007A 'z'"
        );
        assert_eq!(
            super::go_hex_decode("1").unwrap_err().to_string(),
            "odd length hex string"
        );
        assert_eq!(
            super::go_hex_decode("\u{1}1").unwrap_err().to_string(),
            "invalid byte: U+0001"
        );
        assert_eq!(
            super::go_hex_decode("é1").unwrap_err().to_string(),
            "invalid byte: U+00C3 'Ã'"
        );
        assert_eq!(super::go_hex_decode("0aFf").unwrap(), vec![0x0a, 0xff]);
    }
}
