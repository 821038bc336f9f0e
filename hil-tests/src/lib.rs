//! Hardware-in-the-loop test support (see README.md). The tests live in tests/.
