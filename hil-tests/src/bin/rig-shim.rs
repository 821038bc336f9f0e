//! The firmware shim (`loadframe-shim`, with `--smu` also the source-measure unit) built inside
//! the HIL test package, so the tests can locate it with `env!("CARGO_BIN_EXE_rig-shim")`.

fn main() -> anyhow::Result<()> {
    loadframe_shim::main()
}
