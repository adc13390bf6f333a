//! Transport service: the libp2p host with the cluster secret (pnet), peer calls with an allow-list policy, gossipsub broadcast, peerstore
