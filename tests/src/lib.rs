//! Harness for the multi-process tests: free ports, a real IPFS node, a whole peer.
