#!/usr/bin/env bash
# The main job: installs what is missing, then boots Tern in QEMU with tern-vmm running Debian's
# stock kernel to a shell. Without a terminal (or in CI) it types a command and `poweroff` and
# checks the output; with --interactive the guest's shell is yours (poweroff ends it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo run --release -q -p run -- linux-shell "$@"
