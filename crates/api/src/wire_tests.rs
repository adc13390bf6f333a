//! Byte-for-byte round trips of the JSON examples in the wire spec (§9 and Appendix A).
