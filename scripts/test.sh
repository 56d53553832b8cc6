#!/usr/bin/env bash
# The whole test suite: host unit tests, then every run scenario's checks
# (kernel and user level booted in QEMU). Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

echo "test: host unit tests (cargo test)"
cargo test --release

echo "test: boot scenarios (cargo run -p run -- suite)"
cargo run --release -q -p run -- suite
