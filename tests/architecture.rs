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

/// docs/architecture.md's crate table: (crate, the workspace crates it depends on).
fn documented_graph(doc: &str) -> Vec<(String, Vec<String>)> {
    doc.lines()
        .filter(|l| l.starts_with("| `ipfs-cluster-"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let names = |cell: &str| -> Vec<String> {
                cell.split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_string)
                    .collect()
            };
            let krate = names(cells[1]).into_iter().next().unwrap_or_default();
            let mut deps = names(cells[4]);
            deps.sort();
            (krate, deps)
        })
        .collect()
}

/// The crate graph in docs/architecture.md is the one `cargo metadata` reports (workspace
/// crates only, dev-dependencies left out), so the page a newcomer reads first is true.
#[test]
fn the_documented_crate_graph_matches_the_manifests() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/architecture.md");
    let doc = std::fs::read_to_string(path).expect("docs/architecture.md");
    let documented = documented_graph(&doc);
    let packages = workspace_dependencies();
    let ours: std::collections::HashSet<&str> = packages.iter().map(|(n, _)| n.as_str()).collect();
    let mut actual: Vec<(String, Vec<String>)> = packages
        .iter()
        .map(|(n, deps)| {
            let mut d: Vec<String> = deps
                .iter()
                .filter(|d| ours.contains(d.as_str()))
                .cloned()
                .collect();
            d.sort();
            d.dedup();
            (n.clone(), d)
        })
        .collect();
    actual.sort();
    let mut documented_sorted = documented.clone();
    documented_sorted.sort();
    let missing: Vec<String> = actual
        .iter()
        .filter(|a| !documented_sorted.contains(a))
        .map(|(n, d)| format!("{n} -> {}", d.join(", ")))
        .collect();
    let stale: Vec<String> = documented_sorted
        .iter()
        .filter(|d| !actual.contains(d))
        .map(|(n, d)| format!("{n} -> {}", d.join(", ")))
        .collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/architecture.md's crate table does not match `cargo metadata`; update its rows.\n  manifests say (not in the doc):\n    {}\n  the doc says (not in the manifests):\n    {}",
        missing.join("\n    "),
        stale.join("\n    ")
    );
}
