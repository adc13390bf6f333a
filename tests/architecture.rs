//! The architecture rule, checked on the workspace's own manifests (`cargo metadata`):
//! a service crate never depends on another service crate, and the library crates the
//! services share (runtime, p2p, proto, config, api, observability) depend on no service.
//! Services share only libraries and the gRPC contracts, so each one can be built,
//! deployed and replaced alone. Dev-dependencies are exempt: tests may start several
//! services; production code may not reach across.

use std::process::Command;

use serde_json::Value;

/// The deployable services: the four of a peer and the launcher.
const SERVICES: [&str; 5] = [
    "ipfs-cluster-transport",
    "ipfs-cluster-consensus",
    "ipfs-cluster-ipfs-connector",
    "ipfs-cluster-gateway",
    "ipfs-cluster-service",
];

/// The libraries services share; none of them may depend on a service.
const SHARED_LIBRARIES: [&str; 6] = [
    "ipfs-cluster-runtime",
    "ipfs-cluster-p2p",
    "ipfs-cluster-proto",
    "ipfs-cluster-config",
    "ipfs-cluster-api",
    "ipfs-cluster-observability",
];

/// Every workspace package with its normal and build dependencies (names).
fn workspace_dependencies() -> Vec<(String, Vec<String>)> {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
            "--manifest-path",
            manifest,
        ])
        .output()
        .expect("running `cargo metadata` (is cargo on PATH?)");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    meta["packages"]
        .as_array()
        .expect("cargo metadata lists packages")
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .into_iter()
                .flatten()
                // kind: null = normal, "build", "dev"; dev-dependencies are exempt.
                .filter(|d| d["kind"].as_str() != Some("dev"))
                .filter_map(|d| d["name"].as_str().map(str::to_string))
                .collect();
            (p["name"].as_str().unwrap_or_default().to_string(), deps)
        })
        .collect()
}

/// The (package, dependency) pairs that break the rule.
fn violations(packages: &[(String, Vec<String>)]) -> Vec<String> {
    let mut bad = Vec::new();
    for (name, deps) in packages {
        let constrained =
            SERVICES.contains(&name.as_str()) || SHARED_LIBRARIES.contains(&name.as_str());
        if !constrained {
            continue;
        }
        for d in deps {
            if SERVICES.contains(&d.as_str()) && d != name {
                bad.push(format!("{name} depends on the service crate {d}"));
            }
        }
    }
    bad
}

#[test]
fn no_service_depends_on_another_and_no_library_on_a_service() {
    let packages = workspace_dependencies();
    for s in SERVICES {
        assert!(
            packages.iter().any(|(n, _)| n == s),
            "the service crate {s} is not in the workspace any more; update SERVICES in tests/architecture.rs"
        );
    }
    let bad = violations(&packages);
    assert!(
        bad.is_empty(),
        "the architecture rule is broken (services share only library crates and the gRPC contracts; move the shared code into crates/runtime or another library):\n  {}",
        bad.join("\n  ")
    );
}

#[test]
fn the_check_catches_a_service_reaching_across() {
    let pkgs = vec![
        (
            "ipfs-cluster-gateway".to_string(),
            vec!["ipfs-cluster-consensus".to_string()],
        ),
        (
            "ipfs-cluster-runtime".to_string(),
            vec!["ipfs-cluster-transport".to_string()],
        ),
        (
            "ipfs-cluster-tests".to_string(),
            vec!["ipfs-cluster-transport".to_string()],
        ),
    ];
    let bad = violations(&pkgs);
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(bad[0].contains("gateway depends on the service crate ipfs-cluster-consensus"));
    assert!(bad[1].contains("runtime depends on the service crate ipfs-cluster-transport"));
}
