//! `smu-shim` (a source-measure unit alone) built inside the HIL test package, so the tests can
//! locate it with `env!("CARGO_BIN_EXE_hil-smu-shim")`.

fn main() -> anyhow::Result<()> {
    smu_shim::cli::main()
}
