//! Multiaddrs and CIDs from config files, query strings and path parameters: the config
//! crate's multiaddr helpers (socket addresses, host/port, unix paths, peer ids) and the
//! api crate's CID / peer-id / multiaddr parsing, plus the gateway's path parameters.
//! A parsed value must print to a string that parses back to the same value.
#![no_main]

use ipfs_cluster_api::{multiaddr_peer_id, parse_multiaddr, parse_peer_id, Cid};
use ipfs_cluster_config::addr;
use ipfs_cluster_gateway::rest::query::{cid_param, peer_param};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Raw bytes: the binary multiaddr form a peer could send.
    if let Ok(ma) = ipfs_cluster_config::Multiaddr::try_from(data.to_vec()) {
        let _ = addr::to_socket_addr(&ma);
        let _ = addr::to_host_port(&ma);
        let _ = addr::unix_path(&ma);
        let _ = addr::is_quic(&ma);
        let _ = addr::peer_id(&ma);
    }
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(ma) = addr::parse(s) {
        let _ = addr::to_socket_addr(&ma);
        let _ = addr::to_host_port(&ma);
        let _ = addr::unix_path(&ma);
        let _ = addr::is_quic(&ma);
        let _ = addr::peer_id(&ma);
        let printed = ma.to_string();
        if addr::unix_path(&ma).is_none() {
            let back = addr::parse(&printed)
                .unwrap_or_else(|e| panic!("{s:?} printed as {printed:?} does not parse: {e}"));
            assert_eq!(back, ma, "multiaddr {s:?}");
        }
    }

    if let Ok(ma) = parse_multiaddr(s) {
        let _ = multiaddr_peer_id(&ma);
    }
    if let Ok(p) = parse_peer_id(s) {
        assert_eq!(
            parse_peer_id(&p).ok().as_deref(),
            Some(p.as_str()),
            "peer {s:?}"
        );
    }
    let _ = peer_param(s);

    if let Ok(c) = Cid::parse(s) {
        let printed = c.to_string();
        let back = Cid::parse(&printed)
            .unwrap_or_else(|e| panic!("CID {s:?} printed as {printed:?} does not parse: {e:?}"));
        assert_eq!(back, c, "CID {s:?}");
    }
    let _ = cid_param(s);
});
