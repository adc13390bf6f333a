//! The config loaders a peer runs at start: service.json (`ServiceConfig::from_json`,
//! validation, environment overrides), identity.json (`Identity::load`), the cluster
//! secret and Go durations. The input is split on the first NUL byte: before it, the
//! document; after it, `KEY=VALUE` lines used as the environment. A config we load and
//! print must load back to the same config; a duration must print and parse to itself.
#![no_main]

use std::{io::Write, sync::OnceLock};

use ipfs_cluster_config::{ClusterSecret, GoDuration, Identity, ServiceConfig};
use libfuzzer_sys::fuzz_target;

fn scratch() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temp dir for identity.json"))
}

fuzz_target!(|data: &[u8]| {
    let (doc, env) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(doc) else {
        return;
    };
    let env = String::from_utf8_lossy(env);
    let vars: Vec<(&str, &str)> = env.lines().filter_map(|l| l.split_once('=')).collect();
    let lookup = |k: &str| {
        vars.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.to_string())
    };

    if let Ok(mut cfg) = ServiceConfig::from_json(text) {
        let _ = cfg.validate();
        let printed = cfg.to_json_pretty();
        let back = ServiceConfig::from_json(&printed)
            .unwrap_or_else(|e| panic!("printed config does not load: {e}\n{printed}"));
        assert_eq!(back, cfg, "config round trip\n{printed}");
        if cfg.apply_env_from(&lookup).is_ok() {
            let _ = cfg.validate();
            let printed = cfg.to_json_pretty();
            let back = ServiceConfig::from_json(&printed).unwrap_or_else(|e| {
                panic!("config after env overrides does not load: {e}\n{printed}")
            });
            assert_eq!(back, cfg, "config round trip after env\n{printed}");
        }
        let _ = cfg.raft();
    }

    // identity.json through the real loader (a file, as a peer reads it).
    let path = scratch().path().join("identity.json");
    if let Ok(mut f) = std::fs::File::create(&path) {
        if f.write_all(doc).is_ok() {
            drop(f);
            if let Ok(id) = Identity::load(&path) {
                let again = Identity::from_strings(
                    &id.peer_id.to_string(),
                    &id.private_key_base64(),
                    &path,
                )
                .expect("an identity we loaded reloads from its own strings");
                assert_eq!(again.peer_id, id.peer_id);
            }
        }
    }
    let _ = Identity::from_private_key_base64(text, &path);

    if let Ok(sec) = ClusterSecret::parse(text) {
        assert_eq!(ClusterSecret::from_hex(&sec.to_hex()).ok(), Some(sec));
    }
    if let Ok(d) = GoDuration::parse(text) {
        let printed = d.to_string();
        let back = GoDuration::parse(&printed)
            .unwrap_or_else(|e| panic!("duration {text:?} printed as {printed:?}: {e}"));
        assert_eq!(back, d, "duration {text:?}");
    }
});
