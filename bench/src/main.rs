//! nanoecr benchmarks (see docs/performance.md).
fn main() {}
