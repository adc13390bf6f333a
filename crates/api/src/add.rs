//! Add parameters of `POST /add`: `AddParams::from_query` parses them as upstream
//! (pin options first, then layout, chunker, hash, format and the Go-style bools, with
//! upstream's 400 texts) and `AddParams::to_query` writes them as the Go client does.
use crate::query::QueryParams;
use crate::{PinOptions, QueryError};

/// Upstream's default shard size (100 MB), which the Go client always sends.
pub const DEFAULT_SHARD_SIZE: u64 = 100 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq)]
pub struct AddParams {
    /// Pin options; `pin_update` is always cleared. Note `shard_size` is 0 when the query
    /// has no `shard-size` (upstream loses the default there).
    pub pin_options: PinOptions,
    pub local: bool,
    /// `balanced`, `trickle` or "" (= balanced).
    pub layout: String,
    pub chunker: String,
    pub raw_leaves: bool,
    pub hidden: bool,
    pub wrap: bool,
    pub shard: bool,
    pub progress: bool,
    pub cid_version: i32,
    pub hash_fun: String,
    pub stream_channels: bool,
    pub no_copy: bool,
    pub no_pin: bool,
    /// Client-side only: the server does not use it.
    pub recursive: bool,
    /// `unixfs`, `car` or "" (= unixfs).
    pub format: String,
}

impl Default for AddParams {
    /// Upstream's DefaultAddParams (what the Go client starts from).
    fn default() -> Self {
        AddParams {
            pin_options: PinOptions {
                shard_size: DEFAULT_SHARD_SIZE,
                metadata: Some(Default::default()),
                ..Default::default()
            },
            local: false,
            layout: String::new(),
            chunker: "size-262144".into(),
            raw_leaves: false,
            hidden: false,
            wrap: false,
            shard: false,
            progress: false,
            cid_version: 0,
            hash_fun: "sha2-256".into(),
            stream_channels: true,
            no_copy: false,
            no_pin: false,
            recursive: false,
            format: String::new(),
        }
    }
}

/// Go's strconv.ParseBool.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn bool_param(q: &QueryParams, name: &str, dst: &mut bool) -> Result<(), QueryError> {
    let v = q.get(name);
    if !v.is_empty() {
        *dst = parse_go_bool(v).ok_or_else(|| QueryError(format!("parameter {name} invalid")))?;
    }
    Ok(())
}

impl AddParams {
    pub fn from_query(query: &str) -> Result<AddParams, QueryError> {
        Self::from_params(&QueryParams::parse(query))
    }

    pub fn from_params(q: &QueryParams) -> Result<AddParams, QueryError> {
        let mut p = AddParams {
            pin_options: PinOptions::from_params(q)?,
            ..Default::default()
        };
        p.pin_options.pin_update = None;
        p.layout = match q.get("layout") {
            l @ ("trickle" | "balanced" | "") => l.to_string(),
            _ => return Err(QueryError("layout parameter is invalid".into())),
        };
        if !q.get("chunker").is_empty() {
            p.chunker = q.get("chunker").to_string();
        }
        if !q.get("hash").is_empty() {
            p.hash_fun = q.get("hash").to_string();
        }
        p.format = match q.get("format") {
            f @ ("car" | "unixfs" | "") => f.to_string(),
            _ => return Err(QueryError("format parameter is invalid".into())),
        };
        bool_param(q, "local", &mut p.local)?;
        bool_param(q, "recursive", &mut p.recursive)?;
        bool_param(q, "hidden", &mut p.hidden)?;
        bool_param(q, "wrap-with-directory", &mut p.wrap)?;
        bool_param(q, "shard", &mut p.shard)?;
        bool_param(q, "progress", &mut p.progress)?;
        let v = q.get("cid-version");
        if !v.is_empty() {
            p.cid_version = v
                .parse()
                .map_err(|_| QueryError("parameter cid-version invalid".into()))?;
        }
        // as go-ipfs: CIDv1 implies raw leaves unless raw-leaves says otherwise
        if p.cid_version > 0 {
            p.raw_leaves = true;
        }
        bool_param(q, "raw-leaves", &mut p.raw_leaves)?;
        bool_param(q, "stream-channels", &mut p.stream_channels)?;
        bool_param(q, "nocopy", &mut p.no_copy)?;
        bool_param(q, "no-pin", &mut p.no_pin)?;
        Ok(p)
    }

    /// The query the Go client sends: the pin options plus every add parameter.
    pub fn to_query(&self) -> String {
        let mut q = QueryParams::parse(&self.pin_options.to_query());
        let b = |v: bool| if v { "true" } else { "false" };
        q.set("shard", b(self.shard));
        q.set("local", b(self.local));
        q.set("recursive", b(self.recursive));
        q.set("layout", self.layout.clone());
        q.set("chunker", self.chunker.clone());
        q.set("raw-leaves", b(self.raw_leaves));
        q.set("hidden", b(self.hidden));
        q.set("wrap-with-directory", b(self.wrap));
        q.set("progress", b(self.progress));
        q.set("cid-version", self.cid_version.to_string());
        q.set("hash", self.hash_fun.clone());
        q.set("stream-channels", b(self.stream_channels));
        q.set("nocopy", b(self.no_copy));
        q.set("format", self.format.clone());
        q.set("no-pin", b(self.no_pin));
        q.encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";

    #[test]
    fn defaults_from_empty_query() {
        let p = AddParams::from_query("").unwrap();
        assert_eq!(p.pin_options.shard_size, 0, "upstream loses the default");
        assert!(p.stream_channels);
        assert_eq!(p.chunker, "size-262144");
        assert_eq!(p.hash_fun, "sha2-256");
        assert!(!p.raw_leaves && !p.local && !p.no_pin);
        assert_eq!(p.layout, "");
        assert_eq!(p.format, "");
    }

    #[test]
    fn raw_leaves_follow_cid_version() {
        assert!(AddParams::from_query("cid-version=1").unwrap().raw_leaves);
        assert!(
            !AddParams::from_query("cid-version=1&raw-leaves=false")
                .unwrap()
                .raw_leaves
        );
        assert!(AddParams::from_query("raw-leaves=T").unwrap().raw_leaves);
    }

    #[test]
    fn values_and_errors() {
        let p = AddParams::from_query(&format!(
            "local=1&wrap-with-directory=True&shard=t&progress=TRUE&no-pin=true&nocopy=0\
             &stream-channels=false&layout=trickle&format=car&chunker=rabin-1-2-3&hash=blake2b-256\
             &pin-update={CID}&name=x&shard-size=5"
        ))
        .unwrap();
        assert!(p.local && p.wrap && p.shard && p.progress && p.no_pin && !p.no_copy);
        assert!(!p.stream_channels);
        assert_eq!((p.layout.as_str(), p.format.as_str()), ("trickle", "car"));
        assert_eq!(p.chunker, "rabin-1-2-3");
        assert_eq!(p.hash_fun, "blake2b-256");
        assert_eq!(p.pin_options.pin_update, None);
        assert_eq!(p.pin_options.name, "x");
        assert_eq!(p.pin_options.shard_size, 5);
        let err = |q: &str| AddParams::from_query(q).unwrap_err().0;
        assert_eq!(err("layout=fancy"), "layout parameter is invalid");
        assert_eq!(err("format=zip"), "format parameter is invalid");
        assert_eq!(err("local=yes"), "parameter local invalid");
        assert_eq!(err("cid-version=one"), "parameter cid-version invalid");
        assert_eq!(err("no-pin=2"), "parameter no-pin invalid");
        assert_eq!(
            err("replication-min=z"),
            "parameter replication-min invalid"
        );
    }

    #[test]
    fn to_query_round_trips() {
        let d = AddParams::default();
        let q = d.to_query();
        assert_eq!(
            q,
            "chunker=size-262144&cid-version=0&format=&hash=sha2-256&hidden=false&layout=\
             &local=false&mode=recursive&name=&no-pin=false&nocopy=false&progress=false\
             &raw-leaves=false&recursive=false&replication-max=0&replication-min=0\
             &shard=false&shard-size=104857600&stream-channels=true&user-allocations=\
             &wrap-with-directory=false"
        );
        assert_eq!(AddParams::from_query(&q).unwrap(), d);
    }
}
