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

// ---------------------------------------------------------------------------------------
// No import cycle between the modules of a crate: the layers each crate's folders show
// (docs/architecture.md) hold only if a lower module never reaches a higher one. Checked
// on the sources: a module's `crate::<module>` paths (and, inside a folder,
// `crate::<folder>::<module>` and `super::<module>` paths) outside comments and test
// modules are its edges.

/// The text of a source file that production code sees: no comment lines, nothing from
/// the first `#[cfg(test)] mod` on (test modules come last in this workspace).
fn production_text(src: &str) -> String {
    let mut out = String::new();
    let mut test_attr = false;
    for line in src.lines() {
        let t = line.trim_start();
        if test_attr && (t.starts_with("mod ") || t.starts_with("pub mod ")) {
            break;
        }
        test_attr = t.starts_with("#[cfg(test)]") || (test_attr && t.starts_with("#["));
        if !t.starts_with("//") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The first path segment of every `<prefix>x` and `<prefix>{x, y::z}` in `text`.
fn paths_after(text: &str, prefix: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut start) = (0usize, 0usize);
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.push(ident(group[start..j].trim_start()));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(ident(group[start..j].trim_start()));
                        start = j + 1;
                    }
                    _ => {}
                }
            }
        } else {
            out.push(ident(rest));
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// A cycle in `graph`, if any (as the path that closes it).
fn find_cycle(
    graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut c = stack[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if !done.insert(n.to_string()) {
            return None;
        }
        stack.push(n.to_string());
        for t in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(t, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        None
    }
    let mut done = std::collections::BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

/// The module (`[top]` or `[folder, module]`) of each `.rs` file under `src`.
fn module_files(src: &std::path::Path) -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|l| l == "mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] || parts.last().is_some_and(|l| l == "tests") {
                continue;
            }
            out.push((parts, std::fs::read_to_string(&p).unwrap_or_default()));
        }
    }
    out
}

/// Every import cycle between the modules of a crate (top level, and inside each folder).
fn module_cycles(src: &std::path::Path) -> Vec<String> {
    use std::collections::{BTreeMap, BTreeSet};
    let files = module_files(src);
    let tops: BTreeSet<String> = files.iter().map(|(p, _)| p[0].clone()).collect();
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut inner: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (parts, text) in &files {
        let text = production_text(text);
        for t in paths_after(&text, "crate::") {
            if tops.contains(&t) && t != parts[0] {
                top.entry(parts[0].clone()).or_default().insert(t);
            }
        }
        if parts.len() == 2 {
            let folder = &parts[0];
            let siblings: BTreeSet<String> = files
                .iter()
                .filter(|(p, _)| p.len() == 2 && &p[0] == folder)
                .map(|(p, _)| p[1].clone())
                .collect();
            let mut refs = paths_after(&text, &format!("crate::{folder}::"));
            refs.extend(paths_after(&text, "super::"));
            for t in refs {
                if siblings.contains(&t) && t != parts[1] {
                    inner
                        .entry(folder.clone())
                        .or_default()
                        .entry(parts[1].clone())
                        .or_default()
                        .insert(t);
                }
            }
        }
    }
    let mut out: Vec<String> = find_cycle(&top)
        .into_iter()
        .map(|c| c.join(" -> "))
        .collect();
    for (folder, g) in &inner {
        if let Some(c) = find_cycle(g) {
            out.push(format!("{folder}/: {}", c.join(" -> ")));
        }
    }
    out
}

#[test]
fn no_import_cycle_between_the_modules_of_a_crate() {
    let crates = concat!(env!("CARGO_MANIFEST_DIR"), "/../crates");
    let mut found = Vec::new();
    for e in std::fs::read_dir(crates).expect("crates/").flatten() {
        let src = e.path().join("src");
        for c in module_cycles(&src) {
            found.push(format!("{}: {c}", e.file_name().to_string_lossy()));
        }
    }
    found.sort();
    assert!(
        found.is_empty(),
        "import cycles between modules (a lower layer reaches a higher one; move the shared piece down or pass it in):\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn the_cycle_check_sees_grouped_and_nested_paths() {
    assert_eq!(
        paths_after(
            "use crate::{a::B, c, d::{e, f}};\nx = crate::g::h();",
            "crate::"
        ),
        vec!["a", "c", "d", "g"]
    );
    let text = "use crate::a;\n// crate::b\n#[cfg(test)]\nmod tests {\n use crate::c;\n}\n";
    assert_eq!(paths_after(&production_text(text), "crate::"), vec!["a"]);
    let mut g = std::collections::BTreeMap::new();
    g.insert("a".to_string(), ["b".to_string()].into());
    g.insert("b".to_string(), ["a".to_string()].into());
    assert_eq!(
        find_cycle(&g),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
}
