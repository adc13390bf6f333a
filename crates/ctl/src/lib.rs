//! ipfs-cluster-ctl: a drop-in client of the REST API with upstream's commands, output and exit codes
