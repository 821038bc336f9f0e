//! The nanoecr control loop, acquisition pipeline, interlocks and the nanoecrd local-socket server.
