//! Logging, the same in every service and the launcher: `tracing` to stderr, filtered by
//! `RUST_LOG` (or a default the binary picks), through a writer that survives a closed
//! stderr.

use tracing_subscriber::EnvFilter;

/// Installs the process's subscriber: `filter` (RUST_LOG syntax; `info` when it does not
/// parse) to [`LogStderr`]; `ansi` forces colours on or off (`None`: tracing's default).
pub fn init(filter: &str, ansi: Option<bool>) {
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(filter).unwrap_or_else(|_| "info".into()))
        .with_writer(|| LogStderr);
    match ansi {
        Some(on) => fmt.with_ansi(on).init(),
        None => fmt.init(),
    }
}

/// `RUST_LOG` when set and valid, else `default` (e.g. `info,openraft=warn`).
pub fn env_filter_or(default: &str) -> String {
    match std::env::var("RUST_LOG") {
        Ok(v) if EnvFilter::try_new(&v).is_ok() => v,
        _ => default.to_string(),
    }
}

/// The log writer of every service and the launcher: stderr, where a failed write (the
/// launcher that read our stderr is gone, the terminal was closed) is dropped silently.
/// With plain stderr, tracing reports the failure with `eprintln!`, which panics on the
/// same broken pipe and kills whichever task was logging: an orphaned service then never
/// finished its own shutdown.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogStderr;

impl std::io::Write for LogStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}
