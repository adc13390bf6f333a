//! API types with upstream-exact JSON (Pin, PinInfo, GlobalPinInfo, ID, Metric...) and their conversions to the internal gRPC messages
