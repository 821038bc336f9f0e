//! The descriptors libhdf5 opens for this crate's files are close-on-exec: a child started while
//! a run file is open (a shim, python, `xdg-open`) does not keep the file, or its `flock`, for
//! its life (docs/architecture.md, "Child processes and open run files").

use std::path::Path;
use std::process::{Command, Stdio};

use nanoecr_core::{Diagnostics, EndReason, RunConfig};
use nanoecr_store::{InstrumentInfo, RunColumns, RunWriter};

const DEMO: &str = include_str!("../../../config/demo.toml");

/// The descriptors of process `pid` that name `path`, with their `flags:` field (octal, from
/// /proc/<pid>/fdinfo, proc(5)).
fn descriptors_of(pid: &str, path: &Path) -> Vec<(String, u32)> {
    let want = std::fs::canonicalize(path).expect("canonical path");
    let mut found = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("/proc/<pid>/fd").flatten() {
        if std::fs::read_link(e.path()).ok().as_deref() != Some(want.as_path()) {
            continue;
        }
        let fd = e.file_name().to_string_lossy().into_owned();
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).expect("fdinfo");
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            .expect("a flags: line in octal");
        found.push((fd, flags));
    }
    found
}

const O_CLOEXEC: u32 = 0o2_000_000;

#[test]
fn a_child_started_while_run_files_are_open_inherits_none_of_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("run.h5");
    let cfg: RunConfig = nanoecr_core::config::parse(DEMO, None).expect("demo config valid");
    let info = InstrumentInfo { backend: "sim".into(), frame: "LOADFRAME0 test".into(), smu: "SMU0 test".into() };
    let writer = RunWriter::create(&path, &cfg, &info).expect("create");

    let me = std::process::id().to_string();
    let ours = descriptors_of(&me, &path);
    // libhdf5's descriptor and the writer's own lock file handle, at least.
    assert!(ours.len() >= 2, "descriptors on the run file: {ours:?}");
    for (fd, flags) in &ours {
        assert_ne!(
            flags & O_CLOEXEC,
            0,
            "descriptor {fd} on the file being written is inherited by children: flags {flags:o}"
        );
    }
    // A child started now: `cat` lives until its stdin closes.
    let mut child = Command::new("cat").stdin(Stdio::piped()).stdout(Stdio::null()).spawn().expect("cat");
    let inherited = descriptors_of(&child.id().to_string(), &path);
    writer.finish(&EndReason::Completed, &Diagnostics::default(), None).expect("finish");

    // A reader that keeps the file open.
    let columns = RunColumns::open(&path).expect("open columns");
    let reading = descriptors_of(&me, &path);
    assert!(!reading.is_empty(), "the reader holds no descriptor on the file");
    for (fd, flags) in reading {
        assert_ne!(flags & O_CLOEXEC, 0, "descriptor {fd} of the reader is inherited by children: flags {flags:o}");
    }
    drop(columns);
    drop(child.stdin.take());
    child.wait().expect("cat exits");
    assert!(inherited.is_empty(), "the child holds the run file: {inherited:?}");
}
