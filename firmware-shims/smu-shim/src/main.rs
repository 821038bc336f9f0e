//! `smu-shim`: a source-measure unit alone (see the library docs, `smu_shim::cli`, and
//! firmware-shims/README.md).

fn main() -> anyhow::Result<()> {
    smu_shim::cli::main()
}
