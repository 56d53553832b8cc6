# guest-tests: the native VMM runs every test guest, the hostile ones included,
# next to an echo server it calls at the end
[[component]]
name = "pong"
binary = "ipc-pong"
memory = "2M"
cpu = 0
provides = ["echo"]

[[component]]
name = "vmm"
binary = "vmm-native"
memory = "40M"
cpu = 0
uses = ["echo"]
args = ["--max-exits", "50000", "--echo-check",
        "modes", "cpuid", "msr", "pio", "pio-device", "mmio", "exceptions", "hlt-irq",
        "irq-window", "tsc-offset", "smp:2", "recall",
        "triple-fault", "exit-flood", "unmapped-memory", "invalid-state", "cpuid"]
