//! The tokio runtime every service binary runs on, sized for a peer's four services
//! sharing one machine: each gets half the cores (at least one worker) instead of tokio's
//! default of all of them. Fewer workers per process mean fewer cross-thread wake-ups,
//! which is where a loaded peer spent its CPU (docs/lab/benchmarks-history.md, "Ingest: fewer, bigger
//! groups"). `TOKIO_WORKER_THREADS` still overrides it, as tokio documents.

/// Worker threads for one service on a machine with `cores` CPUs.
pub fn default_workers(cores: usize) -> usize {
    (cores / 2).max(1)
}

/// A multi-thread runtime with every driver enabled and `default_workers` workers.
pub fn service_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        b.worker_threads(default_workers(cores));
    }
    b.build()
}

/// `service_runtime`, or the error printed and exit code 1 (what every service binary
/// does when it cannot start one).
pub fn service_runtime_or_exit() -> tokio::runtime::Runtime {
    service_runtime().unwrap_or_else(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        std::process::exit(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_the_cores_at_least_one() {
        assert_eq!(default_workers(1), 1);
        assert_eq!(default_workers(2), 1);
        assert_eq!(default_workers(3), 1);
        assert_eq!(default_workers(8), 4);
    }

    #[test]
    fn builds_and_runs() {
        let rt = service_runtime().unwrap();
        assert_eq!(rt.block_on(async { 40 + 2 }), 42);
    }
}
