//! Firmware shim (see README).
fn main() {}
