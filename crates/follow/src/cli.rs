//! `ipfs-cluster-follow [global options] <clusterName> [subcommand]`: upstream's command
//! line, parsed by hand because a positional cluster name comes before the subcommand,
//! and upstream's help texts, word for word (tests/follow.rs compares them with
//! upstream's binary).

use std::path::PathBuf;

pub const PROGRAM: &str = "ipfs-cluster-follow";
/// The folder under $HOME holding one folder per followed cluster.
pub const DEFAULT_FOLDER: &str = ".ipfs-cluster-follow";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// `--help` (or `help`, `h`) without a cluster name.
    Help,
    Version,
    /// No cluster name: list the configured followers.
    ListClusters,
    /// `<name> --help` (or `<name> help`).
    ClusterHelp(String),
    /// `<name> <sub> --help`.
    SubHelp(String, Sub),
    /// `<name>` alone: info, then the cluster help.
    ClusterDefault(String),
    Info(String),
    Init {
        name: String,
        template: Option<String>,
        gateway: String,
    },
    Run {
        name: String,
        init: Option<String>,
        gateway: String,
    },
    List(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sub {
    Info,
    Init,
    Run,
    List,
}

#[derive(Debug, PartialEq)]
pub struct Parsed {
    /// `--config FOLDER` / `IPFS_CLUSTER_PATH` (None: ~/.ipfs-cluster-follow).
    pub config: Option<PathBuf>,
    pub action: Action,
}

/// Which help a usage mistake is followed by (upstream prints the help of the level
/// where the mistake is).
#[derive(Debug, Clone, PartialEq)]
pub enum Level {
    App,
    Cluster(String),
    Sub(String, Sub),
}

/// A command-line mistake: upstream's message, then the help of `level`.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("{msg}")]
pub struct UsageError {
    pub msg: String,
    pub level: Level,
}

fn is_help(a: &str) -> bool {
    matches!(a, "--help" | "-help" | "-h" | "--h")
}

/// Takes the value of `--flag value` or `--flag=value` at `args[*i]`.
fn flag_value(
    args: &[String],
    i: &mut usize,
    names: &[&str],
    level: &Level,
) -> Result<Option<String>, UsageError> {
    let a = &args[*i];
    for n in names {
        if a == n {
            *i += 1;
            return match args.get(*i) {
                Some(v) => Ok(Some(v.clone())),
                None => Err(UsageError {
                    msg: format!("flag needs an argument: -{}", a.trim_start_matches('-')),
                    level: level.clone(),
                }),
            };
        }
        if let Some(v) = a.strip_prefix(&format!("{n}=")) {
            return Ok(Some(v.to_string()));
        }
    }
    Ok(None)
}

/// Parses the arguments after the program name. `env_config`: IPFS_CLUSTER_PATH;
/// `env_gateway`: IPFS_GATEWAY.
pub fn parse(
    args: &[String],
    env_config: Option<String>,
    env_gateway: Option<String>,
) -> Result<Parsed, UsageError> {
    let mut config = env_config.filter(|s| !s.is_empty()).map(PathBuf::from);
    let mut i = 0;
    // Global options, before the cluster name.
    while i < args.len() && args[i].starts_with('-') {
        let a = args[i].as_str();
        if is_help(a) {
            return Ok(Parsed {
                config,
                action: Action::Help,
            });
        }
        if matches!(a, "--version" | "-v" | "-version") {
            return Ok(Parsed {
                config,
                action: Action::Version,
            });
        }
        match flag_value(args, &mut i, &["--config", "-config"], &Level::App)? {
            Some(v) => config = Some(PathBuf::from(v)),
            None => {
                return Err(UsageError {
                    msg: format!(
                        "flag provided but not defined: -{}",
                        a.trim_start_matches('-')
                    ),
                    level: Level::App,
                })
            }
        }
        i += 1;
    }
    let Some(name) = args.get(i).cloned() else {
        return Ok(Parsed {
            config,
            action: Action::ListClusters,
        });
    };
    if matches!(name.as_str(), "help" | "h") {
        return Ok(Parsed {
            config,
            action: Action::Help,
        });
    }
    i += 1;
    let Some(sub) = args.get(i).cloned() else {
        return Ok(Parsed {
            config,
            action: Action::ClusterDefault(name),
        });
    };
    i += 1;
    let rest = &args[i..];
    let sub = match sub.as_str() {
        s if is_help(s) || s == "help" || s == "h" => {
            return Ok(Parsed {
                config,
                action: Action::ClusterHelp(name),
            })
        }
        // The cluster command has no flags of its own (upstream's flag parser stops at
        // the first word that is not a flag, so only a flag right here is a mistake).
        s if s.starts_with('-') && s != "-" && s != "--" => {
            return Err(UsageError {
                msg: format!(
                    "flag provided but not defined: -{}",
                    s.trim_start_matches('-')
                ),
                level: Level::Cluster(name),
            })
        }
        "info" => Sub::Info,
        "init" => Sub::Init,
        "run" => Sub::Run,
        "list" => Sub::List,
        // Upstream runs the cluster app's default action (info) on unknown words.
        _ => {
            return Ok(Parsed {
                config,
                action: Action::ClusterDefault(name),
            })
        }
    };
    let mut gateway = env_gateway
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| crate::template::DEFAULT_GATEWAY.to_string());
    let mut init = None;
    let mut positional = Vec::new();
    let mut j = 0;
    while j < rest.len() {
        let a = rest[j].as_str();
        if is_help(a) {
            return Ok(Parsed {
                config,
                action: Action::SubHelp(name, sub),
            });
        }
        if a.starts_with('-') && a != "-" {
            let known: &[&str] = match sub {
                Sub::Init => &["--gateway", "-gateway"],
                Sub::Run => &["--gateway", "-gateway", "--init", "-init"],
                _ => &[],
            };
            let level = Level::Sub(name.clone(), sub);
            let is_init = a.trim_start_matches('-').split('=').next() == Some("init");
            match flag_value(rest, &mut j, known, &level)? {
                Some(v) if is_init => init = Some(v),
                Some(v) => gateway = v,
                None => {
                    return Err(UsageError {
                        msg: format!(
                            "flag provided but not defined: -{}",
                            a.trim_start_matches('-')
                        ),
                        level,
                    })
                }
            }
        } else {
            positional.push(a.to_string());
        }
        j += 1;
    }
    let action = match sub {
        Sub::Info => Action::Info(name),
        Sub::List => Action::List(name),
        Sub::Init => Action::Init {
            name,
            template: positional.into_iter().next(),
            gateway,
        },
        Sub::Run => Action::Run {
            name,
            init: init.filter(|s| !s.is_empty()),
            gateway,
        },
    };
    Ok(Parsed { config, action })
}

/// `ipfs-cluster-follow --help`. `default_path`: the default `--config` shown.
pub fn app_help(default_path: &str) -> String {
    let p = PROGRAM;
    format!(
        r#"NAME:
   {p} - IPFS Cluster Follower

USAGE:
   {p} [global options] <clusterName> [subcommand]...

VERSION:
   {version}

DESCRIPTION:
   
   {p} helps running IPFS Cluster follower peers.

   Follower peers subscribe to a Cluster controlled by a set of "trusted
   peers". They collaborate in pinning items as dictated by the trusted peers and
   do not have the power to make Cluster-wide modifications to the pinset.

   Follower peers cannot access information nor trigger actions in other peers.

   {p} can be used to follow different clusters by launching it 
   with different options. Each Cluster has an identity, a configuration 
   and a datastore associated to it, which are kept under 
   "~/{DEFAULT_FOLDER}/<cluster_name>".

   For feedback, bug reports or any additional information, visit
   https://github.com/ipfs-cluster/ipfs-cluster.


   EXAMPLES:

   List configured follower peers:

   $ {p}

   Display information for a follower peer:

   $ {p} <clusterName> info

   Initialize a follower peer:

   $ {p} <clusterName> init <example.url>

   Launch a follower peer (will stay running):

   $ {p} <clusterName> run

   List items in the pinset for a given cluster:

   $ {p} <clusterName> list

   Getting help and usage info:

   $ {p} --help
   $ {p} <clusterName> --help
   $ {p} <clusterName> info --help
   $ {p} <clusterName> init --help
   $ {p} <clusterName> run --help
   $ {p} <clusterName> list --help



COMMANDS:
   help, h  Shows a list of commands or help for one command

GLOBAL OPTIONS:
   --config FOLDER  path to the followers configuration and data FOLDER (default: "{default_path}") [$IPFS_CLUSTER_PATH]
   --help, -h       show help
   --version, -v    print the version
"#,
        version = ipfs_cluster_proto::VERSION,
    )
}

/// `ipfs-cluster-follow <name> --help`.
pub fn cluster_help(name: &str) -> String {
    let p = PROGRAM;
    format!(
        r#"NAME:
   {p} {name} - Follower peer management for "{name}"

USAGE:
   {p} {name} [subcommand]

COMMANDS:
   info     displays information for this peer
   init     initializes the follower peer
   run      runs the follower peer
   list     list items in the peers' pinset
   help, h  Shows a list of commands or help for one command

OPTIONS:
   --help, -h  show help
"#
    )
}

/// `ipfs-cluster-follow <name> <sub> --help`.
pub fn sub_help(name: &str, sub: Sub) -> String {
    let p = PROGRAM;
    match sub {
        Sub::Info => format!(
            r#"NAME:
   {p} {name} info - displays information for this peer

USAGE:
   {p} {name} info [command options]

DESCRIPTION:
   
   This command display useful information for "{name}"'s follower peer.


OPTIONS:
   --help, -h  show help
"#
        ),
        Sub::Init => format!(
            r#"NAME:
   {p} {name} init - initializes the follower peer

USAGE:
   {p} {name} init [command options] <template_URL>

DESCRIPTION:
   
   This command initializes a follower peer for the cluster named "{name}". You
   will need to pass the peer configuration URL. The command will generate a new
   peer identity and leave things ready to run "{p} {name} run".

   An error will be returned if a configuration folder for a cluster peer with
   this name already exists. If you wish to re-initialize from scratch, delete
   this folder first.


OPTIONS:
   --help, -h  show help
"#
        ),
        Sub::Run => format!(
            r#"NAME:
   {p} {name} run - runs the follower peer

USAGE:
   {p} {name} run [command options]

DESCRIPTION:
   

   This commands runs a "{name}" cluster follower peer. The peer should have already
   been initialized with "init" alternatively the --init flag needs to be
   passed.

   Before running, ensure that you have connectivity and that the IPFS daemon is
   running.

   You can obtain more information about this follower peer by running
   "{p} {name}" (without any arguments).

   The peer will stay running in the foreground until manually stopped.


OPTIONS:
   --init value  initialize cluster peer with the given URL before running
   --help, -h    show help
"#
        ),
        Sub::List => format!(
            r#"NAME:
   {p} {name} list - list items in the peers' pinset

USAGE:
   {p} {name} list [command options]

DESCRIPTION:
   

   This commands lists all the items pinned by this follower cluster peer on IPFS.

   If the peer is currently running, it will display status information for each
   pin (such as PINNING). If not, it will just display the current list of pins
   as obtained from the internal state on disk.


OPTIONS:
   --help, -h  show help
"#
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Parsed, UsageError> {
        let v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse(&v, None, None)
    }

    #[test]
    fn upstream_command_lines() {
        assert_eq!(p(&[]).unwrap().action, Action::ListClusters);
        assert_eq!(p(&["--help"]).unwrap().action, Action::Help);
        assert_eq!(p(&["-v"]).unwrap().action, Action::Version);
        assert_eq!(
            p(&["--config", "/x", "c"]).unwrap(),
            Parsed {
                config: Some("/x".into()),
                action: Action::ClusterDefault("c".into())
            }
        );
        assert_eq!(
            p(&["c", "--help"]).unwrap().action,
            Action::ClusterHelp("c".into())
        );
        assert_eq!(
            p(&["c", "run", "-h"]).unwrap().action,
            Action::SubHelp("c".into(), Sub::Run)
        );
        assert_eq!(
            p(&["c", "init", "https://x/s.json"]).unwrap().action,
            Action::Init {
                name: "c".into(),
                template: Some("https://x/s.json".into()),
                gateway: "127.0.0.1:8080".into()
            }
        );
        assert_eq!(
            p(&["c", "run", "--init=/ipns/x", "--gateway", "127.0.0.1:1"])
                .unwrap()
                .action,
            Action::Run {
                name: "c".into(),
                init: Some("/ipns/x".into()),
                gateway: "127.0.0.1:1".into()
            }
        );
        assert_eq!(p(&["c", "list"]).unwrap().action, Action::List("c".into()));
        assert_eq!(
            p(&["c", "run", "--gateway=http://init.example"])
                .unwrap()
                .action,
            Action::Run {
                name: "c".into(),
                init: None,
                gateway: "http://init.example".into()
            }
        );
        let e = p(&["--bogus"]).unwrap_err();
        assert_eq!(e.msg, "flag provided but not defined: -bogus");
        assert_eq!(e.level, Level::App);
        let e = p(&["c", "run", "--init"]).unwrap_err();
        assert_eq!(e.msg, "flag needs an argument: -init");
        assert_eq!(e.level, Level::Sub("c".into(), Sub::Run));
        assert!(p(&["--config"]).is_err());
    }
}
