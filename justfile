# The recipes people type. `scripts/setup.sh` installs what they need (README).

set shell := ["bash", "-euo", "pipefail", "-c"]

# A full simulated test (the paper's 6000 µN trapezoid, real time) that writes an HDF5 run.
# Builds nanoecrd too, so that with target/release on PATH the README's daemon line works.
demo *ARGS:
    cargo build --release -q -p nanoecr-cli -p nanoecr-daemon
    cargo run --release -q -p nanoecr-cli -- run config/demo.toml {{ARGS}}

# Everything CI runs: format, lints, the test suite, the hardware-in-the-loop tests.
test: lint
    cargo test --workspace --exclude nanoecr-hil-tests
    cargo test -p nanoecr-hil-tests -- --test-threads=1

# Format check and clippy with warnings as errors.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Hardware-in-the-loop tests only (daemon against the firmware shims over real transports).
hil:
    cargo test -p nanoecr-hil-tests -- --test-threads=1

# Benchmarks (docs/performance.md): prints one table and writes it to bench/results/latest.json.
# About 17 minutes (the rt section alone ≈ 7: `--only rt`, `--rt-runs 20,10,10 --rt-seconds 5`);
# `just bench --quick` is a short smoke run, `--only timing,peer` picks sections,
# `--markdown FILE` also writes the table as Markdown.
bench *ARGS:
    cargo run --release -p nanoecr-bench -- --out bench/results/latest.json {{ARGS}}

# Regenerate docs/accuracy.md: detection and fit accuracy (example `accuracy`, a few minutes),
# then the robustness matrix of spike shapes × noise families × rates, nanoecr against
# bench/peers/peer.py (example `matrix`, about 15 minutes on 2 cores; needs the peer's Python
# packages). `just accuracy --quick` runs a small matrix and prints it instead.
accuracy *ARGS:
    if [[ " {{ARGS}} " != *" --quick "* ]]; then cargo run --release -q -p nanoecr-analysis --example accuracy; fi
    cargo run --release -q -p nanoecr-analysis --example matrix -- {{ARGS}}

# Analyse run files: `just analyze runs/*.h5`.
analyze +FILES:
    cargo run --release -q -p nanoecr-cli -- analyze {{FILES}}

# libFuzzer (cargo-fuzz) on the socket's request parser and the run-config loader, 10^6 inputs
# each by default (`just fuzz 100000` for fewer). Not part of `just test` or CI. Needs cargo-fuzz
# (installed here if missing) and a nightly feature, enabled on stable with RUSTC_BOOTSTRAP=1. New
# inputs go to fuzz/target/corpus; fuzz/corpus holds the seeds kept in the repo; a crash is saved
# under fuzz/artifacts/<target>/ and stops the recipe.
fuzz RUNS="1000000":
    cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
    for t in request config; do \
        mkdir -p fuzz/target/corpus/$t; \
        (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O $t target/corpus/$t corpus/$t -- -runs={{RUNS}} -max_len=8192); \
    done

# The paper's peak-load campaign on the simulated rig and its figure (docs/analysis.md): RUNS
# seeded runs (--fast) of each config/campaign/peak_*.toml into OUT/runs, then `analyze --out-dir
# OUT`: campaign.md and campaign_vs_stress.png/.svg (α, xc, p − n against peak stress next to the
# paper's values). Run k of a file gets seed 1000 × (the file's own seed) + k, so no two runs
# anywhere share a seed: the same seed would give the same magnitudes at every peak load.
# Refuses an OUT that already holds runs, so campaigns never mix.
campaign RUNS="4" OUT="campaign-report":
    cargo build --release -q -p nanoecr-cli
    test ! -e "{{OUT}}/runs" || { echo "{{OUT}}/runs exists: pick another OUT" >&2; exit 1; }
    mkdir -p "{{OUT}}/runs"
    for f in config/campaign/peak_*.toml; do \
        base=$(sed -n 's/^seed *= *\([0-9]*\).*/\1/p' "$f"); \
        for k in $(seq 1 {{RUNS}}); do \
            target/release/nanoecr run "$f" --fast --seed $((1000 * base + k)) --out-dir "{{OUT}}/runs" -q; \
        done; \
    done
    target/release/nanoecr analyze "{{OUT}}"/runs/*.h5 --out-dir "{{OUT}}"
