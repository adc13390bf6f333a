//! (being written: see docs/internals.md)
