//! Wire types of the nanoecrd local-socket protocol (newline-delimited JSON-RPC 2.0), shared by daemon and client.
