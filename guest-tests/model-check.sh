#!/usr/bin/env bash
# Runs the guests that need the VMM's side of the protocol (test device, injected
# interrupts, TSC offset, second vCPU) against model/model.py, a reference model of
# that side on the Unicorn emulator, plus three deliberately broken models that the
# guests must catch. About 10 s. Needs Python 3 and PyPI (first run: a venv with
# unicorn 2.1.4 and pyelftools under $CARGO_TARGET_DIR/model-venv).
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/tgt/guests}
venv="$CARGO_TARGET_DIR/model-venv"
if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c "import unicorn, elftools" 2>/dev/null; then
    python3 -m venv "$venv" && "$venv/bin/pip" install -q unicorn==2.1.4 pyelftools || exit 2
fi
cargo build -q --release --target x86_64-unknown-none -p guest-tests --bins || exit 2
bin="$CARGO_TARGET_DIR/x86_64-unknown-none/release"
failed=0

# check NAME STATUS LINE [MODEL ARGS...]: the model must exit with STATUS (0 PASS,
# 1 FAIL, 2 other) and print LINE.
check() {
    local name=$1 want_status=$2 want_line=$3
    shift 3
    local out
    out=$("$venv/bin/python" guest-tests/model/model.py "$bin/$name" "$@" 2>&1)
    local status=$?
    if [[ $status == "$want_status" ]] && grep -qF -- "$want_line" <<<"$out"; then
        echo "ok   $name $* ($want_line)"
    else
        echo "FAIL $name $*: status $status (want $want_status), want line: $want_line"
        sed 's/^/     | /' <<<"$out"
        failed=1
    fi
}

for g in pio-device mmio hlt-irq irq-window tsc-offset recall cpuid pio modes; do
    check "$g" 0 "guest-test $g: PASS"
done
check smp 0 "guest-test smp: PASS" --vcpus 2 --chunk 200
check invalid-state 2 "model: INVALID_STATE: guest stopped"
check irq-window 1 "(after STI and one instruction)" --mutate no-shadow
check irq-window 1 "arrived with IF = 0" --mutate ignore-if
check tsc-offset 1 "RDTSC jumped by" --mutate no-tsc
exit $failed
