//! `ipfs-cluster-service state export|import|cleanup`: offline administration of a peer's
//! pinset, as upstream (the daemon must be stopped; `cluster.lock` is taken). The state
//! travels in upstream's format: export writes one api Pin JSON object per line; import,
//! like upstream's (a JSON decoder over the stream), reads any sequence of JSON objects
//! separated by whitespace, so a pretty-printed pin spanning several lines imports too.
//! Import checks the whole input before it wipes anything, so bad input never leaves a
//! half-imported state. `state crdt info|dot|mark-dirty|mark-clean` read and mark a crdt
//! peer's store file directly, as upstream's commands of the same names.

use std::{
    io::IsTerminal,
    os::fd::AsFd,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{anyhow, bail, Context, Result};
use ipfs_cluster_api::{parse_peer_id, proto, to_json_line, Pin};
use ipfs_cluster_config::Peer;
use ipfs_cluster_proto::consensus::v1::ListRequest;
use ipfs_cluster_runtime::peer_folder;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_stream::{wrappers::ReceiverStream, StreamExt};

use crate::{lock::lock_config_dir, offline::OfflineConsensus, supervisor::default_bin_dir};

/// The consensus store's file inside the raft folder (crates/consensus `store::DB_FILE`).
const DB_FILE: &str = "consensus.redb";
const IMPORT_QUEUE: usize = 256;

/// Where the peer lives and where the service binaries are.
pub struct StateOptions {
    pub config_dir: PathBuf,
    /// Default: `$IPFS_CLUSTER_BIN_DIR`, else beside this executable.
    pub bin_dir: Option<PathBuf>,
}

impl StateOptions {
    fn bin_dir(&self) -> Result<PathBuf> {
        match &self.bin_dir {
            Some(d) => Ok(d.clone()),
            None => default_bin_dir(),
        }
    }
}

pub struct ImportOptions {
    /// Read from this file; stdin when None.
    pub input: Option<PathBuf>,
    /// Do not ask before wiping the current state.
    pub force: bool,
    /// Applied to every pin when > 0.
    pub replication_min: i32,
    /// Applied to every pin when > 0.
    pub replication_max: i32,
    /// Replaces every pin's allocations when not empty.
    pub allocations: Vec<String>,
}

/// Why one value of an export is not a pin.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("not a JSON object (one pin object per line expected)")]
    NotAnObject,
    #[error("the pin has no \"cid\"")]
    NoCid,
    #[error("invalid pin: {0}")]
    InvalidPin(serde_json::Error),
}

/// Reads one value of an export: a JSON Pin object. As upstream's Rust note says, an absent
/// `type` means `pin` and an absent `max_depth` means recursive (-1).
pub fn parse_line(line: &str) -> Result<Pin, LineError> {
    let mut v: serde_json::Value = serde_json::from_str(line).map_err(LineError::NotJson)?;
    let obj = v.as_object_mut().ok_or(LineError::NotAnObject)?;
    match obj.get("cid") {
        None | Some(serde_json::Value::Null) => return Err(LineError::NoCid),
        _ => {}
    }
    if obj.get("max_depth").is_none_or(|d| d.is_null()) {
        obj.insert("max_depth".into(), (-1).into());
    }
    if obj.get("type").is_none_or(|d| d.is_null()) {
        obj.insert("type".into(), "pin".into());
    }
    serde_json::from_value::<Pin>(v).map_err(LineError::InvalidPin)
}

impl ImportOptions {
    fn check(&self) -> Result<()> {
        if self.replication_min > 0
            && self.replication_max > 0
            && self.replication_min > self.replication_max
        {
            bail!(
                "--replication-min ({}) is greater than --replication-max ({})",
                self.replication_min,
                self.replication_max
            );
        }
        for a in &self.allocations {
            parse_peer_id(a).map_err(|e| anyhow!("--allocations: {e}"))?;
        }
        Ok(())
    }

    fn apply(&self, mut pin: Pin) -> Pin {
        if self.replication_min > 0 {
            pin.options.replication_factor_min = self.replication_min;
        }
        if self.replication_max > 0 {
            pin.options.replication_factor_max = self.replication_max;
        }
        if !self.allocations.is_empty() {
            pin.allocations = self
                .allocations
                .iter()
                .map(|a| parse_peer_id(a).unwrap_or_else(|_| a.clone()))
                .collect();
        }
        pin
    }
}

fn has_state(peer: &Peer) -> bool {
    match peer.config.consensus.crdt {
        Some(_) => consensus_dir(peer).join("crdt.redb").exists(),
        None => peer.raft_dir().join(DB_FILE).exists(),
    }
}

/// The consensus state folder: `<config dir>/crdt` in crdt mode, else the raft folder.
fn consensus_dir(peer: &Peer) -> PathBuf {
    match peer.config.consensus.crdt {
        Some(_) => peer.data_dir("crdt"),
        None => peer.raft_dir(),
    }
}

/// Asks on the terminal; without a terminal (and without --force) refuses.
async fn confirm(question: String, force: bool) -> Result<()> {
    if force {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("{question}: confirmation needed but stdin is not a terminal; pass --force");
    }
    let answer = tokio::task::spawn_blocking(move || {
        eprint!("{question} [y/N]: ");
        let mut s = String::new();
        std::io::stdin().read_line(&mut s).map(|_| s)
    })
    .await??;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => bail!("aborted: nothing was changed"),
    }
}

/// `state export`: every pin of the state, one JSON line each, to `out` or stdout.
pub async fn export(opts: &StateOptions, out: Option<&Path>) -> Result<u64> {
    let peer = Peer::load(&opts.config_dir)?;
    let _lock = lock_config_dir(&opts.config_dir)?;
    let sink: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match out {
        Some(p) => Box::new(
            tokio::fs::File::create(p)
                .await
                .with_context(|| format!("cannot create {}", p.display()))?,
        ),
        None => Box::new(std_fd(std::io::stdout().as_fd())?),
    };
    let mut sink = tokio::io::BufWriter::new(sink);
    if !has_state(&peer) {
        tracing::info!(raft_dir = %peer.raft_dir().display(), "no consensus state yet: exporting an empty pinset");
        sink.flush().await?;
        return Ok(0);
    }
    let mut consensus = OfflineConsensus::start(&peer, &opts.bin_dir()?).await?;
    let result = async {
        let mut stream = consensus
            .client
            .export(ListRequest { type_filter: 0 })
            .await
            .map_err(|e| anyhow!("consensus Export: {}", e.message()))?
            .into_inner();
        let mut n = 0u64;
        while let Some(p) = stream.next().await {
            let p = p.map_err(|e| anyhow!("consensus Export: {}", e.message()))?;
            let cid = p.cid.clone();
            let pin = Pin::from_state_proto(p).map_err(|e| {
                anyhow!("the state holds a pin that cannot be exported ({cid}): {e}")
            })?;
            sink.write_all(to_json_line(&pin)?.as_bytes()).await?;
            n += 1;
        }
        sink.flush().await?;
        Ok::<_, anyhow::Error>(n)
    }
    .await;
    let stopped = consensus.stop().await;
    let n = result?;
    stopped?;
    Ok(n)
}

/// First pass over an import file: every line must be a valid pin. Returns the pin count.
async fn validate(path: &Path) -> Result<u64> {
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut values = JsonValues::new(BufReader::new(file));
    let mut n = 0u64;
    while let Some((lineno, text)) = values
        .next()
        .await
        .with_context(|| format!("reading {}", path.display()))?
    {
        parse_line(&text).map_err(|e| anyhow!("line {lineno}: {e}"))?;
        n += 1;
    }
    Ok(n)
}

/// The largest single JSON value an import accepts (a pin is a few hundred bytes; this
/// only stops a garbage file from being buffered whole).
const MAX_VALUE_BYTES: usize = 16 << 20;

/// Splits a byte stream into its top-level JSON values, as a streaming JSON decoder does:
/// values may span lines, several may share a line, any whitespace separates them. Only
/// the boundaries are found here (strings and escapes respected); each value's text is
/// then parsed on its own, so memory stays at one value whatever the input size.
struct JsonValues<R> {
    reader: R,
    /// The current line (1-based), counted over every byte consumed.
    line: usize,
}

impl<R: tokio::io::AsyncBufRead + Unpin> JsonValues<R> {
    fn new(reader: R) -> Self {
        Self { reader, line: 1 }
    }

    /// The next value's text and the line it starts on; None at the end of the input.
    async fn next(&mut self) -> Result<Option<(usize, String)>> {
        // Skip whitespace.
        loop {
            let buf = self.reader.fill_buf().await?;
            if buf.is_empty() {
                return Ok(None);
            }
            let skip = buf
                .iter()
                .take_while(|b| b.is_ascii_whitespace())
                .inspect(|b| self.line += usize::from(**b == b'\n'))
                .count();
            let done = skip < buf.len();
            self.reader.consume(skip);
            if done {
                break;
            }
        }
        let start = self.line;
        let mut out = Vec::new();
        let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
        // A value that does not start with `{` or `[` is a scalar: it ends at whitespace
        // or a bracket (and then fails to parse as a pin, naming the line).
        let mut scalar = None;
        loop {
            let buf = self.reader.fill_buf().await?;
            if buf.is_empty() {
                return match scalar {
                    Some(true) => Ok(Some((start, String::from_utf8_lossy(&out).into_owned()))),
                    _ => bail!(
                        "line {start}: not JSON: the input ends inside the value that starts here"
                    ),
                };
            }
            let mut used = 0;
            let mut complete = false;
            for &b in buf {
                if scalar.is_none() {
                    scalar = Some(b != b'{' && b != b'[');
                }
                if scalar == Some(true) {
                    if b.is_ascii_whitespace() || b"{}[]".contains(&b) && !out.is_empty() {
                        complete = true;
                        break;
                    }
                    out.push(b);
                    used += 1;
                    continue;
                }
                used += 1;
                out.push(b);
                self.line += usize::from(b == b'\n');
                if in_str {
                    match (escaped, b) {
                        (true, _) => escaped = false,
                        (false, b'\\') => escaped = true,
                        (false, b'"') => in_str = false,
                        _ => {}
                    }
                    continue;
                }
                match b {
                    b'"' => in_str = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            complete = true;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            self.reader.consume(used);
            if out.len() > MAX_VALUE_BYTES {
                bail!("line {start}: the value that starts here is larger than {MAX_VALUE_BYTES} bytes: not a pin");
            }
            if complete {
                return Ok(Some((start, String::from_utf8_lossy(&out).into_owned())));
            }
        }
    }
}

fn progress_bar(total: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() || total < 1000 {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "importing {bar:40} {pos}/{len} pins ({per_sec}, eta {eta})",
    ) {
        pb.set_style(style);
    }
    pb
}

/// `state import`: wipes the state and adds every pin of the input, as given (plus the
/// replication/allocation overrides). Returns the number of pins imported.
pub async fn import(opts: &StateOptions, iopts: &ImportOptions) -> Result<u64> {
    iopts.check()?;
    let peer = Peer::load(&opts.config_dir)?;
    let _lock = lock_config_dir(&opts.config_dir)?;
    // stdin is spooled to a temp file so the input can be checked before the wipe.
    let mut _spool = None;
    let path = match &iopts.input {
        Some(p) => p.clone(),
        None => {
            if !iopts.force {
                bail!("state import reads the pins from stdin, so it cannot ask for confirmation there: pass --force (the current state will be wiped) or give a file");
            }
            let tmp = tempfile::NamedTempFile::new().context("creating a temp file for stdin")?;
            let mut f = tokio::fs::File::from_std(tmp.reopen()?);
            tokio::io::copy(&mut std_fd(std::io::stdin().as_fd())?, &mut f)
                .await
                .context("reading the pins from stdin")?;
            f.flush().await?;
            let p = tmp.path().to_path_buf();
            _spool = Some(tmp);
            p
        }
    };
    let total = validate(&path)
        .await
        .with_context(|| format!("{}: nothing was imported", display_input(&iopts.input)))?;
    confirm(
        format!(
            "state import replaces the whole pinset of {} with {total} pins from {}",
            opts.config_dir.display(),
            display_input(&iopts.input)
        ),
        iopts.force,
    )
    .await?;

    let raft = peer.config.consensus.raft.clone().unwrap_or_default();
    if has_state(&peer) {
        let backup =
            peer_folder::copy_to_backup(&consensus_dir(&peer), raft.backups_rotate.max(1) as u32)?;
        tracing::info!(backup = %backup.display(), "current consensus state backed up");
    }
    let mut consensus = OfflineConsensus::start(&peer, &opts.bin_dir()?).await?;
    let result = async {
        if peer.config.consensus.crdt.is_none() {
            consensus
                .wait_leader(raft.wait_for_leader_timeout.as_duration() + Duration::from_secs(10))
                .await?;
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<proto::Pin>(IMPORT_QUEUE);
        let pb = progress_bar(total);
        let apply = |p: Pin| proto::Pin::from(iopts.apply(p));
        let (read, resp) = tokio::join!(
            read_pins(path.clone(), apply, tx, pb.clone()),
            consensus.client.import(ReceiverStream::new(rx))
        );
        pb.finish_and_clear();
        let imported = resp
            .map_err(|e| anyhow!("consensus Import: {}", e.message()))?
            .into_inner()
            .imported;
        read.context("the input changed during the import: the state is partial; re-run the import (the previous state is in the raft.old.0 backup)")?;
        if imported != total {
            bail!("consensus imported {imported} pins of {total}; re-run the import");
        }
        Ok::<_, anyhow::Error>(imported)
    }
    .await;
    let stopped = consensus.stop().await;
    let n = result?;
    stopped?;
    Ok(n)
}

/// Second pass: streams the (already checked) pins to the import call.
async fn read_pins(
    path: PathBuf,
    apply: impl Fn(Pin) -> proto::Pin,
    tx: tokio::sync::mpsc::Sender<proto::Pin>,
    pb: indicatif::ProgressBar,
) -> Result<()> {
    let file = tokio::fs::File::open(&path).await?;
    let mut values = JsonValues::new(BufReader::new(file));
    while let Some((lineno, text)) = values.next().await? {
        let pin = parse_line(&text).map_err(|e| anyhow!("line {lineno}: {e}"))?;
        if tx.send(apply(pin)).await.is_err() {
            bail!("the consensus service stopped reading the import");
        }
        pb.inc(1);
    }
    Ok(())
}

/// stdin/stdout as tokio files (their I/O runs on the blocking pool, off the runtime).
fn std_fd(fd: std::os::fd::BorrowedFd<'_>) -> Result<tokio::fs::File> {
    let owned = fd
        .try_clone_to_owned()
        .context("duplicating stdin/stdout")?;
    Ok(tokio::fs::File::from_std(std::fs::File::from(owned)))
}

fn display_input(input: &Option<PathBuf>) -> String {
    input
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "stdin".into())
}

/// `state cleanup`: moves the raft folder to a rotated backup; the next start is a first
/// start (bootstrap from init_peerset, or join with --bootstrap).
pub async fn cleanup(opts: &StateOptions, force: bool) -> Result<Option<PathBuf>> {
    let peer = Peer::load(&opts.config_dir)?;
    let _lock = lock_config_dir(&opts.config_dir)?;
    let dir = consensus_dir(&peer);
    // The consensus service's "this peer was removed" marker: after a cleanup the next
    // start is a first start again.
    let marker = peer_folder::removed_marker(&dir);
    // And its "waiting to be added by another cluster's leader" marker (written when a
    // leader resets this one-peer cluster to add it): a cleaned-up peer starts afresh.
    let staging = peer_folder::staging_marker(&dir);
    if !dir.exists() {
        for m in [&marker, &staging] {
            if m.exists() {
                std::fs::remove_file(m).with_context(|| format!("removing {}", m.display()))?;
            }
        }
        return Ok(None);
    }
    let keep = peer
        .config
        .consensus
        .raft
        .as_ref()
        .map(|r| r.backups_rotate)
        .unwrap_or(6)
        .max(1) as u32;
    confirm(
        format!(
            "state cleanup removes this peer's consensus state ({}; kept as a backup, {keep} backups rotate)",
            dir.display()
        ),
        force,
    )
    .await?;
    for m in [&marker, &staging] {
        if m.exists() {
            std::fs::remove_file(m).with_context(|| format!("removing {}", m.display()))?;
        }
    }
    if !has_state(&peer) {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("removing the empty raft folder {}", dir.display()))?;
        return Ok(None);
    }
    // Upstream's cleanup moves the folder away (rotating older backups).
    Ok(Some(peer_folder::move_to_backup(&dir, keep)?))
}

/// `state crdt …` (upstream's commands on a crdt peer's store; the peer must be stopped).
pub enum CrdtCommand {
    /// Heads, max height and the dirty flag, in upstream's words.
    Info,
    /// The DAG as DOT text, to this file or stdout.
    Dot(Option<PathBuf>),
    /// Force a repair of the DAG on the next start.
    MarkDirty,
    /// Remove the dirty mark: no repair on the next start.
    MarkClean,
}

/// Runs a `state crdt` command; returns what goes to stdout.
pub async fn crdt(opts: &StateOptions, cmd: CrdtCommand) -> Result<String> {
    let peer = Peer::load(&opts.config_dir)?;
    let Some(cfg) = peer.config.consensus.crdt.clone() else {
        bail!("crdt subcommands can only be run on peers initialized with crdt consensus");
    };
    let lock = lock_config_dir(&opts.config_dir)?;
    let dir = consensus_dir(&peer);
    let result = tokio::task::spawn_blocking(move || -> Result<String> {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the crdt folder {}", dir.display()))?;
        let path = dir.join("crdt.redb");
        let store = ipfs_cluster_crdt::CrdtStore::open(
            &path,
            ipfs_cluster_crdt::CrdtConfig {
                cluster_name: cfg.cluster_name.clone(),
                ..Default::default()
            },
        )
        .with_context(|| format!("opening the crdt store {}", path.display()))?;
        Ok(match cmd {
            CrdtCommand::Info => {
                let heads = store.heads()?;
                let height = heads.iter().map(|h| h.1).max().unwrap_or(0);
                let list: Vec<String> = heads.iter().map(|(c, _)| c.to_string()).collect();
                // Upstream prints Go's `%s` of a CID slice and no final newline.
                format!(
                    "Number of heads: {}. Current max-height: {height}. Dirty: {}\nHeads: [{}]",
                    heads.len(),
                    store.is_dirty()?,
                    list.join(" ")
                )
            }
            CrdtCommand::Dot(file) => {
                let mut buf = Vec::new();
                store.write_dot(&mut buf)?;
                match file {
                    Some(f) => {
                        std::fs::write(&f, &buf)
                            .with_context(|| format!("cannot write {}", f.display()))?;
                        String::new()
                    }
                    None => String::from_utf8(buf).context("the DOT text is not UTF-8")?,
                }
            }
            CrdtCommand::MarkDirty => {
                store.mark_dirty()?;
                "Datastore marked 'dirty'\n".into()
            }
            CrdtCommand::MarkClean => {
                store.mark_clean()?;
                "Datastore marked 'clean'\n".into()
            }
        })
    })
    .await
    .context("the crdt command's task failed")?;
    drop(lock);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";

    #[test]
    fn absent_type_and_depth_default_to_recursive_pin() {
        let p = parse_line(&format!("{{\"cid\":\"{CID}\"}}")).unwrap();
        assert_eq!(p.max_depth, -1);
        assert_eq!(p.pin_type, ipfs_cluster_api::PinType::Data);
    }

    #[test]
    fn bad_lines_are_named() {
        assert!(parse_line("{")
            .unwrap_err()
            .to_string()
            .contains("not JSON"));
        assert!(parse_line("[1]")
            .unwrap_err()
            .to_string()
            .contains("not a JSON object"));
        assert!(parse_line("{\"name\":\"x\"}")
            .unwrap_err()
            .to_string()
            .contains("cid"));
        let e = parse_line("{\"cid\":\"notacid\"}").unwrap_err().to_string();
        assert!(e.contains("invalid pin"), "{e}");
    }

    async fn split(input: &str) -> Result<Vec<(usize, String)>> {
        let mut v = JsonValues::new(BufReader::with_capacity(3, input.as_bytes()));
        let mut out = Vec::new();
        while let Some(x) = v.next().await? {
            out.push(x);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn values_may_span_lines_and_share_them() {
        let pretty = format!("{{\n  \"cid\": \"{CID}\",\n  \"name\": \"a {{[\\\"}}\"\n}}\n");
        let input = format!("\n{pretty}{{\"cid\":\"{CID}\"}} {{\"cid\":\"{CID}\"}}\n\n");
        let got = split(&input).await.unwrap();
        let lines: Vec<usize> = got.iter().map(|(l, _)| *l).collect();
        assert_eq!(
            lines,
            vec![2, 6, 6],
            "each value names the line it starts on"
        );
        let first = parse_line(&got[0].1).unwrap();
        assert_eq!(
            first.options.name, "a {[\"}",
            "brackets and quotes inside strings"
        );
        for (_, text) in &got[1..] {
            parse_line(text).unwrap();
        }
    }

    #[tokio::test]
    async fn truncated_and_scalar_values_are_errors_naming_the_line() {
        let e = split(&format!("{{\"cid\":\"{CID}\"}}\n{{\"cid\":"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("line 2: not JSON"), "{e}");
        let got = split("42 {\"cid\":1}").await.unwrap();
        assert_eq!(got[0], (1, "42".to_string()));
        assert!(parse_line(&got[0].1)
            .unwrap_err()
            .to_string()
            .contains("not a JSON object"));
        assert!(split("  \n\n ").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn validate_counts_pretty_printed_pins() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("pins.json");
        let pin = serde_json::json!({"cid": CID, "name": "x", "replication_factor_min": -1});
        let text = format!(
            "{}\n{}\n",
            serde_json::to_string_pretty(&pin).unwrap(),
            serde_json::to_string(&pin).unwrap()
        );
        std::fs::write(&f, text).unwrap();
        assert_eq!(validate(&f).await.unwrap(), 2);
    }

    #[test]
    fn overrides_apply_when_positive() {
        let o = ImportOptions {
            input: None,
            force: true,
            replication_min: 2,
            replication_max: 0,
            allocations: vec![],
        };
        let p = o.apply(
            parse_line(&format!(
                "{{\"cid\":\"{CID}\",\"replication_factor_max\":5}}"
            ))
            .unwrap(),
        );
        assert_eq!(p.options.replication_factor_min, 2);
        assert_eq!(p.options.replication_factor_max, 5);
        let bad = ImportOptions {
            replication_min: 3,
            replication_max: 2,
            ..o
        };
        assert!(bad.check().is_err());
    }

    #[tokio::test]
    async fn cleanup_removes_the_removed_and_staging_markers() {
        let tmp = tempfile::tempdir().unwrap();
        ipfs_cluster_config::init(
            tmp.path(),
            &ipfs_cluster_config::InitOptions {
                consensus: "raft".into(),
                ..Default::default()
            },
        )
        .unwrap();
        let opts = StateOptions {
            config_dir: tmp.path().to_path_buf(),
            bin_dir: None,
        };
        let raft = Peer::load(tmp.path()).unwrap().raft_dir();
        let staging = peer_folder::staging_marker(&raft);
        let removed = peer_folder::removed_marker(&raft);
        // Without a raft folder: only the markers go.
        std::fs::write(&staging, "").unwrap();
        std::fs::write(&removed, "").unwrap();
        assert_eq!(cleanup(&opts, true).await.unwrap(), None);
        assert!(!staging.exists() && !removed.exists());
        // With an (empty) raft folder: the markers and the folder go.
        std::fs::create_dir_all(&raft).unwrap();
        std::fs::write(&staging, "").unwrap();
        cleanup(&opts, true).await.unwrap();
        assert!(!staging.exists());
        assert!(!raft.exists());
    }
}
