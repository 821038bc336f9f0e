//! One test: control loop, ring, consumer (see docs/architecture.md).
