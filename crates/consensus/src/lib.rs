//! Consensus service: the pinset on openraft, durable on redb; membership; allocation
