//! The multi-process tests share one test kit (`crates/testkit`); this library only
//! re-exports it so every test file reads `use ipfs_cluster_tests::*`.
pub use ipfs_cluster_testkit::*;
