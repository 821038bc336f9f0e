//! `loadframe-shim`: see the library docs (`loadframe_shim`) and firmware-shims/README.md.

fn main() -> anyhow::Result<()> {
    loadframe_shim::main()
}
