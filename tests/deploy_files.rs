//! The deployment files stay valid: systemd units pass `systemd-analyze verify` and the
//! compose stack passes `docker-compose config` (each skipped, loudly, where the tool is
//! not installed).

use std::process::Command;

use ipfs_cluster_tests::{repo_root, skip};

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn systemd_units_verify() {
    if !have("systemd-analyze") {
        skip(
            "systemd_units_verify",
            "systemd-analyze is not installed (apt-get install systemd)",
        );
        return;
    }
    let src = repo_root().join("deploy/systemd");
    let tmp = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if !(name.ends_with(".service") || name.ends_with(".target")) {
            continue;
        }
        // The binaries are not installed here: point ExecStart at /bin/true, keep the rest.
        let text = std::fs::read_to_string(&p).unwrap();
        let text = text
            .lines()
            .map(|l| {
                if l.starts_with("ExecStart=") {
                    "ExecStart=/bin/true".to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(tmp.path().join(&name), text).unwrap();
        units.push(tmp.path().join(&name));
    }
    assert_eq!(units.len(), 5, "four services and a target");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "systemd-analyze verify: {err}"
    );
}

#[test]
fn compose_stack_is_valid() {
    if !have("docker-compose") {
        skip(
            "compose_stack_is_valid",
            "docker-compose is not installed (apt-get install docker-compose)",
        );
        return;
    }
    let file = repo_root().join("deploy/docker-compose.yml");
    let out = Command::new("docker-compose")
        .arg("-f")
        .arg(&file)
        .arg("config")
        .env("CLUSTER_SECRET", "7".repeat(64))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = String::from_utf8_lossy(&out.stdout);
    // Only the REST API is published, and only on loopback.
    // docker-compose 1.x prints port mappings in the short form `- host_ip:host:container/proto`.
    let published: Vec<&str> = cfg
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("- ") && (l.ends_with("/tcp") || l.ends_with("/udp")))
        .collect();
    assert_eq!(published, ["- 127.0.0.1:9094:9094/tcp"], "{cfg}");
    // Without a secret the stack refuses to start.
    let out = Command::new("docker-compose")
        .arg("-f")
        .arg(&file)
        .arg("config")
        .env_remove("CLUSTER_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
}
