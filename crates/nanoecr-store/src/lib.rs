//! HDF5 run files (NeXus-style): writer with chunking, compression and periodic flush; reader; crash recovery.
