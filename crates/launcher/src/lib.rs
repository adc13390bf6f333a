//! The launcher behind `ipfs-cluster-service`: `init` writes a peer's config folder, and
//! `daemon` starts the peer's four service binaries, waits until each one is healthy,
//! supervises them, and stops them cleanly on SIGINT/SIGTERM; `state` exports, imports or
//! cleans the pinset offline. In production each service
//! may instead run under its own systemd unit; the launcher is a convenience.

pub mod cli;
pub mod lock;
pub mod offline;
pub mod state;
pub mod supervisor;

pub use state::{ImportOptions, StateOptions};
pub use supervisor::{run_daemon, DaemonOptions, SERVICES};
