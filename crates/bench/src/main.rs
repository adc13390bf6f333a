//! `ipfs-cluster-bench`: the whole-peer benchmark (docs/benchmarks.md). `run` starts real peers
//! (release binaries through the real launcher), a Kubo node and a hello-world
//! ceiling, measures, and rewrites its sections of docs/benchmarks.md; `hello` is the
//! ceiling server itself (run as a child process).

mod cids;
mod compare;
mod hello;
mod load;
mod procs;
mod report;
mod suite;
mod upstream;

use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ipfs-cluster-bench",
    about = "Whole-peer benchmarks; writes docs/benchmarks.md"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every whole-peer figure and rewrite our sections of the report
    Run {
        /// Folder with the built binaries (use a release build)
        #[arg(long, default_value = "target/release")]
        bin_dir: PathBuf,
        /// The report to update (only the `## Whole peer` and `## Method` blocks are rewritten)
        #[arg(long, default_value = "docs/benchmarks.md")]
        out: PathBuf,
        /// Concurrent keep-alive connections of the load generator
        #[arg(long, default_value_t = 32)]
        conns: usize,
        /// Seconds of each ingest measurement (after a 1 s warm-up)
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
        /// Pinset sizes for the listing / restart / memory figures
        #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
        sizes: Vec<u64>,
        /// Skip a pinset size when the measured import rate says it would end past this
        #[arg(long, default_value_t = 540)]
        budget_secs: u64,
        /// How many fresh peers to cold-start (the median is reported)
        #[arg(long, default_value_t = 3)]
        cold_starts: usize,
        /// How the big pinsets are built: `import` (Consensus.Import, fast) or `rest`
        /// (POST /pins through the REST API, as users do; slow: sizes must grow)
        #[arg(long, value_enum, default_value = "import")]
        fill: suite::Fill,
        /// Implementations for the side-by-side figures
        #[arg(
            long = "impl",
            value_enum,
            value_delimiter = ',',
            default_value = "ours,upstream-raft,upstream-crdt"
        )]
        impls: Vec<compare::Impl>,
        /// Which figures to run: `whole-peer` is ours against the whole-peer targets
        /// (`## Whole peer`); the others are side by side with upstream
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "whole-peer,cold,ingest,ctl,state,add"
        )]
        workloads: Vec<compare::Workload>,
        /// Folder with upstream's ipfs-cluster-service / -ctl v1.1.6 (default:
        /// `deploy/local/upstream.sh path`, which installs them when missing)
        #[arg(long)]
        upstream_dir: Option<PathBuf>,
        /// How many times each `ipfs-cluster-ctl` command is timed (the median is reported)
        #[arg(long, default_value_t = 20)]
        ctl_reps: usize,
        /// Cluster sizes of the ingest figures (e.g. 1,3,5,7 for the cost curve)
        #[arg(long, value_delimiter = ',', default_value = "1,3")]
        ingest_peers: Vec<usize>,
        /// A line written above the side-by-side figures, e.g. "machine under load —
        /// development run"
        #[arg(long)]
        note: Option<String>,
    },
    /// Profiling aid: run one peer holding PINS imported pins until SIGINT/SIGTERM
    Hold {
        #[arg(long, default_value = "target/release")]
        bin_dir: PathBuf,
        #[arg(long, default_value_t = 0)]
        pins: u64,
        /// How many peers (the others join the first)
        #[arg(long, default_value_t = 1)]
        peers: usize,
    },
    /// Profiling aid: the ingest load (POST /pins/{random cid}) against running peers
    Load {
        /// REST addresses (host:port), connections spread round-robin
        #[arg(long, value_delimiter = ',', required = true)]
        addr: Vec<std::net::SocketAddr>,
        #[arg(long, default_value_t = 32)]
        conns: usize,
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
    },
    /// Write a benchmark's output (LOG) as the generated block NAME under HEADING of the
    /// report, with the command that made it (bench.sh does this for every example)
    Section {
        #[arg(long, default_value = "docs/benchmarks.md")]
        out: PathBuf,
        /// The report heading, e.g. "## Peer calls"
        #[arg(long)]
        heading: String,
        /// The block's marker name, e.g. peer-calls
        #[arg(long)]
        name: String,
        /// The command that produced LOG, shown above it
        #[arg(long)]
        command: String,
        /// The benchmark's output
        #[arg(long)]
        log: PathBuf,
    },
    /// Serve "Hello, world!" on 127.0.0.1:PORT (the ingest ceiling)
    Hello {
        #[arg(long)]
        port: u16,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new()?;
    match cli.cmd {
        Cmd::Section {
            out,
            heading,
            name,
            command,
            log,
        } => {
            let text = std::fs::read_to_string(&log)
                .with_context(|| format!("reading the benchmark output {}", log.display()))?;
            if text.trim().is_empty() {
                bail!("{} is empty: the benchmark printed nothing", log.display());
            }
            let body = format!(
                "Run {} UTC on {}.\nCommand: `{command}`\n\n```text\n{}\n```",
                chrono::Utc::now().format("%Y-%m-%d %H:%M"),
                suite::machine(),
                text.trim_end().replace("```", "'''")
            );
            report::write_section(&out, &heading, &name, &body)?;
            eprintln!("bench: wrote the {name} block of {}", out.display());
            Ok(())
        }
        Cmd::Hello { port } => rt.block_on(hello::serve(procs::loopback(port))),
        Cmd::Hold {
            bin_dir,
            pins,
            peers,
        } => {
            let bin_dir = bin_dir.canonicalize()?;
            let opts = suite::Options {
                bin_dir,
                conns: 0,
                duration: Duration::ZERO,
                sizes: vec![],
                budget: Duration::ZERO,
                cold_starts: 0,
                fill: suite::Fill::Import,
            };
            rt.block_on(suite::hold(&opts, pins, peers))
        }
        Cmd::Load {
            addr,
            conns,
            duration_secs,
        } => {
            if conns == 0 || duration_secs == 0 {
                bail!("--conns and --duration-secs must be at least 1");
            }
            let r = rt.block_on(load::run(
                &addr,
                conns,
                Duration::from_secs(duration_secs),
                u64::MAX,
                suite::pins_request(),
            ))?;
            println!(
                "{:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, ok {}, errors {}{}",
                r.rate(),
                r.pct_ms(0.5),
                r.pct_ms(0.99),
                r.ok,
                r.errors,
                r.first_error
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default()
            );
            Ok(())
        }
        Cmd::Run {
            bin_dir,
            out,
            conns,
            duration_secs,
            sizes,
            budget_secs,
            cold_starts,
            fill,
            impls,
            workloads,
            upstream_dir,
            ctl_reps,
            ingest_peers,
            note,
        } => {
            if fill == suite::Fill::Rest && sizes.windows(2).any(|w| w[0] >= w[1]) {
                bail!(
                    "--fill rest adds pins to one pinset: --sizes must grow (e.g. 100000,1000000)"
                );
            }
            if impls.is_empty() || workloads.is_empty() {
                bail!("--impl and --workloads must name at least one");
            }
            let ours = impls.contains(&compare::Impl::Ours);
            if ours && !bin_dir.join("ipfs-cluster-service").exists() {
                bail!(
                    "{} has no ipfs-cluster-service: build first (`cargo build --release --workspace --bins`) or pass --bin-dir",
                    bin_dir.display()
                );
            }
            if ingest_peers.contains(&0) {
                bail!("--ingest-peers: a cluster has at least 1 peer");
            }
            if conns == 0 || duration_secs == 0 || cold_starts == 0 || ctl_reps == 0 {
                bail!("--conns, --duration-secs, --cold-starts and --ctl-reps must be at least 1");
            }
            let bin_dir = if ours {
                bin_dir.canonicalize()?
            } else {
                bin_dir
            };
            let opts = suite::Options {
                bin_dir: bin_dir.clone(),
                conns,
                duration: Duration::from_secs(duration_secs),
                sizes: sizes.clone(),
                budget: Duration::from_secs(budget_secs),
                cold_starts,
                fill,
            };
            let command = std::env::args()
                .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
                .collect::<Vec<_>>()
                .join(" ");
            if ours && workloads.contains(&compare::Workload::WholePeer) {
                let started = chrono::Utc::now();
                let t0 = std::time::Instant::now();
                let res = rt.block_on(suite::run(&opts))?;
                let (whole, method) = render(&res, &command, started, t0.elapsed(), &opts);
                report::write_sections(&out, &whole, &method).context("updating the report")?;
                println!("{whole}");
                eprintln!("bench: wrote the whole-peer block of {}", out.display());
            }
            let side: Vec<compare::Workload> = workloads
                .iter()
                .copied()
                .filter(|w| *w != compare::Workload::WholePeer)
                .collect();
            if side.is_empty() {
                return Ok(());
            }
            let mut impls = impls;
            impls.sort();
            impls.dedup();
            let copts = compare::Options {
                bin_dir,
                upstream_dir,
                impls: impls.clone(),
                workloads: side,
                conns,
                duration: Duration::from_secs(duration_secs),
                sizes,
                cold_starts,
                ctl_reps,
                ingest_peers,
                fill,
            };
            let started = chrono::Utc::now();
            let t0 = std::time::Instant::now();
            let cmp = rt.block_on(compare::run(&copts))?;
            for l in cmp.lines() {
                println!("{l}");
            }
            let body = render_side(
                &cmp,
                &copts,
                &command,
                started,
                t0.elapsed(),
                note.as_deref(),
            );
            report::write_section(&out, report::SIDE_HEADING, report::SIDE_BY_SIDE, &body)
                .context("updating the report")?;
            eprintln!("bench: wrote the side-by-side block of {}", out.display());
            Ok(())
        }
    }
}

fn render_side(
    cmp: &compare::Comparison,
    opts: &compare::Options,
    command: &str,
    started: chrono::DateTime<chrono::Utc>,
    took: Duration,
    note: Option<&str>,
) -> String {
    let mut w = String::new();
    if let Some(n) = note {
        w.push_str(&format!("**{n}.**\n\n"));
    }
    w.push_str(&format!(
        "Run {} UTC on {}; took {:.0} s.\nVersions: {}.\nCommand: `{command}`.\n\n\
         Each row: the same workload, load generator and settings on every implementation; \
         the ratio is `ours / upstream` of the row's unit (for pins/s and items/s higher is \
         better, for ms and MiB lower is). Pinsets: {}.\n\n",
        started.format("%Y-%m-%d %H:%M"),
        suite::machine(),
        took.as_secs_f64(),
        cmp.versions,
        match opts.fill {
            suite::Fill::Import => "ours through `Consensus.Import`, upstream through `ipfs-cluster-service state import` (peer stopped; how its users restore or migrate a pinset)",
            suite::Fill::Rest => "both through `POST /pins/{cid}` (`--fill rest`)",
        },
    ));
    w.push_str(&cmp.table(&opts.impls));
    w.push('\n');
    for n in &cmp.notes {
        w.push_str(&format!("\nNote: {n}\n"));
    }
    w
}

fn render(
    res: &suite::Results,
    command: &str,
    started: chrono::DateTime<chrono::Utc>,
    took: Duration,
    opts: &suite::Options,
) -> (String, String) {
    let mut w = String::new();
    w.push_str(&format!(
        "Run {} UTC on {}; took {:.0} s.\nCommand: `deploy/local/bench.sh` → `{command}`.\n\n",
        started.format("%Y-%m-%d %H:%M"),
        suite::machine(),
        took.as_secs_f64()
    ));
    w.push_str("| # | figure | measured | target | |\n|---|---|---|---|---|\n");
    for f in &res.figures {
        let verdict = match f.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "",
        };
        w.push_str(&format!(
            "| {} | {} | {} | {} | {verdict} |\n",
            f.id, f.what, f.value, f.target
        ));
    }
    for d in &res.details {
        w.push_str(&format!("\n{d}\n"));
    }
    for n in &res.notes {
        w.push_str(&format!("\nNote: {n}\n"));
    }
    let method = format!(
        "Whole-peer figures come from `crates/bench` (`ipfs-cluster-bench run`), started by \
`deploy/local/bench.sh` after a release build; everything runs on this one machine, so the \
load generator, the services and Kubo share its CPUs.\n\n\
- **Peers** are the release binaries started through the real launcher \
(`ipfs-cluster-service init` + `daemon`, every port picked free and passed as upstream's \
`CLUSTER_*` env overrides, `RUST_LOG=warn`). One Kubo node (deploy/local/kubo.sh, test profile, no DHT) \
serves every peer.\n\
- **CIDs**: ingest uses random inline CIDs (CIDv1, raw codec, identity multihash of 32 \
random bytes, `bafkqa…`, fresh per request): Kubo pins them without fetching anything, so \
the run can check that every acknowledged pin ends up pinned on IPFS (the self-check: each \
acknowledged CID must be in `GET /allocations` of every peer, and in Kubo's recursive pins \
once the connectors catch up; the run fails otherwise). The big pinsets use CIDv1 raw \
sha2-256 of random bytes (`bafkrei…`), which nobody has, so those pins stay `pinning` and \
IPFS fetching is not measured.\n\
- **Load generator**: our own hyper 1.x HTTP/1.1 client, {conns} keep-alive connections \
(one task each, TCP_NODELAY), each sending its next request as soon as the previous answer \
is read, for {dur} s after a 1 s warm-up (discarded); a request counts when a 2xx answer is \
read whole; latency is per request; non-2xx and 10 s timeouts count as errors. With 3 peers, \
connection i talks to peer i mod 3.\n\
- **Ceiling**: `ipfs-cluster-bench hello`, a hyper 1.x HTTP/1.1 server in its own process \
(tokio multi-thread runtime) answering `Hello, world!`, driven by the same generator with \
the same requests in the same run.\n\
- **Listing**: one `GET` read to the end as it streams, NDJSON lines counted; items/s = \
lines / (request sent → last byte). The pinset is filled on a fresh single peer through \
{fill}.\n\
- **Restart-to-ready**: SIGTERM to the launcher, wait for its exit, start it again; ready \
when `GET /id` answers 200 and `GET /allocations` has streamed its first item (polled every \
5 ms). Then the same after SIGKILL of the launcher and its four services together (crash \
recovery). After each restart the listing must hold the whole pinset. **Cold start**: a freshly `init`-ed peer, `daemon` until `GET /id` is 200 (median of \
{cold}).\n\
- **Memory**: VmRSS from `/proc/PID/status` of each child of the launcher.\n\
- **Side by side with upstream**: the same generator and settings against \
upstream IPFS Cluster v1.1.6 in raft and crdt mode, each peer with its own Kubo node; \
its block says how (`## Side by side with upstream`).\n\
- **Profiles**: `perf stat -e instructions` is not supported in this VM, so missed targets \
are profiled with `valgrind --tool=callgrind` on short runs (see the notes under \
`## Whole peer`).\n",
        conns = opts.conns,
        dur = opts.duration.as_secs(),
        cold = opts.cold_starts,
        fill = match opts.fill {
            suite::Fill::Import => "`Consensus.Import` (gRPC client stream with the peer's internal token)",
            suite::Fill::Rest => "`POST /pins/{cid}` through the REST API (`--fill rest`), every pin acknowledged",
        },
    );
    (w, method)
}
