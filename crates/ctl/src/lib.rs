//! ipfs-cluster-ctl: a drop-in client of the REST API with upstream's commands, output and exit
//! codes. The binary only calls [`run`]; everything (parsing, requests, formatting, exit codes)
//! lives here so tests can drive it with in-memory stdout/stderr.

pub mod cli;
pub mod client;
pub mod commands;
pub mod error;
pub mod format;
pub mod go_text;
pub mod graph;
pub mod help;
pub mod p2p;

use std::ffi::OsString;
use std::io::Write;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches};

pub use error::{ArgError, CtlError, LocalError, RestError};

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
    let args = urfave_compat_args(args);
    let words: Vec<String> = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if let Some(p) = help::flag_value_error(&prog, &words, VERSION)
        .or_else(|| help::answer(&prog, &words, VERSION))
    {
        let _ = stdout.write_all(p.stdout.as_bytes());
        let _ = stderr.write_all(p.stderr.as_bytes());
        return p.code;
    }
    let matches = match cli::Cli::command().try_get_matches_from(args.clone()) {
        Ok(m) => m,
        Err(e) => return clap_error(e, &prog, &args, stdout, stderr),
    };
    let mut parsed = match cli::Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => return clap_error(e, &prog, &args, stdout, stderr),
    };
    if parsed.version {
        let _ = writeln!(stdout, "ipfs-cluster-ctl version {VERSION}");
        return 0;
    }
    let Some(cmd) = parsed.command.take() else {
        let _ = write!(stdout, "{}", help::page_for(&prog, &[], VERSION));
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

/// Prints an error the way upstream does and returns its exit code.
pub fn report(e: &CtlError, json: bool, stdout: &mut dyn Write, stderr: &mut dyn Write) -> i32 {
    match e {
        CtlError::Rest(a) => {
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
/// plus the help of the command it was given to, on stdout (exit 1), other usage errors
/// exit 1.
fn clap_error(
    e: clap::Error,
    prog: &str,
    args: &[OsString],
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> i32 {
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        | ErrorKind::MissingSubcommand => {
            let path = command_path_before(args, "");
            let _ = write!(stdout, "{}", help::page_for(prog, &path, VERSION));
            0
        }
        ErrorKind::DisplayVersion => {
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
            let path = command_path_before(args, &arg);
            let _ = write!(
                stdout,
                "{}",
                help::incorrect_usage(prog, &path, flag, VERSION)
            );
            1
        }
        _ => {
            let _ = write!(stderr, "{}", e.render());
            1
        }
    }
}

/// The subcommand names given before the argument `bad` (args as rewritten by
/// [`urfave_compat_args`], program name first), skipping flag values.
fn command_path_before(args: &[OsString], bad: &str) -> Vec<String> {
    let root = cli::Cli::command();
    let mut cmd = &root;
    let mut path = Vec::new();
    let mut skip_value = false;
    for arg in args.iter().skip(1) {
        let s = arg.to_string_lossy();
        if skip_value {
            skip_value = false;
            continue;
        }
        if s == bad || s == "--" {
            break;
        }
        if let Some(l) = s.strip_prefix("--") {
            if !l.contains('=') {
                skip_value = cmd
                    .get_arguments()
                    .find(|a| {
                        a.get_long() == Some(l)
                            || a.get_all_aliases().is_some_and(|al| al.contains(&l))
                    })
                    .is_some_and(|a| a.get_action().takes_values());
            }
            continue;
        }
        if let Some(c) = s.strip_prefix('-').and_then(|x| x.chars().next()) {
            skip_value = cmd
                .get_arguments()
                .find(|a| a.get_short() == Some(c))
                .is_some_and(|a| a.get_action().takes_values() && s.len() == 2);
            continue;
        }
        if let Some(sub) = cmd.find_subcommand(s.as_ref()) {
            path.push(sub.get_name().to_string());
            cmd = sub;
        }
    }
    path
}

/// Rewrites urfave/cli v1 spellings clap does not accept: single-dash long flags
/// (`-rmin 2`, `-enc=json`) become `--rmin 2`, and `--bool=true|false` becomes `--bool` or
/// nothing. Only names that are real long flags (or aliases) of the command being parsed
/// are touched, so values and positional arguments pass through unchanged.
pub fn urfave_compat_args(args: Vec<OsString>) -> Vec<OsString> {
    let root = cli::Cli::command();
    let mut cmd = &root;
    let mut out = Vec::with_capacity(args.len());
    let mut iter = args.into_iter();
    if let Some(prog) = iter.next() {
        out.push(prog);
    }
    let mut skip_value = false;
    let mut rest_positional = false;
    for arg in iter {
        let Some(s) = arg.to_str().map(str::to_string) else {
            out.push(arg);
            continue;
        };
        if skip_value || rest_positional {
            skip_value = false;
            out.push(arg);
            continue;
        }
        if s == "--" {
            rest_positional = true;
            out.push(arg);
            continue;
        }
        let long = if let Some(l) = s.strip_prefix("--") {
            Some(l)
        } else if s.len() > 2
            && s.starts_with('-')
            && s[1..].starts_with(|c: char| c.is_ascii_alphabetic())
        {
            Some(&s[1..])
        } else {
            None
        };
        if let Some(l) = long {
            let (name, value) = match l.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (l, None),
            };
            let found = cmd.get_arguments().find(|a| {
                a.get_long() == Some(name)
                    || a.get_all_aliases().is_some_and(|al| al.contains(&name))
            });
            if let Some(a) = found {
                let is_bool = matches!(a.get_action(), clap::ArgAction::SetTrue);
                match (is_bool, value) {
                    (true, Some(v)) => match v {
                        "1" | "t" | "T" | "true" | "TRUE" | "True" => {
                            out.push(format!("--{name}").into())
                        }
                        "0" | "f" | "F" | "false" | "FALSE" | "False" => {}
                        _ => out.push(format!("--{name}={v}").into()),
                    },
                    (true, None) => out.push(format!("--{name}").into()),
                    (false, Some(v)) => out.push(format!("--{name}={v}").into()),
                    (false, None) => {
                        skip_value = a.get_action().takes_values();
                        out.push(format!("--{name}").into());
                    }
                }
                continue;
            }
            // urfave never groups short flags: an unknown `-name` is an unknown long flag
            out.push(format!("--{l}").into());
            continue;
        }
        if let Some(short) = s.strip_prefix('-').filter(|x| x.len() == 1) {
            let c = short.chars().next().unwrap_or('-');
            if let Some(a) = cmd.get_arguments().find(|a| a.get_short() == Some(c)) {
                skip_value = a.get_action().takes_values();
            }
            out.push(arg);
            continue;
        }
        if let Some(sub) = cmd.find_subcommand(&s) {
            cmd = sub;
        }
        out.push(arg);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(a: &[&str]) -> Vec<String> {
        let args = std::iter::once("ipfs-cluster-ctl")
            .chain(a.iter().copied())
            .map(OsString::from)
            .collect();
        urfave_compat_args(args)
            .into_iter()
            .skip(1)
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    #[test]
    fn urfave_spellings() {
        assert_eq!(
            norm(&["-enc=json", "-host", "/ip4/1.2.3.4/tcp/1", "id"]),
            ["--enc=json", "--host", "/ip4/1.2.3.4/tcp/1", "id"]
        );
        assert_eq!(
            norm(&["pin", "add", "-rmin", "-1", "-name", "-x", "Qm"]),
            ["pin", "add", "--rmin", "-1", "--name", "-x", "Qm"]
        );
        assert_eq!(
            norm(&["status", "--local=true", "Qm"]),
            ["status", "--local", "Qm"]
        );
        assert_eq!(norm(&["status", "--local=false", "Qm"]), ["status", "Qm"]);
        assert_eq!(
            norm(&["add", "-r", "-w", "dir"]),
            ["add", "-r", "-w", "dir"]
        );
        assert_eq!(
            norm(&["pin", "add", "--", "-wait"]),
            ["pin", "add", "--", "-wait"]
        );
        assert_eq!(norm(&["pin", "ls", "-bogus"]), ["pin", "ls", "--bogus"]);
    }

    fn usage(a: &[&str]) -> (i32, String, String) {
        let args = std::iter::once("ipfs-cluster-ctl")
            .chain(a.iter().copied())
            .map(OsString::from)
            .collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(args, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    fn help_of(path: &[&str]) -> String {
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        help::page_for("ipfs-cluster-ctl", &path, VERSION)
    }

    #[test]
    fn undefined_flags_print_urfave_usage_and_the_right_help() {
        // A leaf command: `Incorrect Usage:` and that command's help.
        let (code, out, err) = usage(&["--host", "/ip4/1.2.3.4/tcp/1", "pin", "ls", "--bogus"]);
        assert_eq!(code, 1);
        assert_eq!(
            out,
            format!(
                "Incorrect Usage: flag provided but not defined: -bogus\n\n{}",
                help_of(&["pin", "ls"])
            )
        );
        assert_eq!(err, "");
        let (_, out, _) = usage(&["status", "-bogus=1", "Qm"]);
        assert!(out.starts_with("Incorrect Usage: flag provided but not defined: -bogus\n\n"));
        assert!(out.ends_with(&help_of(&["status"])), "{out}");
        // The app: `Incorrect Usage.` and the app help.
        let (code, out, _) = usage(&["--bogus", "id"]);
        assert_eq!(code, 1);
        assert_eq!(
            out,
            format!(
                "Incorrect Usage. flag provided but not defined: -bogus\n\n{}",
                help_of(&[])
            )
        );
        // A command group: `Incorrect Usage.` and the group's help.
        let (_, out, _) = usage(&["pin", "--bogus", "ls"]);
        assert_eq!(
            out,
            format!(
                "Incorrect Usage. flag provided but not defined: -bogus\n\n{}",
                help_of(&["pin"])
            )
        );
    }
}
