//! Help pages in urfave/cli v1's layout, as upstream's ctl prints them: the app page
//! (NAME / USAGE / VERSION / DESCRIPTION / COMMANDS / GLOBAL OPTIONS), a command group's page
//! (NAME / USAGE / COMMANDS / OPTIONS), a command's page (NAME / USAGE / DESCRIPTION /
//! OPTIONS), with the flag lines (`--name value, -n value  usage (default: x)`) aligned by a
//! tab writer with Go's `text/tabwriter` rules (minimum width 1, padding 2, columns reset by
//! a line without a tab). clap parses; this module only renders, from the tree in [`APP`],
//! which a unit test keeps in step with the clap tree of [`crate::cli`].

/// A flag as upstream declares it: `names` is urfave's comma-separated name list (the
/// first is the long name, the others aliases or one-letter short names).
#[derive(Debug)]
pub struct Flag {
    pub names: &'static str,
    /// Takes a value (printed with the `value` placeholder).
    pub value: bool,
    pub usage: &'static str,
    /// The default as urfave prints it (`"text"` quoted for strings, `0`, `0s`).
    pub default: Option<&'static str>,
    pub env: Option<&'static str>,
}

/// A command (or command group) of the tree.
#[derive(Debug)]
pub struct Cmd {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub usage: &'static str,
    pub description: &'static str,
    pub args_usage: &'static str,
    pub flags: &'static [Flag],
    pub subs: &'static [Cmd],
    pub hidden: bool,
}

impl Cmd {
    pub fn find(&self, name: &str) -> Option<&Cmd> {
        self.subs
            .iter()
            .find(|c| c.name == name || c.aliases.contains(&name))
    }

    fn names(&self) -> String {
        std::iter::once(self.name)
            .chain(self.aliases.iter().copied())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

const fn flag(names: &'static str, usage: &'static str) -> Flag {
    Flag {
        names,
        value: false,
        usage,
        default: None,
        env: None,
    }
}

const fn opt(names: &'static str, usage: &'static str, default: Option<&'static str>) -> Flag {
    Flag {
        names,
        value: true,
        usage,
        default,
        env: None,
    }
}

const fn leaf(
    name: &'static str,
    usage: &'static str,
    args_usage: &'static str,
    description: &'static str,
    flags: &'static [Flag],
) -> Cmd {
    Cmd {
        name,
        aliases: &[],
        usage,
        description,
        args_usage,
        flags,
        subs: &[],
        hidden: false,
    }
}

const fn group(name: &'static str, usage: &'static str, subs: &'static [Cmd]) -> Cmd {
    Cmd {
        name,
        aliases: &[],
        usage,
        description: usage,
        args_usage: "",
        flags: &[],
        subs,
        hidden: false,
    }
}

const HELP_FLAG: Flag = flag("help, h", "show help");
const VERSION_FLAG: Flag = flag("version, v", "print the version");

const WAIT: &str = "Wait for the pin to reach the minimum replication factor before returning";
const WAIT_LIMIT: &str = "How many peers should reach the desired status to finish waiting";
const WAIT_TIMEOUT: &str = "How long to --wait (in seconds). Default: forever";
const LOCAL: &str = "run operation only on the contacted peer";

/// The app: its usage line, description and global flags (urfave appends help and version).
pub const APP: Cmd = Cmd {
    name: "ipfs-cluster-ctl",
    aliases: &[],
    usage: "CLI for IPFS Cluster",
    description: DESC_APP,
    args_usage: "",
    flags: &[
        opt(
            "host, l",
            "API endpoint multiaddresses (comma-separated)",
            Some("\"/ip4/127.0.0.1/tcp/9094\""),
        ),
        opt(
            "secret",
            "cluster secret (32 byte pnet-key) as needed. Only when using the LibP2P endpoint",
            None,
        ),
        flag("https, s", "use https to connect to the API"),
        flag(
            "no-check-certificate",
            "do not verify server TLS certificate. only valid with --https flag",
        ),
        opt(
            "encoding, enc",
            "output format encoding [text, json]",
            Some("\"text\""),
        ),
        opt(
            "timeout, t",
            "number of seconds to wait before timing out a request",
            Some("0"),
        ),
        flag("debug, d", "set debug log level"),
        Flag {
            names: "basic-auth",
            value: true,
            usage: "<username>[:<password>] specify BasicAuth credentials for server that\n\
requires authorization. implies --https, which you can disable with --force-http",
            default: None,
            env: Some("CLUSTER_CREDENTIALS"),
        },
        flag("force-http, f", "force HTTP. only valid when using BasicAuth"),
        HELP_FLAG,
        VERSION_FLAG,
    ],
    subs: &[
        leaf("id", "Retrieve peer information", "", DESC_ID, &[]),
        group(
            "peers",
            "List and manage IPFS Cluster peers",
            &[
                leaf(
                    "ls",
                    "list the nodes participating in the IPFS Cluster",
                    " ",
                    DESC_PEERS_LS,
                    &[],
                ),
                leaf(
                    "rm",
                    "remove a peer from the Cluster",
                    "<peer ID>",
                    DESC_PEERS_RM,
                    &[],
                ),
            ],
        ),
        leaf(
            "add",
            "Add a file or directory to ipfs and pin it in the cluster",
            "<path>",
            DESC_ADD,
            &[
                flag("recursive, r", "Add directory paths recursively"),
                flag("quiet, q", "Write only hashes to output (one per line)"),
                flag("quieter, Q", "Write only final hash to output"),
                flag(
                    "no-stream",
                    "Buffer output locally. Produces a valid JSON array with --enc=json.",
                ),
                flag("local", "Add to local peer but pin normally"),
                opt("name, n", "Sets a name for this pin", None),
                opt(
                    "replication-min, rmin",
                    "Sets the minimum replication factor for pinning this file",
                    Some("0"),
                ),
                opt(
                    "replication-max, rmax",
                    "Sets the maximum replication factor for pinning this file",
                    Some("0"),
                ),
                opt(
                    "expire-in",
                    "Duration after which the pin should be unpinned automatically",
                    None,
                ),
                opt(
                    "metadata",
                    "Pin metadata: key=value. Can be added multiple times",
                    None,
                ),
                opt(
                    "allocations, allocs",
                    "Optional comma-separated list of peer IDs",
                    None,
                ),
                flag("no-pin", "Do not pin after adding"),
                flag("wait", WAIT),
                opt("wait-timeout, wt", WAIT_TIMEOUT, Some("0s")),
                flag("wrap-with-directory, w", "Wrap a with a directory object"),
                opt(
                    "format",
                    "'unixfs' (add as unixfs DAG), 'car' (import CAR file)",
                    Some("\"unixfs\""),
                ),
                opt(
                    "layout",
                    "Dag layout to use for dag generation: balanced or trickle",
                    None,
                ),
                flag(
                    "hidden, H",
                    "Include files that are hidden.  Only takes effect on recursive add",
                ),
                opt(
                    "chunker, s",
                    "'size-<size>' or 'rabin-<min>-<avg>-<max>'",
                    Some("\"size-262144\""),
                ),
                flag("raw-leaves", "Use raw blocks for leaves (experimental)"),
                opt(
                    "cid-version",
                    "CID version. Non default implies raw-leaves",
                    Some("0"),
                ),
                opt(
                    "hash",
                    "Hash function to use. Implies cid-version=1",
                    Some("\"sha2-256\""),
                ),
                flag(
                    "nocopy",
                    "Add the URL using filestore. Implies raw-leaves. (experimental)",
                ),
            ],
        ),
        group(
            "pin",
            "Pin and unpin and list items in IPFS Cluster",
            &[
                leaf(
                    "add",
                    "Pin an item in the cluster",
                    "<CID|Path>",
                    DESC_PIN_ADD,
                    &[
                        opt(
                            "replication, r",
                            "Sets a custom replication factor (overrides -rmax and -rmin)",
                            Some("0"),
                        ),
                        opt(
                            "replication-min, rmin",
                            "Sets the minimum replication factor for this pin",
                            Some("0"),
                        ),
                        opt(
                            "replication-max, rmax",
                            "Sets the maximum replication factor for this pin",
                            Some("0"),
                        ),
                        opt(
                            "allocations, allocs",
                            "Optional comma-separated list of peer IDs",
                            None,
                        ),
                        opt("name, n", "Sets a name for this pin", None),
                        opt(
                            "mode",
                            "Select a way to pin: recursive or direct",
                            Some("\"recursive\""),
                        ),
                        opt(
                            "expire-in",
                            "Duration after which pin should be unpinned automatically",
                            None,
                        ),
                        opt(
                            "metadata",
                            "Pin metadata: key=value. Can be added multiple times",
                            None,
                        ),
                        flag(
                            "no-status, ns",
                            "Prevents fetching pin status after pinning (faster, quieter)",
                        ),
                        flag("wait, w", WAIT),
                        opt("wait-limit, wl", WAIT_LIMIT, Some("0")),
                        opt("wait-timeout, wt", WAIT_TIMEOUT, Some("0s")),
                    ],
                ),
                leaf(
                    "rm",
                    "Unpin an item from the cluster",
                    "<CID|Path>",
                    DESC_PIN_RM,
                    &[
                        flag(
                            "no-status, ns",
                            "Prevents fetching pin status after unpinning (faster, quieter)",
                        ),
                        flag("wait, w", WAIT),
                        opt("wait-limit, wl", WAIT_LIMIT, Some("0")),
                        opt("wait-timeout, wt", WAIT_TIMEOUT, Some("0s")),
                    ],
                ),
                leaf(
                    "update",
                    "Pin a new item based on an existing one",
                    "<existing-CID> <new-CID|Path>",
                    DESC_PIN_UPDATE,
                    &[
                        opt("name, n", "Sets a name for this updated pin", None),
                        opt(
                            "expire-in",
                            "Duration after which the pin should be unpinned automatically after updating",
                            None,
                        ),
                        flag(
                            "no-status, ns",
                            "Prevents fetching pin status after updating (faster, quieter)",
                        ),
                        flag("wait, w", WAIT),
                        opt("wait-limit, wl", WAIT_LIMIT, Some("0")),
                        opt("wait-timeout, wt", WAIT_TIMEOUT, Some("0s")),
                    ],
                ),
                leaf(
                    "ls",
                    "List items in the cluster pinset",
                    "[CID]",
                    DESC_PIN_LS,
                    &[opt(
                        "filter",
                        "Comma separated list of pin types. See help above.",
                        Some("\"all\""),
                    )],
                ),
            ],
        ),
        leaf(
            "status",
            "Retrieve the status of tracked items",
            "[CID1] [CID2]...",
            DESC_STATUS,
            &[
                flag("local", LOCAL),
                opt("filter", "comma-separated list of filters", None),
            ],
        ),
        leaf(
            "recover",
            "Recover tracked items in error state",
            "[CID]",
            DESC_RECOVER,
            &[flag("local", LOCAL)],
        ),
        leaf(
            "version",
            "Retrieve cluster version",
            " ",
            DESC_VERSION,
            &[],
        ),
        group(
            "health",
            "Cluster monitoring information",
            &[
                leaf(
                    "graph",
                    "create a graph displaying connectivity of cluster peers",
                    "",
                    DESC_HEALTH_GRAPH,
                    &[
                        opt(
                            "file, f",
                            "sets an output dot-file for the connectivity graph",
                            None,
                        ),
                        flag(
                            "all-ipfs-peers",
                            "causes the graph to mark nodes for ipfs peers not directly in the cluster",
                        ),
                    ],
                ),
                leaf(
                    "metrics",
                    "List latest metrics logged by this peer",
                    "<metric name>",
                    DESC_HEALTH_METRICS,
                    &[],
                ),
                leaf(
                    "alerts",
                    "List the latest expired metric alerts",
                    "",
                    DESC_HEALTH_ALERTS,
                    &[],
                ),
                leaf(
                    "bandwidth",
                    "Lists bandwidth stats for libp2p protocols",
                    "",
                    DESC_HEALTH_BANDWIDTH,
                    &[],
                ),
            ],
        ),
        group(
            "ipfs",
            "Manage IPFS daemon",
            &[leaf(
                "gc",
                "run garbage collection on IPFS repos of cluster peers",
                "",
                DESC_IPFS_GC,
                &[flag("local", LOCAL)],
            )],
        ),
        Cmd {
            name: "commands",
            aliases: &[],
            usage: "List all commands",
            description: "",
            args_usage: " ",
            flags: &[],
            subs: &[],
            hidden: true,
        },
        Cmd {
            name: "completion",
            aliases: &[],
            usage: "Generate a shell completion script (bash, zsh, fish, elvish, powershell)",
            description: "",
            args_usage: "<shell>",
            flags: &[],
            subs: &[],
            hidden: true,
        },
        HELP_CMD,
    ],
    hidden: false,
};

/// urfave's `help, h` command.
const HELP_CMD: Cmd = Cmd {
    name: "help",
    aliases: &["h"],
    usage: "Shows a list of commands or help for one command",
    description: "",
    args_usage: "[command]",
    flags: &[],
    subs: &[],
    hidden: false,
};

const DESC_APP: &str = "
ipfs-cluster-ctl is a tool to manage IPFS Cluster nodes.

Use \"ipfs-cluster-ctl help\" to list all available commands and
\"ipfs-cluster-ctl help <command>\" to get usage information for a
specific one.

ipfs-cluster-ctl uses the IPFS Cluster API to perform requests and
display responses in a user-readable format. The location of the IPFS
Cluster server is assumed to be /ip4/127.0.0.1/tcp/9094, but can be configured
with the --host option. If several multiaddresses are specified 
(comma-separated), requests will be sent to the first one and fail-over 
over to the others. This also works for dns-based addresses which resolve
to multiple values.

To use the secure libp2p-http API endpoint, use \"--host\" with 
the full cluster libp2p listener address, including the \"/p2p/<peerID>\"
part, or a /dnsaddr that resolves to it. Provide the cluster secret with 
--secret as needed.

For feedback, bug reports or any additional information, visit
https://github.com/ipfs-cluster/ipfs-cluster.
";

const DESC_ID: &str = "
This command displays information about the peer that the tool is contacting
(usually running in localhost).
";

const DESC_PEERS_LS: &str = "
This command provides a list of the ID information of all the peers in the Cluster.
";

const DESC_PEERS_RM: &str = "
This command removes a peer from the cluster. If the peer is online, it will
automatically shut down. All other cluster peers should be online for the
operation to succeed, otherwise some nodes may be left with an outdated list of
cluster peers.
";

const DESC_ADD: &str = "
Add allows to add and replicate content to several ipfs daemons, performing
a Cluster Pin operation on success. It takes elements from local paths as
well as from web URLs (accessed with a GET request). Providing several
arguments will automatically set --wrap-in-directory.

Cluster \"add\" works, by default, just like \"ipfs add\" and has similar options
in terms of DAG layout, chunker, hash function etc. It also supports adding
CAR files directly (--format car), as long as they have a single root. When
adding CAR files, all the options related to dag-building are ignored.

Added content will be allocated and sent block by block to the peers that
should pin it (among which may not necessarily be the local ipfs daemon).
Once all the blocks have arrived, they will be \"cluster-pinned\". This makes 
cluster add slower than a local ipfs add, but the result is a fully replicated
on completion. If you prefer faster adding, use the --local flag to add 
directly to the local IPFS node and pin in the destinations after that. 
Note that the local IPFS node may not be among the destinations, which will
leave the unpinned content in it.

Optional replication-min and replication-max factors can be provided: -1 means
\"pin everywhere\" and 0 means use cluster's default setting (i.e., replication
factor set in config). Positive values indicate how many peers should pin this
content.
";

const DESC_PIN_ADD: &str = "
This command tells IPFS Cluster to start managing a CID. Depending on
the pinning strategy, this will trigger IPFS pin requests. The CID will
become part of the Cluster's state and will tracked from this point.

When the request has succeeded, the command returns the status of the CID
in the cluster and should be part of the list offered by \"pin ls\".

An optional replication factor can be provided: -1 means \"pin everywhere\"
and 0 means use cluster's default setting (i.e., replication factor set in
config). Positive values indicate how many peers should pin this content.

An optional allocations argument can be provided, allocations should be a
comma-separated list of peer IDs on which we want to pin. Peers in allocations
are prioritized over automatically-determined ones, but replication factors
would still be respected.
";

const DESC_PIN_RM: &str = "
This command tells IPFS Cluster to no longer manage a CID. This will
trigger unpinning operations in all the IPFS nodes holding the content.

When the request has succeeded, the command returns the status of the CID
in the cluster. The CID should disappear from the list offered by \"pin ls\",
although unpinning operations in the cluster may take longer or fail.
";

const DESC_PIN_UPDATE: &str = "
This command will add a new pin to the cluster taking all the options from an
existing one, including name. This means that the new pin will bypass the
allocation process and will be allocated to the same peers as the existing
one.

The cluster peers will try to Pin the new item on IPFS using the \"pin update\"
command. This is especially efficient when the content of two pins (their DAGs)
are similar.

Unlike the \"pin update\" command in the ipfs daemon, this will not unpin the
existing item from the cluster. Please run \"pin rm\" for that.
";

const DESC_PIN_LS: &str = "
This command will list the CIDs which are tracked by IPFS Cluster and to
which peers they are currently allocated. This list does not include
any monitoring information about the IPFS status of the CIDs, it
merely represents the list of pins which are part of the shared state of
the cluster. For IPFS-status information about the pins, use \"status\".

The filter only takes effect when listing all pins. The possible values are:
  - all (default)
  - pin (normal pins, recursive or direct)
  - meta-pin (sharded pins)
  - clusterdag-pin (sharding-dag root pins)
  - shard-pin (individual shard pins)
";

const DESC_STATUS: &str = "
This command retrieves the status of the CIDs tracked by IPFS
Cluster, including which member is pinning them and any errors.
If one of several CIDs are provided, the status will be only fetched 
for a single item.  Metadata CIDs are included in the status response.

When the --local flag is passed, it will only fetch the status from the
contacted cluster peer. By default, status will be fetched from all peers.

When the --filter flag is passed, it will only fetch the peer information
where status of the pin matches at least one of the filter values (a comma
separated list). The following are valid status values:

  - cluster_error
  - error
  - pin_error
  - pin_queued
  - pinned
  - pinning
  - queued
  - remote
  - sharded
  - unexpectedly_unpinned
  - unpin_error
  - unpin_queued
  - unpinned
  - unpinning";

const DESC_RECOVER: &str = "
This command asks Cluster peers to re-track or re-forget CIDs in
error state, usually because the IPFS pin or unpin operation has failed.

The command will wait for any operations to succeed and will return the status
of the item upon completion. Note that, when running on the full sets of tracked
CIDs (without argument), it may take a considerably long time.

When the --local flag is passed, it will only trigger recover
operations on the contacted peer (as opposed to on every peer).
";

const DESC_VERSION: &str = "
This command retrieves the IPFS Cluster version and can be used
to check that it matches the CLI version (shown by -v).
";

const DESC_HEALTH_GRAPH: &str = "
This command queries all connected cluster peers and their ipfs peers to generate a
graph of the connections.  Output is a dot file encoding the cluster's connection state.
";

const DESC_HEALTH_METRICS: &str = "
This commands displays the latest valid metrics of the given type logged
by this peer for all current cluster peers.

If no argument is provided, the command retrieves all currently existing metric types.

Currently supported metrics depend on the informer component used,
but usually are:

- freespace
- ping
";

const DESC_HEALTH_ALERTS: &str = "
This command provides a list of \"alerts\" that the cluster has seen.

An alert is triggered when one of the metrics seen for a peer expires, and no
new metrics have been received.

Different alerts may be handled in different ways. i.e. ping alerts may
trigger automatic repinnings if configured.
";

const DESC_HEALTH_BANDWIDTH: &str = "
This command lists information about bytes sent, received and current bandwidth
rates for each libp2p protocol that the peer uses.
";

const DESC_IPFS_GC: &str = "
This command will instruct current Cluster peers to run \"repo gc\" on their
respective IPFS daemons.

When --local flag is passed, it will garbage collect only on the local IPFS
daemon, otherwise on all IPFS daemons.
";

// peers: 'List and manage IPFS Cluster peers'
// pin: 'Pin and unpin and list items in IPFS Cluster'
// health: 'Cluster monitoring information'
// ipfs: 'Manage IPFS daemon'
/// A flag line before alignment: `--name value, -n value\tusage (default: x) [$ENV]`.
fn flag_line(f: &Flag) -> String {
    let names = f
        .names
        .split(',')
        .map(str::trim)
        .map(|n| {
            let dashes = if n.chars().count() == 1 { "-" } else { "--" };
            if f.value {
                format!("{dashes}{n} value")
            } else {
                format!("{dashes}{n}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut usage = f.usage.to_string();
    if let Some(d) = f.default {
        usage.push_str(&format!(" (default: {d})"));
    }
    let mut line = format!("{names}\t{}", usage.trim());
    if let Some(env) = f.env {
        line.push_str(&format!(" [${env}]"));
    }
    line
}

fn command_lines(cmds: &[Cmd]) -> String {
    cmds.iter()
        .filter(|c| !c.hidden)
        .map(|c| format!("\n   {}\t{}", c.names(), c.usage))
        .collect()
}

/// The app page (urfave's AppHelpTemplate) for the app itself (`prog`) or, as `<group> help`
/// prints it, for a command group run as an app of its own.
fn app_page(name: &str, help_name: &str, app: &Cmd, flags: &[&Flag], version: &str) -> String {
    let mut s = format!("NAME:\n   {name}");
    if !app.usage.is_empty() {
        s.push_str(&format!(" - {}", app.usage));
    }
    s.push_str(&format!("\n\nUSAGE:\n   {help_name} "));
    if !flags.is_empty() {
        s.push_str("[global options]");
    }
    if !app.subs.is_empty() {
        s.push_str(" command [command options]");
    }
    s.push_str(" [arguments...]");
    s.push_str(&format!("\n\nVERSION:\n   {version}"));
    if !app.description.is_empty() {
        s.push_str(&format!("\n\nDESCRIPTION:\n   {}", app.description));
    }
    if app.subs.iter().any(|c| !c.hidden) {
        s.push_str("\n\nCOMMANDS:");
        s.push_str(&command_lines(app.subs));
    }
    if !flags.is_empty() {
        s.push_str("\n\nGLOBAL OPTIONS:\n   ");
        let lines: Vec<String> = flags.iter().map(|f| flag_line(f)).collect();
        s.push_str(&lines.join("\n   "));
    }
    s.push('\n');
    tabwrite(&s)
}

/// A command group's page (urfave's SubcommandHelpTemplate), as `<group> --help` prints it.
fn group_page(help_name: &str, group: &Cmd) -> String {
    let about = if group.description.is_empty() {
        group.usage
    } else {
        group.description
    };
    let mut s = format!(
        "NAME:\n   {help_name} - {about}\n\nUSAGE:\n   {help_name} command [command options] [arguments...]\n\nCOMMANDS:"
    );
    s.push_str(&command_lines(group.subs));
    s.push_str(&format!(
        "\n\nOPTIONS:\n   {}\n   \n",
        flag_line(&HELP_FLAG)
    ));
    tabwrite(&s)
}

/// A command's page (urfave's CommandHelpTemplate), as `<command> --help` and
/// `help <command>` print it.
fn command_page(help_name: &str, cmd: &Cmd) -> String {
    let mut s = format!(
        "NAME:\n   {help_name} - {}\n\nUSAGE:\n   {help_name}",
        cmd.usage
    );
    if !cmd.flags.is_empty() {
        s.push_str(" [command options]");
    }
    s.push(' ');
    s.push_str(if cmd.args_usage.is_empty() {
        "[arguments...]"
    } else {
        cmd.args_usage
    });
    if !cmd.description.is_empty() {
        s.push_str(&format!("\n\nDESCRIPTION:\n   {}", cmd.description));
    }
    if !cmd.flags.is_empty() {
        s.push_str("\n\nOPTIONS:\n   ");
        for f in cmd.flags {
            s.push_str(&flag_line(f));
            s.push_str("\n   ");
        }
    }
    s.push('\n');
    tabwrite(&s)
}

/// What a help request prints: stdout, stderr and the exit code.
#[derive(Debug, PartialEq, Eq)]
pub struct Printed {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

impl Printed {
    fn out(stdout: String) -> Self {
        Printed {
            stdout,
            stderr: String::new(),
            code: 0,
        }
    }
}

/// Where a command sits in the tree: its names from the app down (empty: the app).
fn resolve<'a>(path: &[String]) -> Option<&'a Cmd> {
    let mut node = &APP;
    for name in path {
        node = node.find(name)?;
    }
    Some(node)
}

fn help_name(prog: &str, path: &[String]) -> String {
    std::iter::once(prog)
        .chain(path.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The page `--help` prints for the command at `path` (the app, a group or a command).
pub fn page_for(prog: &str, path: &[String], version: &str) -> String {
    match resolve(path) {
        Some(node) if path.is_empty() => {
            let flags: Vec<&Flag> = node.flags.iter().collect();
            app_page(APP.name, prog, node, &flags, version)
        }
        Some(node) if !node.subs.is_empty() => group_page(&help_name(prog, path), node),
        Some(node) if node.name == HELP_CMD.name => command_page("", node),
        Some(node) => command_page(&help_name(prog, path), node),
        None => app_page(
            APP.name,
            prog,
            &APP,
            &APP.flags.iter().collect::<Vec<_>>(),
            version,
        ),
    }
}

/// `Incorrect Usage` after a flag the command at `path` does not define.
pub fn incorrect_usage(prog: &str, path: &[String], flag: &str, version: &str) -> String {
    usage_error(
        prog,
        path,
        &format!("flag provided but not defined: -{flag}"),
        version,
    )
}

/// urfave's answer to a flag parse error (Go's `flag` package message `msg`): a command
/// prints `Incorrect Usage: <msg>` and its page, the app and groups `Incorrect Usage.` and
/// theirs; all on stdout (exit 1).
fn usage_error(prog: &str, path: &[String], msg: &str, version: &str) -> String {
    let leaf = resolve(path).is_some_and(|n| !path.is_empty() && n.subs.is_empty());
    let sep = if leaf { ":" } else { "." };
    format!(
        "Incorrect Usage{sep} {msg}\n\n{}",
        page_for(prog, path, version)
    )
}

/// How Go's `flag` package parses a flag's value: urfave's Int and Duration flags fail on
/// a value those parsers refuse, Bool flags on a value `strconv.ParseBool` refuses.
enum Kind {
    Bool,
    Int,
    Duration,
    Text,
}

fn kind(f: &Flag) -> Kind {
    match (f.value, f.default) {
        (false, _) => Kind::Bool,
        (true, Some("0")) => Kind::Int,
        (true, Some("0s")) => Kind::Duration,
        _ => Kind::Text,
    }
}

/// `strconv.ParseInt(s, 0, 64)`: an optional sign, then decimal, `0x`, `0o`, `0b` or a
/// leading-0 octal number, with `_` between digits.
fn go_int_ok(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = body.to_ascii_lowercase();
    let (digits, radix) = if let Some(d) = lower.strip_prefix("0x") {
        (d.to_string(), 16)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (d.to_string(), 8)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (d.to_string(), 2)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (lower[1..].to_string(), 8)
    } else {
        (lower.clone(), 10)
    };
    let underscores_ok = radix != 10 || !digits.contains('_');
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    underscores_ok
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
        && i64::from_str_radix(&clean, radix).is_ok()
}

fn go_bool_ok(s: &str) -> bool {
    matches!(
        s,
        "1" | "t" | "T" | "true" | "TRUE" | "True" | "0" | "f" | "F" | "false" | "FALSE" | "False"
    )
}

/// The flag parse errors upstream's ctl reports before running anything: a value flag
/// without a value, an Int or Duration flag with a value Go does not parse, a Bool flag
/// with `=<not a boolean>`. Arguments as for [`answer`].
pub fn flag_value_error(prog: &str, args: &[String], version: &str) -> Option<Printed> {
    let mut node = &APP;
    let mut path: Vec<String> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        i += 1;
        if a == "--" {
            return None;
        }
        if a.len() > 1 && a.starts_with('-') {
            let body = a.trim_start_matches('-');
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let f = node
                .flags
                .iter()
                .find(|f| f.names.split(',').any(|n| n.trim() == name))?;
            let value = match (kind(f), inline) {
                (Kind::Bool, None) => continue,
                (Kind::Bool, Some(v)) if go_bool_ok(v) => continue,
                (Kind::Bool, Some(v)) => {
                    let msg = format!("invalid boolean value \"{v}\" for -{name}: parse error");
                    return Some(Printed {
                        stdout: usage_error(prog, &path, &msg, version),
                        stderr: String::new(),
                        code: 1,
                    });
                }
                (_, Some(v)) => v.to_string(),
                (_, None) => match args.get(i) {
                    Some(v) => {
                        i += 1;
                        v.clone()
                    }
                    None => {
                        let msg = format!("flag needs an argument: -{name}");
                        return Some(Printed {
                            stdout: usage_error(prog, &path, &msg, version),
                            stderr: String::new(),
                            code: 1,
                        });
                    }
                },
            };
            let ok = match kind(f) {
                Kind::Int => go_int_ok(&value),
                Kind::Duration => crate::go_text::parse_go_duration(&value).is_ok(),
                _ => true,
            };
            if !ok {
                let msg = format!("invalid value \"{value}\" for flag -{name}: parse error");
                return Some(Printed {
                    stdout: usage_error(prog, &path, &msg, version),
                    stderr: String::new(),
                    code: 1,
                });
            }
            continue;
        }
        if node.subs.is_empty() {
            continue;
        }
        node = node.find(a)?;
        path.push(node.name.to_string());
    }
    None
}

/// Answers the arguments (program name excluded, after [`crate::urfave_compat_args`]) when
/// they ask for help as upstream's ctl understands it: `-h`/`--help` anywhere before `--`,
/// `help`/`h` with an optional topic in place of a command, the app or a command group with
/// no command. `None` when the arguments are not a help request (or hold an unknown flag or
/// command first, which clap then reports).
pub fn answer(prog: &str, args: &[String], version: &str) -> Option<Printed> {
    let mut node = &APP;
    let mut path: Vec<String> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        i += 1;
        if a == "--" {
            return None;
        }
        if a.len() > 1 && a.starts_with('-') {
            let body = a.trim_start_matches('-');
            let (name, inline) = match body.split_once('=') {
                Some((n, _)) => (n, true),
                None => (body, false),
            };
            if name == "h" || name == "help" {
                return Some(Printed::out(page_for(prog, &path, version)));
            }
            let f = node
                .flags
                .iter()
                .find(|f| f.names.split(',').any(|n| n.trim() == name))?;
            if f.value && !inline {
                i += 1;
            }
            continue;
        }
        if node.subs.is_empty() {
            continue; // a command's argument
        }
        if a == HELP_CMD.name || HELP_CMD.aliases.contains(&a) {
            let topic = args.get(i).map(String::as_str);
            return Some(help_command(prog, &path, node, topic, version));
        }
        node = node.find(a)?;
        path.push(node.name.to_string());
    }
    if !path.is_empty() && !node.subs.is_empty() {
        return Some(Printed::out(group_page(&help_name(prog, &path), node)));
    }
    None
}

/// `help [topic]` run in the app (`path` empty) or in a command group.
fn help_command(
    prog: &str,
    path: &[String],
    node: &Cmd,
    topic: Option<&str>,
    version: &str,
) -> Printed {
    let Some(topic) = topic else {
        if path.is_empty() {
            return Printed::out(page_for(prog, path, version));
        }
        // A group's `help` prints the group as an app of its own.
        let name = help_name(prog, path);
        return Printed::out(app_page(&name, &name, node, &[&HELP_FLAG], version));
    };
    if topic == "-h" || topic == "--help" {
        return Printed::out(command_page("", &HELP_CMD));
    }
    let found = if path.is_empty() {
        APP.find(topic)
    } else {
        node.subs.iter().find(|c| c.name == topic)
    };
    match found {
        Some(c) if c.name == HELP_CMD.name => Printed::out(command_page("", c)),
        Some(c) => {
            let mut p = path.to_vec();
            p.push(c.name.to_string());
            Printed::out(command_page(&help_name(prog, &p), c))
        }
        None => Printed {
            stdout: String::new(),
            stderr: format!("No help topic for '{topic}'\n"),
            code: 3,
        },
    }
}

/// Aligns tab-separated cells as Go's `text/tabwriter` with urfave's settings (minimum
/// width 1, padding 2, spaces): consecutive lines with a cell in a column form a block whose
/// cells are padded to the widest; the text after a line's last tab is not a cell.
pub fn tabwrite(text: &str) -> String {
    let lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut out = String::new();
    let mut widths = Vec::new();
    format_block(&lines, 0, lines.len(), &mut widths, &mut out);
    out
}

fn format_block(
    lines: &[Vec<&str>],
    mut line0: usize,
    line1: usize,
    widths: &mut Vec<usize>,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        write_lines(lines, line0, this, widths, out);
        line0 = this;
        let mut width = 1;
        while this < line1 && column + 1 < lines[this].len() {
            width = width.max(lines[this][column].chars().count() + 2);
            this += 1;
        }
        widths.push(width);
        format_block(lines, line0, this, widths, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, line0, line1, widths, out);
}

fn write_lines(lines: &[Vec<&str>], from: usize, to: usize, widths: &[usize], out: &mut String) {
    for (i, cells) in lines.iter().enumerate().take(to).skip(from) {
        for (j, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if j < widths.len() {
                let pad = widths[j].saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        if i + 1 < lines.len() {
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn tabwriter_blocks_reset_on_a_line_without_a_tab() {
        assert_eq!(
            tabwrite("   a\tx\n   long\ty\nplain\n   b\tz\n"),
            "   a     x\n   long  y\nplain\n   b  z\n"
        );
    }

    /// Every flag and command of the clap tree (which parses) is in the help tree (which
    /// prints), and the other way round, with the same names.
    #[test]
    fn help_tree_matches_the_clap_tree() {
        fn names_of(f: &Flag) -> Vec<String> {
            f.names.split(',').map(|n| n.trim().to_string()).collect()
        }
        fn check(path: &str, c: &clap::Command, h: &Cmd) {
            let mut clap_flags: Vec<Vec<String>> = c
                .get_arguments()
                .filter(|a| !a.is_positional())
                .map(|a| {
                    let mut n: Vec<String> = a.get_long().into_iter().map(String::from).collect();
                    n.extend(a.get_short().map(String::from));
                    n.extend(
                        a.get_visible_aliases()
                            .unwrap_or_default()
                            .into_iter()
                            .map(String::from),
                    );
                    n
                })
                .collect();
            let mut help_flags: Vec<Vec<String>> = h
                .flags
                .iter()
                .filter(|f| f.names != HELP_FLAG.names)
                .map(names_of)
                .collect();
            clap_flags.sort();
            help_flags.sort();
            assert_eq!(clap_flags, help_flags, "flags of `{path}`");
            // The defaults the help prints are the ones clap applies (an argument clap
            // leaves unset, such as --wait-limit, is resolved by the command).
            for a in c
                .get_arguments()
                .filter(|a| a.get_action().takes_values() && !a.get_default_values().is_empty())
            {
                let Some(long) = a.get_long() else { continue };
                let Some(f) = h.flags.iter().find(|f| names_of(f)[0] == long) else {
                    continue;
                };
                let clap_default: Vec<String> = a
                    .get_default_values()
                    .iter()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect();
                let shown = f.default.map(|d| d.trim_matches('"').to_string());
                let applied = clap_default.first().filter(|d| !d.is_empty()).cloned();
                assert_eq!(shown, applied, "default of `{path} --{long}`");
            }
            let mut clap_subs: Vec<&str> = c.get_subcommands().map(|s| s.get_name()).collect();
            let mut help_subs: Vec<&str> = h
                .subs
                .iter()
                .map(|s| s.name)
                .filter(|n| *n != HELP_CMD.name)
                .collect();
            clap_subs.sort();
            help_subs.sort();
            assert_eq!(clap_subs, help_subs, "commands of `{path}`");
            for s in c.get_subcommands() {
                check(
                    &format!("{path} {}", s.get_name()),
                    s,
                    h.find(s.get_name()).unwrap(),
                );
            }
        }
        check("ipfs-cluster-ctl", &crate::cli::Cli::command(), &APP);
    }
}
