//! The service skeleton every IPFS Cluster service uses, so that the four services (and
//! the launcher where it applies) start, log, stop, fail and serve their internal gRPC
//! endpoint the same way:
//!
//! * [`main`] / [`Service`]: arguments, config folder, logging, tokio runtime, metrics and
//!   tracing, stop signal, exit codes, error printing (`skeleton`);
//! * [`grpc`]: the internal gRPC server (loopback only, bearer-token check, health,
//!   reflection v1 + v1alpha, per-call metrics and trace spans);
//! * [`shutdown`]: when a service stops (SIGTERM, SIGINT, SIGHUP, launcher gone) and the
//!   hard-exit watchdog;
//! * [`logging`], [`workers`] (the tokio runtime's size), [`disk`] (waiting for a full
//!   disk to take writes again);
//! * [`peer_folder`]: the raft folder's markers, backups and the restart-in-staging exit
//!   code, shared by consensus and the launcher;
//! * [`error_code`]: the one error model: a service's domain error names its
//!   [`ErrorCode`], which decides the gRPC code at the service's edge and the HTTP status;
//! * [`api_error`]: the one error of the HTTP APIs ([`ApiError`]: its code and message,
//!   and upstream's bodies for REST, the Pinning Services API and the IPFS proxy);
//! * [`access_log`]: the Apache common log format access log of every HTTP endpoint (REST
//!   API, Pinning Services API, IPFS proxy);
//! * [`monitor`]: following the peer metrics broadcast and the alert checker's period
//!   (`monitor.pubsubmon.check_interval`), and [`peer_metrics`]: the bounded store of the
//!   latest metric per (name, peer), both shared by consensus and the gateway.
//!
//! It depends on the library crates only (proto, api, config, observability), never on a
//! service: `tests/architecture.rs` checks it.

pub mod access_log;
pub mod api_error;
pub mod disk;
pub mod error_code;
pub mod grpc;
pub mod logging;
pub mod monitor;
pub mod peer_folder;
pub mod peer_metrics;
pub mod shutdown;
mod skeleton;
pub mod workers;

pub use api_error::ApiError;
pub use error_code::{ErrorCode, ServiceError};
pub use grpc::{bind_internal, serve, serve_with, HealthHandle, ServeError, ServeOptions};
pub use skeleton::{exit_with_error, main, CommonArgs, Context, NoArgs, Service};
