//! The nanoecrd local-socket server (being built; see docs/socket-protocol.md).
