//! IPFS connector service: Kubo RPC client, pin tracker, informers, IPFS proxy
