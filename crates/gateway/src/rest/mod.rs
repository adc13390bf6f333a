//! The routes: `handlers` (one function per REST route), `pinsvc` (the IPFS Pinning
//! Services API), `health` (`/health/*`, `/monitor/*`), `query` (query strings and path
//! parameters as upstream reads them).

pub mod handlers;
pub mod health;
pub mod pinsvc;
pub mod query;
