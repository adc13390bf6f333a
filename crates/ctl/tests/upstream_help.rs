//! Replays the recordings of upstream's ipfs-cluster-ctl v1.1.6 (help pages, usage errors,
//! unknown commands; made by tests/compat/record-ctl-help.sh from the pinned upstream
//! binary) against our ctl: the same stdout, stderr and exit code for every case.

use std::ffi::OsString;
use std::path::PathBuf;

fn recordings() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/compat/upstream-v1.1.6/ctl-help")
}

#[test]
fn help_pages_and_usage_errors_match_upstream_recordings() {
    let dir = recordings();
    let cases = std::fs::read_to_string(dir.join("cases.txt"))
        .unwrap_or_else(|e| panic!("reading {}/cases.txt: {e}", dir.display()));
    let mut failures = Vec::new();
    let mut n = 0;
    for line in cases.lines() {
        let mut parts = line.splitn(3, '\t');
        let (id, code, args) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap_or(""),
        );
        let want_code: i32 = code.parse().unwrap();
        let want_out = std::fs::read_to_string(dir.join(format!("{id}.stdout"))).unwrap();
        let want_err = std::fs::read_to_string(dir.join(format!("{id}.stderr"))).unwrap();
        let argv: Vec<OsString> = std::iter::once("ipfs-cluster-ctl")
            .chain(args.split_whitespace())
            .map(OsString::from)
            .collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let got_code = ipfs_cluster_ctl::run(argv, &mut out, &mut err);
        let (out, err) = (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        );
        n += 1;
        if (got_code, &out, &err) != (want_code, &want_out, &want_err) {
            failures.push(format!(
                "case {id} `ipfs-cluster-ctl {args}`:\n  exit ours {got_code} upstream {want_code}\n--- ours stdout\n{out}--- upstream stdout\n{want_out}--- ours stderr\n{err}--- upstream stderr\n{want_err}"
            ));
        }
    }
    assert!(n > 80, "only {n} cases in the recordings");
    assert!(
        failures.is_empty(),
        "{} of {n} cases differ from upstream:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
