//! The clap command tree: every command, subcommand and flag of upstream's ctl (urfave/cli v1),
//! with the same names, aliases and defaults. clap only parses: help pages are rendered in
//! urfave's layout by [`crate::help`], whose tree a unit test keeps in step with this one.
//! Global flags live on the top level only (as in upstream, they must come before the
//! command), which also keeps short names such as `-s` (`--https` globally, `--chunker` on
//! `add`) from colliding. As in urfave, a missing argument is not a usage error: it is the
//! empty string, which the command then refuses in upstream's words.

use clap::{Args, Parser, Subcommand};

pub const DEFAULT_HOST: &str = "/ip4/127.0.0.1/tcp/9094";

const WAIT_DESC: &str = "Wait for the pin to reach the minimum replication factor before returning";
const WAIT_TIMEOUT_DESC: &str = "How long to --wait (e.g. 30s, 2m). Default: forever";
const WAIT_LIMIT_DESC: &str = "Peers that must reach the target status (default: replication-min)";

#[derive(Debug, Parser)]
#[command(
    name = "ipfs-cluster-ctl",
    disable_version_flag = true,
    disable_help_flag = true,
    disable_help_subcommand = true,
    max_term_width = 120
)]
pub struct Cli {
    /// API endpoint multiaddresses (comma-separated)
    #[arg(long, short = 'l', default_value = DEFAULT_HOST, value_name = "MADDRS")]
    pub host: String,
    /// cluster secret (32 byte pnet-key) as needed. Only when using the LibP2P endpoint
    #[arg(long, default_value = "", hide_default_value = true)]
    pub secret: String,
    /// use https to connect to the API
    #[arg(long, short = 's')]
    pub https: bool,
    /// do not verify server TLS certificate. only valid with --https flag
    #[arg(long)]
    pub no_check_certificate: bool,
    /// output format encoding [text, json]
    #[arg(long, visible_alias = "enc", default_value = "text")]
    pub encoding: String,
    /// number of seconds to wait before timing out a request
    #[arg(long, short = 't', default_value_t = 0)]
    pub timeout: u64,
    /// set debug log level
    #[arg(long, short = 'd')]
    pub debug: bool,
    /// BasicAuth credentials. Implies --https (see --force-http)
    #[arg(
        long,
        env = "CLUSTER_CREDENTIALS",
        value_name = "USER[:PASS]",
        hide_env_values = true
    )]
    pub basic_auth: Option<String>,
    /// force HTTP. only valid when using BasicAuth
    #[arg(long, short = 'f')]
    pub force_http: bool,
    /// print the version
    #[arg(long, short = 'v')]
    pub version: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Retrieve peer information
    Id,
    /// List and manage IPFS Cluster peers
    #[command(subcommand)]
    Peers(PeersCmd),
    /// Add a file or directory to ipfs and pin it in the cluster
    Add(AddArgs),
    /// Pin and unpin and list items in IPFS Cluster
    #[command(subcommand)]
    Pin(PinCmd),
    /// Retrieve the status of tracked items
    Status(StatusArgs),
    /// Recover tracked items in error state
    Recover(RecoverArgs),
    /// Retrieve cluster version
    Version,
    /// Cluster monitoring information
    #[command(subcommand)]
    Health(HealthCmd),
    /// Manage IPFS daemon
    #[command(subcommand)]
    Ipfs(IpfsCmd),
    /// List all commands
    #[command(hide = true)]
    Commands,
    /// Generate a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(hide = true)]
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum PeersCmd {
    /// list the nodes participating in the IPFS Cluster
    Ls,
    /// remove a peer from the Cluster
    Rm {
        #[arg(value_name = "peer ID", default_value = "")]
        peer: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PinCmd {
    /// Pin an item in the cluster
    Add(PinAddArgs),
    /// Unpin an item from the cluster
    Rm(PinRmArgs),
    /// Pin a new item based on an existing one
    Update(PinUpdateArgs),
    /// List items in the cluster pinset
    Ls(PinLsArgs),
}

#[derive(Debug, Subcommand)]
pub enum HealthCmd {
    /// create a graph displaying connectivity of cluster peers
    Graph(GraphArgs),
    /// List latest metrics logged by this peer
    Metrics {
        #[arg(value_name = "metric name")]
        name: Option<String>,
    },
    /// List the latest expired metric alerts
    Alerts,
    /// Show bandwidth usage by libp2p protocol
    Bandwidth,
}

#[derive(Debug, Subcommand)]
pub enum IpfsCmd {
    /// run garbage collection on IPFS repos of cluster peers
    Gc {
        /// run operation only on the contacted peer
        #[arg(long)]
        local: bool,
    },
}

/// Flags shared by the commands that wait for a pin status.
#[derive(Debug, Args, Clone, Default)]
pub struct WaitArgs {
    /// Prevents fetching pin status afterwards (faster, quieter)
    #[arg(long, visible_alias = "ns")]
    pub no_status: bool,
    #[arg(long, short = 'w', help = WAIT_DESC)]
    pub wait: bool,
    #[arg(long, visible_alias = "wl", value_name = "N", help = WAIT_LIMIT_DESC)]
    pub wait_limit: Option<i64>,
    #[arg(long, visible_alias = "wt", value_name = "DURATION", default_value = "0s", help = WAIT_TIMEOUT_DESC)]
    pub wait_timeout: String,
}

#[derive(Debug, Args)]
pub struct PinAddArgs {
    #[arg(value_name = "CID|Path", default_value = "")]
    pub arg: String,
    /// Sets a custom replication factor (overrides -rmax and -rmin)
    #[arg(long, short = 'r', default_value_t = 0, allow_negative_numbers = true)]
    pub replication: i64,
    /// Sets the minimum replication factor for this pin
    #[arg(
        long,
        visible_alias = "rmin",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub replication_min: i64,
    /// Sets the maximum replication factor for this pin
    #[arg(
        long,
        visible_alias = "rmax",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub replication_max: i64,
    /// Optional comma-separated list of peer IDs
    #[arg(
        long,
        visible_alias = "allocs",
        default_value = "",
        hide_default_value = true
    )]
    pub allocations: String,
    /// Sets a name for this pin
    #[arg(long, short = 'n', default_value = "", hide_default_value = true)]
    pub name: String,
    /// Select a way to pin: recursive or direct
    #[arg(long, default_value = "recursive")]
    pub mode: String,
    /// Duration after which pin should be unpinned automatically
    #[arg(long, default_value = "", hide_default_value = true)]
    pub expire_in: String,
    /// Pin metadata: key=value. Can be added multiple times
    #[arg(long)]
    pub metadata: Vec<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct PinRmArgs {
    #[arg(value_name = "CID|Path", default_value = "")]
    pub arg: String,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct PinUpdateArgs {
    #[arg(value_name = "existing-CID", default_value = "")]
    pub from: String,
    #[arg(value_name = "new-CID|Path", default_value = "")]
    pub to: String,
    /// Sets a name for this updated pin
    #[arg(long, short = 'n', default_value = "", hide_default_value = true)]
    pub name: String,
    /// Duration after which the pin should be unpinned automatically after updating
    #[arg(long, default_value = "", hide_default_value = true)]
    pub expire_in: String,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct PinLsArgs {
    #[arg(value_name = "CID")]
    pub cid: Option<String>,
    /// Comma separated list of pin types. See help above.
    #[arg(long, default_value = "all")]
    pub filter: String,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(value_name = "CID")]
    pub cids: Vec<String>,
    /// run operation only on the contacted peer
    #[arg(long)]
    pub local: bool,
    /// comma-separated list of filters
    #[arg(long, default_value = "", hide_default_value = true)]
    pub filter: String,
}

#[derive(Debug, Args)]
pub struct RecoverArgs {
    #[arg(value_name = "CID")]
    pub cid: Option<String>,
    /// run operation only on the contacted peer
    #[arg(long)]
    pub local: bool,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// sets an output dot-file for the connectivity graph
    #[arg(long, short = 'f', default_value = "", hide_default_value = true)]
    pub file: String,
    /// causes the graph to mark nodes for ipfs peers not directly in the cluster
    #[arg(long)]
    pub all_ipfs_peers: bool,
}

#[derive(Debug, Args, Clone)]
pub struct AddArgs {
    /// Local paths
    #[arg(value_name = "path")]
    pub paths: Vec<String>,
    /// Add directory paths recursively
    #[arg(long, short = 'r')]
    pub recursive: bool,
    /// Write only hashes to output (one per line)
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Write only final hash to output
    #[arg(long, short = 'Q')]
    pub quieter: bool,
    /// Buffer output locally. Produces a valid JSON array with --enc=json.
    #[arg(long)]
    pub no_stream: bool,
    /// Add to local peer but pin normally
    #[arg(long)]
    pub local: bool,
    /// Sets a name for this pin
    #[arg(long, short = 'n', default_value = "", hide_default_value = true)]
    pub name: String,
    /// Sets the minimum replication factor for pinning this file
    #[arg(
        long,
        visible_alias = "rmin",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub replication_min: i64,
    /// Sets the maximum replication factor for pinning this file
    #[arg(
        long,
        visible_alias = "rmax",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub replication_max: i64,
    /// Duration after which the pin should be unpinned automatically
    #[arg(long, default_value = "", hide_default_value = true)]
    pub expire_in: String,
    /// Pin metadata: key=value. Can be added multiple times
    #[arg(long)]
    pub metadata: Vec<String>,
    /// Optional comma-separated list of peer IDs
    #[arg(
        long,
        visible_alias = "allocs",
        default_value = "",
        hide_default_value = true
    )]
    pub allocations: String,
    /// Do not pin after adding
    #[arg(long)]
    pub no_pin: bool,
    #[arg(long, help = WAIT_DESC)]
    pub wait: bool,
    #[arg(long, visible_alias = "wt", value_name = "DURATION", default_value = "0s", help = WAIT_TIMEOUT_DESC)]
    pub wait_timeout: String,
    /// Wrap a with a directory object
    #[arg(long, short = 'w')]
    pub wrap_with_directory: bool,
    /// 'unixfs' (add as unixfs DAG), 'car' (import CAR file)
    #[arg(long, default_value = "unixfs")]
    pub format: String,
    /// Dag layout to use for dag generation: balanced or trickle
    #[arg(long, default_value = "", hide_default_value = true)]
    pub layout: String,
    /// Include files that are hidden.  Only takes effect on recursive add
    #[arg(long, short = 'H')]
    pub hidden: bool,
    /// 'size-<size>' or 'rabin-<min>-<avg>-<max>'
    #[arg(long, short = 's', default_value = "size-262144")]
    pub chunker: String,
    /// Use raw blocks for leaves (experimental)
    #[arg(long)]
    pub raw_leaves: bool,
    /// CID version. Non default implies raw-leaves
    #[arg(long, default_value_t = 0)]
    pub cid_version: i64,
    /// Hash function to use. Implies cid-version=1
    #[arg(long, default_value = "sha2-256")]
    pub hash: String,
    /// Add the URL using filestore. Implies raw-leaves. (experimental)
    #[arg(long)]
    pub nocopy: bool,
}

/// The `commands` listing: every command path, depth first, as upstream's `walkCommands`.
pub fn command_tree(prog: &str) -> Vec<String> {
    use clap::CommandFactory;
    fn walk(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
        for sub in cmd.get_subcommands() {
            let name = sub.get_name();
            if name == "help" || name == "completion" {
                continue;
            }
            let line = format!("{prefix} {name}");
            out.push(line.clone());
            walk(sub, &line, out);
        }
    }
    let mut out = Vec::new();
    walk(&Cli::command(), prog, &mut out);
    out.push(format!("{prog} help"));
    out
}
