//! `add`: walks local paths (`-` is a file named `-`, as upstream), streams them as the multipart body the Go client sends
//! (one part per directory/file, names query-escaped, directories before children),
//! prints each AddedOutput as it arrives and optionally waits for the pin.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::Method;
use serde_json::Value;
use tokio::io::AsyncReadExt;

use crate::cli::AddArgs;
use crate::client::{channel_body, read_stream, Body};
use ipfs_cluster_api as api;

use super::{
    decode, encode_pairs, parse_expire_in, parse_metadata, query_escape, validate_peer_id,
    wait_for, Ctx,
};
use crate::error::{CtlError, CtlResult};
use crate::format;

/// One multipart part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartKind {
    Dir,
    File(PathBuf),
    Symlink(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Relative name (`dir/sub/file`), unescaped.
    pub name: String,
    pub kind: PartKind,
    pub size: u64,
}

/// Lists the parts for `paths` in the Go client's order. Blocking (filesystem walk).
pub fn collect_parts(paths: &[String], recursive: bool, hidden: bool) -> CtlResult<Vec<Part>> {
    let mut parts = Vec::new();
    for p in paths {
        let path = Path::new(p);
        let meta = std::fs::symlink_metadata(path)
            .map_err(|e| CtlError::local("", format!("lstat {p}: {}", io_text(&e))))?;
        let base = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| p.trim_end_matches('/').to_string());
        if meta.is_dir() && !recursive {
            return Err(CtlError::local(
                "",
                format!("{p} is a directory, but Recursive option is not set"),
            ));
        }
        walk(path, &base, &meta, hidden, &mut parts)?;
    }
    Ok(parts)
}

fn walk(
    path: &Path,
    name: &str,
    meta: &std::fs::Metadata,
    hidden: bool,
    parts: &mut Vec<Part>,
) -> CtlResult<()> {
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(path)
            .map_err(|e| CtlError::local("", format!("readlink {}: {e}", path.display())))?;
        parts.push(Part {
            name: name.into(),
            kind: PartKind::Symlink(target.to_string_lossy().to_string()),
            size: 0,
        });
    } else if ft.is_dir() {
        parts.push(Part {
            name: name.into(),
            kind: PartKind::Dir,
            size: 0,
        });
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| CtlError::local("", format!("open {}: {}", path.display(), io_text(&e))))?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let child = e.file_name().to_string_lossy().to_string();
            if !hidden && child.starts_with('.') {
                continue;
            }
            let m = std::fs::symlink_metadata(e.path()).map_err(|err| {
                CtlError::local(
                    "",
                    format!("lstat {}: {}", e.path().display(), io_text(&err)),
                )
            })?;
            walk(&e.path(), &format!("{name}/{child}"), &m, hidden, parts)?;
        }
    } else {
        parts.push(Part {
            name: name.into(),
            kind: PartKind::File(path.to_path_buf()),
            size: meta.len(),
        });
    }
    Ok(())
}

fn io_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// The part header the Go multipart writer emits.
pub fn part_header(boundary: &str, first: bool, part: &Part) -> String {
    let ct = match part.kind {
        PartKind::Dir => "application/x-directory",
        PartKind::Symlink(_) => "application/symlink",
        PartKind::File(_) => "application/octet-stream",
    };
    let lead = if first { "" } else { "\r\n" };
    format!(
        "{lead}--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\nContent-Type: {ct}\r\n\r\n",
        query_escape(&part.name)
    )
}

/// The `/add` query, keys sorted like Go's `url.Values.Encode`.
pub fn add_query(a: &AddArgs, wrap: bool, cid_version: i64, raw_leaves: bool) -> CtlResult<String> {
    let mut allocs = Vec::new();
    if !a.allocations.is_empty() {
        // upstream drops undecodable IDs silently on add
        allocs = a
            .allocations
            .split(',')
            .filter(|p| validate_peer_id(p).is_ok())
            .map(String::from)
            .collect();
    }
    let mut pairs: Vec<(String, String)> = vec![
        ("chunker".into(), a.chunker.clone()),
        ("cid-version".into(), cid_version.to_string()),
        ("format".into(), a.format.clone()),
        ("hash".into(), a.hash.clone()),
        ("hidden".into(), a.hidden.to_string()),
        ("layout".into(), a.layout.clone()),
        ("local".into(), a.local.to_string()),
        ("mode".into(), "recursive".into()),
        ("name".into(), a.name.clone()),
        ("no-pin".into(), a.no_pin.to_string()),
        ("nocopy".into(), a.nocopy.to_string()),
        ("progress".into(), "false".into()),
        ("raw-leaves".into(), raw_leaves.to_string()),
        ("recursive".into(), a.recursive.to_string()),
        ("replication-max".into(), a.replication_max.to_string()),
        ("replication-min".into(), a.replication_min.to_string()),
        ("shard".into(), "false".into()),
        ("shard-size".into(), "104857600".into()),
        ("stream-channels".into(), "true".into()),
        ("user-allocations".into(), allocs.join(",")),
        ("wrap-with-directory".into(), wrap.to_string()),
    ];
    if let Some(e) = parse_expire_in(&a.expire_in)? {
        pairs.push(("expire-at".into(), e));
    }
    for (k, v) in parse_metadata(&a.metadata)? {
        pairs.push((format!("meta-{k}"), v));
    }
    pairs.sort_by(|x, y| x.0.cmp(&y.0));
    Ok(encode_pairs(&pairs))
}

/// Runs `add`.
pub async fn add(
    ctx: &Ctx,
    a: AddArgs,
    out: &mut dyn Write,
    _err: &mut dyn Write,
) -> CtlResult<()> {
    if a.paths.is_empty() {
        return Err(CtlError::local("", "need at least one path"));
    }
    let wrap = a.wrap_with_directory || a.paths.len() > 1;
    let mut cid_version = a.cid_version;
    if a.hash != "sha2-256" {
        cid_version = 1;
    }
    let raw_leaves = a.raw_leaves || cid_version > 0 || a.nocopy;
    if wrap && a.format == "car" {
        return Err(CtlError::local(
            "",
            "only a single CAR file can be added and wrap-with-directory is not supported",
        ));
    }
    if a.paths
        .iter()
        .any(|p| p.starts_with("http://") || p.starts_with("https://"))
    {
        return Err(CtlError::local(
            "",
            "adding URLs is not supported yet by this ipfs-cluster-ctl; download the file first",
        ));
    }
    if a.nocopy {
        crate::client::log_not_api_error();
        return Err(CtlError::local("", "nocopy option is only valid for URLs"));
    }
    let query = add_query(&a, wrap, cid_version, raw_leaves)?;
    let paths = a.paths.clone();
    let (recursive, hidden) = (a.recursive, a.hidden);
    let parts = tokio::task::spawn_blocking(move || collect_parts(&paths, recursive, hidden))
        .await
        .map_err(|e| CtlError::local("", e))?
        .inspect_err(|_| crate::client::log_not_api_error())?;

    let qq = a.quieter;
    let quiet = a.quiet || qq;
    let total: u64 = parts.iter().map(|p| p.size).sum();
    let bar = (std::io::stderr().is_terminal() && !quiet).then(|| {
        let b = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec}",
        ) {
            b.set_style(style);
        }
        b
    });

    let boundary = format!(
        "{:032x}",
        crate::go_text::now_ns() as u128 ^ ((std::process::id() as u128) << 64)
    );
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let producer_bar = bar.clone();
    let producer = tokio::spawn(produce(parts, boundary.clone(), tx, producer_bar));
    let body = Body::Stream(
        channel_body(rx),
        format!("multipart/form-data; boundary={boundary}"),
    );

    let mut buffered: Vec<Value> = Vec::new();
    let mut last: Option<Value> = None;
    let json = ctx.json;
    let print = |out: &mut dyn Write, v: &Value| {
        let s = if json {
            format::json_pretty(v)
        } else {
            format::added_output(v, quiet)
        };
        match &bar {
            Some(b) => b.suspend(|| {
                let _ = out.write_all(s.as_bytes());
            }),
            None => {
                let _ = out.write_all(s.as_bytes());
            }
        }
    };
    let path = format!("/add?{query}");
    let result = ctx
        .client
        .with_timeout(&format!("Post \"{path}\""), async {
            let resp = ctx.client.send(Method::POST, &path, body).await?;
            read_stream(resp, &mut |v| {
                // decode as the Go client does, then work on the re-encoded object
                let v = serde_json::to_value(decode::<api::AddedOutput>(&v)?).unwrap_or(v);
                last = Some(v.clone());
                if a.no_stream {
                    buffered.push(v);
                } else if !qq {
                    print(out, &v);
                }
                Ok(())
            })
            .await
        })
        .await;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    // A file that could not be read is the cause of a broken upload: report it first.
    if let Ok(Err(e)) = producer.await {
        return Err(e);
    }
    let root_cid = last
        .as_ref()
        .and_then(|v| v.get("cid"))
        .and_then(Value::as_str)
        .map(String::from);
    if let Some(root) = root_cid.as_deref() {
        if a.no_stream {
            let items = if qq {
                last.clone().into_iter().collect()
            } else {
                std::mem::take(&mut buffered)
            };
            if json {
                let _ = out.write_all(format::json_pretty(&Value::Array(items)).as_bytes());
            } else {
                for v in &items {
                    print(out, v);
                }
            }
        } else if qq {
            if let Some(v) = &last {
                print(out, v);
            }
        }
        if a.wait && result.is_ok() {
            let rmin = match ctx
                .client
                .call(Method::GET, &format!("/allocations/{root}"), Body::Empty)
                .await
            {
                Ok(Some(p)) => p
                    .get("replication_factor_min")
                    .and_then(Value::as_i64)
                    .unwrap_or(a.replication_min),
                _ => a.replication_min,
            };
            let timeout = crate::go_text::go_duration_std(&a.wait_timeout)
                .map_err(|e| CtlError::local("parsing wait-timeout", e))?;
            wait_for(ctx, root, "pinned", timeout, rmin).await?;
        }
    }
    result
}

/// Writes the multipart body into the channel (bounded, so memory stays small).
async fn produce(
    parts: Vec<Part>,
    boundary: String,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    bar: Option<indicatif::ProgressBar>,
) -> CtlResult<()> {
    let send = |b: Bytes| {
        let tx = tx.clone();
        async move { tx.send(Ok(b)).await.is_ok() }
    };
    for (i, part) in parts.iter().enumerate() {
        if !send(Bytes::from(part_header(&boundary, i == 0, part))).await {
            return Ok(()); // the request ended early; its error is reported by the caller
        }
        match &part.kind {
            PartKind::Dir => {}
            PartKind::Symlink(t) => {
                if !send(Bytes::from(t.clone())).await {
                    return Ok(());
                }
            }
            PartKind::File(path) => {
                let mut f = tokio::fs::File::open(path).await.map_err(|e| {
                    CtlError::local("", format!("open {}: {}", path.display(), io_text(&e)))
                })?;
                if !pump(&mut f, &tx, bar.as_ref()).await? {
                    return Ok(());
                }
            }
        }
    }
    let _ = send(Bytes::from(format!("\r\n--{boundary}--\r\n"))).await;
    Ok(())
}

async fn pump<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    tx: &tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    bar: Option<&indicatif::ProgressBar>,
) -> CtlResult<bool> {
    loop {
        let mut buf = vec![0u8; 256 * 1024];
        let n = r.read(&mut buf).await.map_err(|e| {
            let msg = format!("reading input: {e}");
            let _ = tx.try_send(Err(std::io::Error::other(msg.clone())));
            CtlError::local("", msg)
        })?;
        if n == 0 {
            return Ok(true);
        }
        buf.truncate(n);
        if let Some(b) = bar {
            b.inc(n as u64);
        }
        if tx.send(Ok(Bytes::from(buf))).await.is_err() {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_in_go_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("testFolder");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("b.txt"), b"bb").unwrap();
        std::fs::write(root.join("abc.txt"), b"a").unwrap();
        std::fs::write(root.join(".hidden"), b"h").unwrap();
        std::fs::write(root.join("sub/c d.txt"), b"ccc").unwrap();
        let p = root.to_string_lossy().to_string();
        let names: Vec<String> = collect_parts(std::slice::from_ref(&p), true, false)
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(
            names,
            vec![
                "testFolder",
                "testFolder/abc.txt",
                "testFolder/b.txt",
                "testFolder/sub",
                "testFolder/sub/c d.txt"
            ]
        );
        let with_hidden = collect_parts(std::slice::from_ref(&p), true, true).unwrap();
        assert_eq!(with_hidden[1].name, "testFolder/.hidden");
        let e = collect_parts(std::slice::from_ref(&p), false, false).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("error : {p} is a directory, but Recursive option is not set")
        );
        let missing = dir.path().join("nope").to_string_lossy().to_string();
        assert!(collect_parts(&[missing], false, false)
            .unwrap_err()
            .to_string()
            .contains("no such file or directory"));
    }

    #[test]
    fn part_headers() {
        let part = Part {
            name: "testFolder/c d.txt".into(),
            kind: PartKind::File("x".into()),
            size: 1,
        };
        assert_eq!(
            part_header("B", true, &part),
            "--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"testFolder%2Fc+d.txt\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        );
        let dir = Part {
            name: "d".into(),
            kind: PartKind::Dir,
            size: 0,
        };
        assert!(part_header("B", false, &dir).starts_with("\r\n--B\r\n"));
        assert!(part_header("B", false, &dir).contains("application/x-directory"));
    }
}
