//! Gateway service: upstream's REST API and the IPFS Pinning Services API over hyper + rustls
