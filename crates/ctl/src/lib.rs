//! ipfs-cluster-ctl: a drop-in client of the REST API with upstream's commands, output and exit
//! codes. The binary only calls [`run`]; everything (parsing, requests, formatting, exit codes)
//! lives here so tests can drive it with in-memory stdout/stderr.

pub mod add;
pub mod cli;
pub mod client;
pub mod commands;
pub mod error;
pub mod format;
pub mod graph;
pub mod util;

use std::ffi::OsString;
use std::io::Write;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches};

pub use error::{ApiError, CtlError, LocalError};

/// The version printed by `--version`; the same number as ipfs-cluster-service.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs the CLI with `args` (including the program name) and returns the process exit code.
/// Builds its own current-thread runtime: do not call it from inside a tokio runtime (use
/// [`run_async`] there).
pub fn run(args: Vec<OsString>, stdout: &mut dyn Write, stderr: &mut dyn Write) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(stderr, "error starting runtime: {e}");
            return 1;
        }
    };
    rt.block_on(run_async(args, stdout, stderr))
}

/// Async form of [`run`].
pub async fn run_async(args: Vec<OsString>, stdout: &mut dyn Write, stderr: &mut dyn Write) -> i32 {
    let prog = args
        .first()
        .and_then(|a| {
            std::path::Path::new(a)
                .file_name()
                .map(|f| f.to_string_lossy().to_string())
        })
        .unwrap_or_else(|| "ipfs-cluster-ctl".to_string());
    let matches = match cli::Cli::command().try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => return clap_error(e, stdout, stderr),
    };
    let mut parsed = match cli::Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => return clap_error(e, stdout, stderr),
    };
    if parsed.version {
        let _ = writeln!(stdout, "ipfs-cluster-ctl version {VERSION}");
        return 0;
    }
    let Some(cmd) = parsed.command.take() else {
        let _ = write!(stdout, "{}", cli::Cli::command().render_help());
        return 0;
    };
    match cmd {
        cli::Command::Commands => {
            for line in cli::command_tree(&prog) {
                let _ = writeln!(stdout, "{line}");
            }
            return 0;
        }
        cli::Command::Completion { shell } => {
            let mut c = cli::Cli::command();
            clap_complete::generate(shell, &mut c, prog, stdout);
            return 0;
        }
        _ => {}
    }
    let json = match parsed.encoding.as_str() {
        "text" => false,
        "json" => true,
        _ => {
            return report(
                &CtlError::local("", "unsupported encoding"),
                false,
                stdout,
                stderr,
            )
        }
    };
    let ctx = match commands::Ctx::new(&parsed, json, stderr) {
        Ok(c) => c,
        Err(e) => return report(&e, json, stdout, stderr),
    };
    match commands::dispatch(&ctx, cmd, stdout, stderr).await {
        Ok(()) => 0,
        Err(e) => report(&e, json, stdout, stderr),
    }
}

/// Prints an error the way upstream does and returns its exit code (§11.7).
pub fn report(e: &CtlError, json: bool, stdout: &mut dyn Write, stderr: &mut dyn Write) -> i32 {
    match e {
        CtlError::Api(a) => {
            let text = if json {
                format::error_json(a)
            } else {
                format::error_text(a)
            };
            let _ = stdout.write_all(text.as_bytes());
            a.exit_code()
        }
        CtlError::Local(l) => {
            let _ = writeln!(stderr, "{l}");
            l.exit_code
        }
    }
}

/// Maps clap's parse errors to urfave/cli v1 behaviour: help exits 0, an unknown command
/// prints `No help topic for '<x>'` (exit 3), an undefined flag prints `Incorrect Usage`
/// plus help (exit 1), other usage errors exit 1.
fn clap_error(e: clap::Error, stdout: &mut dyn Write, stderr: &mut dyn Write) -> i32 {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = write!(stdout, "{}", e.render());
            0
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand => {
            let _ = write!(stdout, "{}", e.render());
            0
        }
        ErrorKind::InvalidSubcommand => {
            let name = match e.get(ContextKind::InvalidSubcommand) {
                Some(ContextValue::String(s)) => s.clone(),
                _ => String::new(),
            };
            let _ = writeln!(stderr, "No help topic for '{name}'");
            3
        }
        ErrorKind::UnknownArgument => {
            let arg = match e.get(ContextKind::InvalidArg) {
                Some(ContextValue::String(s)) => s.clone(),
                _ => String::new(),
            };
            let flag = arg.trim_start_matches('-');
            let flag = flag.split('=').next().unwrap_or(flag);
            let _ = writeln!(
                stdout,
                "Incorrect Usage: flag provided but not defined: -{flag}\n"
            );
            let _ = writeln!(stderr, "{}", e.render());
            1
        }
        _ => {
            let _ = write!(stderr, "{}", e.render());
            1
        }
    }
}
