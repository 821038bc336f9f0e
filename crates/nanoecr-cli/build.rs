//! Link libhdf5 into `nanoecr` statically when the system ships its archive (Debian's
//! libhdf5-dev does: `hdf5/serial/libhdf5.a`).
//!
//! Why: Debian's shared libhdf5 is built with the read-only S3 driver, so loading it loads
//! libcurl, OpenSSL, GnuTLS, Kerberos, LDAP and the rest: 38 shared objects and ≈ 10 k symbol
//! relocations, most of them in libraries linked `-z now` themselves, ≈ 15 % of a one-run
//! `analyze` (docs/performance.md). The archive's objects that `nanoecr` reaches need only zlib,
//! libsz and libm, so the static binary loads 7 shared objects. Lazy binding of our own binary
//! would not help (those libraries bind eagerly anyway) and would give up full RELRO.
//!
//! How: hdf5-metno-sys asks for `-lhdf5` with the pkg-config library directory on the search
//! path. A directory of our own that holds only `libhdf5.a` goes on the search path first, so the
//! linker (which takes the first directory with either a `.so` or an `.a`) picks the archive;
//! its own dependencies follow at the end of the link line. Same library, same version as the
//! shared one the other crates' test binaries load. Where there is no archive (another
//! distribution, `HDF5_DIR` pointing at a shared-only build) nothing changes, and
//! `NANOECR_HDF5_DYNAMIC=1` forces the shared library.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=NANOECR_HDF5_DYNAMIC");
    println!("cargo::rerun-if-env-changed=HDF5_DIR");
    if std::env::var_os("NANOECR_HDF5_DYNAMIC").is_some_and(|v| v != "0")
        || std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux")
    {
        return;
    }
    let Some(archive) = hdf5_archive() else {
        println!("cargo::warning=no static libhdf5 found: nanoecr links the shared library");
        return;
    };
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else { return };
    let dir = out.join("hdf5-static");
    let link = dir.join("libhdf5.a");
    let _ = std::fs::remove_file(&link);
    if std::fs::create_dir_all(&dir).is_err() || std::os::unix::fs::symlink(&archive, &link).is_err() {
        println!("cargo::warning=could not stage {}: nanoecr links the shared libhdf5", archive.display());
        return;
    }
    println!("cargo::rerun-if-changed={}", archive.display());
    println!("cargo::rustc-link-search=native={}", dir.display());
    // What the archive's objects call: zlib and libsz (deflate and szip filters), libm. After
    // every object on the link line, so `--as-needed` keeps them.
    for lib in ["-lsz", "-lz", "-lm"] {
        println!("cargo::rustc-link-arg={lib}");
    }
    // For the test that checks what the binary loads.
    println!("cargo::rustc-env=NANOECR_HDF5_STATIC={}", archive.display());
}

/// `libhdf5.a` next to the shared library hdf5-metno-sys will find: `$HDF5_DIR/lib`, else the
/// `-L` directories pkg-config gives for `hdf5` (Debian's `.pc` has no `libdir` variable).
fn hdf5_archive() -> Option<PathBuf> {
    let dirs: Vec<PathBuf> = match std::env::var_os("HDF5_DIR") {
        Some(d) => vec![Path::new(&d).join("lib")],
        None => {
            let out = Command::new("pkg-config").args(["--libs-only-L", "hdf5"]).output().ok()?;
            let flags = String::from_utf8(out.stdout).ok()?;
            flags.split_whitespace().filter_map(|f| f.strip_prefix("-L")).map(PathBuf::from).collect()
        }
    };
    dirs.into_iter().map(|d| d.join("libhdf5.a")).find(|a| a.is_file())
}
