#!/usr/bin/env bash
# Boots every guest on plain QEMU TCG (no VMM, no test device) and checks what a bare
# machine must show: PASS for the bare guests, "test device absent" for the device
# guests, the hostile acts for the hostile guests. About 20 s. Usage:
#   guest-tests/qemu-check.sh            (from anywhere; builds first)
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/tgt/guests}
cargo build -q --release --target x86_64-unknown-none -p guest-tests --bins || exit 2
bin="$CARGO_TARGET_DIR/x86_64-unknown-none/release"
log=$(mktemp)
modules=$(mktemp -d)
trap 'rm -rf "$log" "$modules"' EXIT
failed=0

# check NAME STATUS LINE [SECONDS [QEMU ARGS...]]: QEMU must end with STATUS (124 = still
# running after SECONDS, killed) and the serial output must contain LINE.
check() {
    local name=$1 want_status=$2 want_line=$3 seconds=${4:-20}
    timeout "$seconds" qemu-system-x86_64 -machine q35 -accel tcg -cpu max -m 64 \
        -display none -monitor none -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=4 \
        -serial "file:$log" -kernel "$bin/$name" "${@:5}" 2>/dev/null
    local status=$?
    if [[ $status == "$want_status" ]] && grep -qF -- "$want_line" "$log"; then
        echo "ok   $name (status $status: $want_line)"
    else
        echo "FAIL $name: status $status (want $want_status), want line: $want_line"
        sed 's/^/     | /' "$log"
        failed=1
    fi
}

for g in modes cpuid pio exceptions bench-pio; do
    check "$g" 33 "guest-test $g: PASS"
done
# QEMU's Multiboot information, with two modules of the contents multiboot-info expects.
for i in 0 1; do printf 'tern module %s\n' $i > "$modules/m$i"; done
check multiboot-info 33 "guest-test multiboot-info: PASS" 20 \
    -append "modules=2" -initrd "$modules/m0 module-0,$modules/m1 module-1"
# QEMU 7.2 TCG ignores unknown MSRs instead of raising #GP: everything before that check passes.
check msr 35 "guest-test msr: FAIL: RDMSR 0x40000f00: expected #GP(0), got None"
for g in pio-device mmio hlt-irq irq-window tsc-offset recall invalid-state; do
    check "$g" 35 "guest-test $g: FAIL: test device absent"
done
check triple-fault 0 "triple-fault: loading a null IDT"
check unmapped-memory 35 "guest-test unmapped-memory: FAIL: write to unmapped memory came back"
check exit-flood 124 "exit-flood: flooding" 3
if grep -q "guest-test" "$log"; then echo "FAIL exit-flood printed a verdict"; failed=1; fi
echo "smp: not run (QEMU starts only vCPU 0; it needs the VMM's start protocol)"
exit $failed
