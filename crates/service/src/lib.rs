//! ipfs-cluster-service: init, daemon (starts and supervises the four services of a peer), state export/import/cleanup
