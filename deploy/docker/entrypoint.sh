#!/bin/sh
# Container entrypoint: drop to the `ipfs` user, create the config on first start (CLUSTER_*
# environment variables such as CLUSTER_SECRET are baked into it), then run the command.
set -e
if [ "$(id -u)" -eq 0 ]; then
  mkdir -p "$IPFS_CLUSTER_PATH"
  chown -R ipfs:ipfs "$IPFS_CLUSTER_PATH"
  exec gosu ipfs "$0" "$@"
fi
ipfs-cluster-service --version
if [ ! -f "$IPFS_CLUSTER_PATH/service.json" ]; then
  ipfs-cluster-service init
fi
exec ipfs-cluster-service "$@"
