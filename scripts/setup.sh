#!/usr/bin/env bash
# Installs what nanoecr needs on a fresh Debian machine with a Rust toolchain, as root.
# Idempotent: each step checks first and does nothing when already satisfied.
set -euo pipefail

need_apt=()
dpkg -s libhdf5-dev >/dev/null 2>&1 || need_apt+=(libhdf5-dev)
command -v h5dump >/dev/null 2>&1 || need_apt+=(hdf5-tools)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v cyclictest >/dev/null 2>&1 || need_apt+=(rt-tests)   # the OS timing floor in `just bench` (cyclictest, oslat)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)     # headless browser for the `nanoecr ui` test
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: installing ${need_apt[*]} (apt)" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
# just (the task runner), h5py + numpy (independent reader in tests), nexusformat (NeXus check),
# pymodbus (independent Modbus client in HIL tests), scipy + powerlaw (the Python peer in bench/).
pip_pkgs=()
command -v just >/dev/null 2>&1 || pip_pkgs+=(rust-just)
# The probe's stderr is dropped: on a fresh machine a missing module is the expected answer, not an error.
$PY - 2>/dev/null <<'PYEOF' || pip_pkgs+=(h5py numpy nexusformat pymodbus scipy powerlaw)
import importlib, sys
for m in ("h5py", "numpy", "nexusformat", "pymodbus", "scipy", "powerlaw"):
    importlib.import_module(m)
PYEOF
# pymeasure + pyvisa + pyvisa-py: the independent SCPI client of the SMU shims' HIL tests
# (PyMeasure's Keithley2450 over pyvisa-py's raw TCP socket; no VISA library needed).
$PY - 2>/dev/null <<'PYEOF' || pip_pkgs+=(pymeasure pyvisa pyvisa-py)
import importlib
for m in ("pymeasure", "pyvisa", "pyvisa_py"):
    importlib.import_module(m)
PYEOF
if [ ${#pip_pkgs[@]} -gt 0 ]; then
    echo "setup: installing ${pip_pkgs[*]} (pip)" >&2
    $PY -m pip install -q --disable-pip-version-check --root-user-action=ignore "${pip_pkgs[@]}"
fi
command -v just >/dev/null 2>&1 || { echo "setup: just not on PATH after install" >&2; exit 1; }
# clippy and rustfmt ship with the toolchain here; add them only when missing.
command -v cargo-clippy >/dev/null 2>&1 && command -v rustfmt >/dev/null 2>&1 || rustup component add clippy rustfmt
