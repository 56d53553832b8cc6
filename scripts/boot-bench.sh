#!/usr/bin/env bash
# The boot benchmark (docs/benchmarks.md): Debian's kernel in tern-vmm to the guest's /init,
# on Tern and with tern-vmm hosted on nested Linux KVM, under the same QEMU (TCG, one CPU),
# back to back. Runs each scenario RUNS times (default 2):
#   boot-bench, boot-bench-kvm             -icount shift=0: TSC ticks count instructions
#   boot-bench-wall, boot-bench-kvm-wall   plain TCG: wall time
# and prints, per run, the milestones tern-vmm reports (ms and TSC ticks since it started),
# then the exits per reason at the guest's milestone and the ratios Tern / KVM.
# Usage: scripts/boot-bench.sh [RUNS]            (needs scripts/setup.sh once; ~4 min per run here)
#        scripts/boot-bench.sh --report [RUNS]   the table again from the last run's logs
# The serial logs stay in build/boot-bench/SCENARIO.RUN.log.
set -euo pipefail
cd "$(dirname "$0")/.."
report_only=false
if [ "${1:-}" = --report ]; then
    report_only=true
    shift
fi
runs=${1:-2}
case $runs in '' | *[!0-9]* | 0) echo "usage: $0 [--report] [RUNS]  (RUNS: a whole number >= 1)" >&2; exit 2 ;; esac

out=build/boot-bench
scenarios="boot-bench boot-bench-kvm boot-bench-wall boot-bench-kvm-wall"
mkdir -p "$out"
$report_only || rm -f "$out"/*.log

for scenario in $scenarios; do
    $report_only && break
    for run in $(seq 1 "$runs"); do
        echo "boot-bench: $scenario, run $run of $runs" >&2
        if ! cargo run --release -q -p run -- "$scenario" --accel tcg >"$out/$scenario.run.txt" 2>&1; then
            tail -n 30 "$out/$scenario.run.txt" >&2
            echo "boot-bench: $scenario failed (log: $out/$scenario.run.txt)" >&2
            exit 1
        fi
        tr -d '\r' <"build/run/$scenario/qemu-1cpu.serial.log" >"$out/$scenario.$run.log"
    done
done

# One row per run: variant stack run ram-backed guest-entry guest-1 (ms, ticks) and exits.
awk '
function field(line, n,    w) { split(line, w, " "); return w[n] }
FNR == 1 {
    n = split(FILENAME, p, "/"); split(p[n], q, ".")
    name = q[1]; run = q[2]
    stack = (name ~ /-kvm/) ? "kvm" : "tern"
    variant = (name ~ /-wall/) ? "wall" : "icount"
    key = variant " " stack " " run
    keys[++nkeys] = key
}
/^tern-vmm: milestone [a-z0-9-]+: [0-9.]+ ms, / {
    mark = field($0, 3); sub(/:$/, "", mark)
    ms[key, mark] = field($0, 4); ticks[key, mark] = field($0, 6); idle[key, mark] = field($0, 15)
}
/^tern-vmm: milestone guest-1: exits / {
    reason = field($0, 5); sub(/:$/, "", reason)
    exits[key, reason] = field($0, 6)
    if (!(reason in seen)) { seen[reason] = 1; reasons[++nreasons] = reason }
}
function mean(variant, stack, what, mark,    i, s, c, w) {
    s = 0; c = 0
    for (i = 1; i <= nkeys; i++) {
        split(keys[i], w, " ")
        if (w[1] == variant && w[2] == stack) {
            s += (what == "ms") ? ms[keys[i], mark] : (what == "ticks") ? ticks[keys[i], mark] : (what == "idle") ? idle[keys[i], mark] : exits[keys[i], mark]
            c++
        }
    }
    return c ? s / c : 0
}
function ratio(a, b) { return b ? sprintf("%.2f", a / b) : "-" }
END {
    printf "%-7s %-5s %3s  %14s %14s %12s %16s %12s %8s\n", "variant", "stack", "run", "ram-backed ms", "guest-entry ms", "init ms", "init TSC ticks", "idle ms", "exits"
    for (i = 1; i <= nkeys; i++) {
        k = keys[i]; split(k, w, " ")
        printf "%-7s %-5s %3s  %14s %14s %12s %16s %12s %8s\n", w[1], w[2], w[3], ms[k, "ram-backed"], ms[k, "guest-entry"], ms[k, "guest-1"], ticks[k, "guest-1"], idle[k, "guest-1"], exits[k, "total"]
    }
    print ""
    printf "%-22s %12s %12s %8s\n", "exits to init", "tern", "kvm", "tern/kvm"
    for (r = 1; r <= nreasons; r++) {
        t = mean("icount", "tern", "exits", reasons[r]); v = mean("icount", "kvm", "exits", reasons[r])
        printf "%-22s %12d %12d %8s\n", reasons[r], t, v, ratio(t, v)
    }
    print ""
    printf "%-40s %14s %14s %8s\n", "mean over runs", "tern", "kvm", "tern/kvm"
    split("icount ticks guest-1|icount ticks guest-entry|icount ticks ram-backed|icount idle guest-1|wall ms guest-1|wall ms guest-entry|wall ms ram-backed|wall idle guest-1", rows, "|")
    for (r = 1; r <= 8; r++) {
        split(rows[r], w, " ")
        t = mean(w[1], "tern", w[2], w[3]); v = mean(w[1], "kvm", w[2], w[3])
        label = (w[1] == "icount" ? "-icount: " : "plain TCG: ") (w[2] == "ticks" ? "TSC ticks" : w[2] == "idle" ? "vCPU idle ms" : "ms") " to " w[3]
        printf "%-40s %14.0f %14.0f %8s\n", label, t, v, ratio(t, v)
    }
}
' $(for s in $scenarios; do
    for run in $(seq 1 "$runs"); do echo "$out/$s.$run.log"; done
done)
