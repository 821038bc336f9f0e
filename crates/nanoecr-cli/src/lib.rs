//! The nanoecr command-line tool: run tests in-process, talk to nanoecrd, analyse, score, replay and recover run files.
