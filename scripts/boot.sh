#!/usr/bin/env bash
# The main job: installs what is missing, then boots the system in QEMU and checks it.
# Extra arguments go to the run tool (e.g. --interactive, --cpus 4, --emulator bochs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo run --release -q -p run -- kernel-smoke "$@"
