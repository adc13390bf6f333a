//! `ipfs-cluster-follow`: runs follower peers of collaborative (crdt) clusters, with
//! upstream's commands and words. A follower is one of our crdt peers with
//! `cluster.follower_mode` on: it replicates and pins what the cluster's trusted peers
//! write and can change nothing. Each followed cluster has its folder under
//! `~/.ipfs-cluster-follow/<clusterName>` (`--config FOLDER` / `IPFS_CLUSTER_PATH`
//! change the base), holding upstream's `{"source": …}` service.json (plus the sections
//! fetched from the source at each start), an identity and our internal token.
//!
//! * [`cli`]: the command line and upstream's help texts.
//! * [`template`]: the configuration source (http(s) URL, /ipfs/ or /ipns/ path or
//!   DNSLink name through the local IPFS gateway, or a local file) and the follower's
//!   service.json made from it.
//! * [`commands`]: list, info, init, run, list pins.

pub mod cli;
pub mod commands;
pub mod http;
pub mod template;

use std::path::PathBuf;

use cli::{Action, Level};

/// `$HOME/.ipfs-cluster-follow`.
pub fn default_base() -> PathBuf {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    home.join(cli::DEFAULT_FOLDER)
}

fn help_of(level: &Level, base: &std::path::Path) -> String {
    match level {
        Level::App => cli::app_help(&base.display().to_string()),
        // ... and calls the cluster command's options global ones after a mistake there.
        Level::Cluster(n) => {
            cli::cluster_help(n).replacen("\n\nOPTIONS:", "\n\nGLOBAL OPTIONS:", 1)
        }
        // urfave/cli lists its help command in a subcommand's help after a mistake.
        Level::Sub(n, s) => cli::sub_help(n, *s).replacen(
            "\n\nOPTIONS:",
            "\n\nCOMMANDS:\n   help, h  Shows a list of commands or help for one command\n\nOPTIONS:",
            1,
        ),
    }
}

/// Runs the command line; the exit code.
pub async fn run(args: Vec<String>) -> i32 {
    let parsed = cli::parse(
        &args,
        std::env::var("IPFS_CLUSTER_PATH").ok(),
        std::env::var("IPFS_GATEWAY").ok(),
    );
    let default = default_base();
    let parsed = match parsed {
        Ok(p) => p,
        Err(e) => {
            // Upstream's words and exit code: its CLI library prints the mistake and the
            // help, and the program exits 0 (scripts written for upstream rely on it).
            print!(
                "Incorrect Usage: {}\n\n{}",
                e.msg,
                help_of(&e.level, &default)
            );
            return 0;
        }
    };
    let base = parsed.config.clone().unwrap_or(default.clone());
    let result = match parsed.action {
        Action::Help => {
            print!("{}", cli::app_help(&default.display().to_string()));
            Ok(())
        }
        Action::Version => {
            println!("{} version {}", cli::PROGRAM, ipfs_cluster_proto::VERSION);
            Ok(())
        }
        Action::ListClusters => commands::list_clusters(&base),
        Action::ClusterHelp(n) => {
            print!("{}", cli::cluster_help(&n));
            Ok(())
        }
        Action::SubHelp(n, s) => {
            print!("{}", cli::sub_help(&n, s));
            Ok(())
        }
        Action::ClusterDefault(n) => match commands::info(&base, &n).await {
            Ok(()) => {
                print!("Additional help:\n\n-------------------------------------------------\n\n");
                print!("{}", cli::cluster_help(&n));
                Ok(())
            }
            Err(e) => Err(e),
        },
        Action::Info(n) => commands::info(&base, &n).await,
        Action::Init {
            name,
            template,
            gateway,
        } => commands::init(&base, &name, template.as_deref(), &gateway, false).await,
        Action::Run {
            name,
            init,
            gateway,
        } => {
            init_logging();
            commands::run(&base, &name, init.as_deref(), &gateway).await
        }
        Action::List(n) => commands::list(&base, &n).await,
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            let msg = match e.downcast_ref::<commands::Exit>() {
                Some(x) => x.msg.clone(),
                None => format!("{e:#}"),
            };
            if !msg.is_empty() {
                eprintln!("{msg}");
            }
            1
        }
    }
}

/// Logs of the running follower to stderr (`RUST_LOG`, default info), as every service
/// and the launcher log.
fn init_logging() {
    use ipfs_cluster_runtime::logging;
    logging::init(&logging::env_filter_or("info"), None);
}
