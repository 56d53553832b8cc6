# guest-tests-pc: every guest of guest-tests/ through tern-vmm (the PC machine, VM.toml) as a
# Linux component on Tern, one after another (`after`); each VMM gets the guest as /vm/guest and
# its VM configuration (run/scenarios/data/guest-tests-pc/) as /vm/vm.toml. pong answers
# throughout; ping calls it at the end: the kernel and the components survived every guest.

[[component]]
name = "pong"
binary = "ipc-pong"
memory = "2M"
cpu = 0
provides = ["echo"]

[[component]]
name = "modes"
kind = "linux"
binary = "tern-vmm"
memory = "64M"
cpus = [0, 1]
args = ["/vm/vm.toml"]
vfs = [
    "/vm/vm.toml = rom guest.toml",
    "/vm/guest = rom modes",
]

[[component]]
name = "cpuid"
kind = "linux"
binary = "tern-vmm"
memory = "64M"
cpus = [0, 1]
after = "modes"
args = ["/vm/vm.toml"]
vfs = [
    "/vm/vm.toml = rom guest.toml",
    "/vm/guest = rom cpuid",
]

[[component]]
name = "msr"
kind = "linux"
binary = "tern-vmm"
memory = "64M"
cpus = [0, 1]
after = "cpuid"
args = ["/vm/vm.toml"]
vfs = [
    "/vm/vm.toml = rom guest.toml",
    "/vm/guest = rom msr",
]

[[component]]
name = "pio"
kind = "linux"
binary = "tern-vmm"
memory = "64M"
cpus = [0, 1]
after = "msr"
args = ["/vm/vm.toml"]
vfs = [
    "/vm/vm.toml = rom guest.toml",
    "/vm/guest = rom pio",
]

[[component]]
name = "pio-device"
kind = "linux"
binary = "tern-vmm"
memory = "64M"
cpus = [0, 1]
after = "pio"
args = ["/vm/vm.toml"]
vfs = [
    "/vm/vm.toml = rom guest.toml",
    "/vm/guest = rom pio-device",
]

[[component]]
name = "mmio"
kind = "linux"
binary = "tern-vmm"
memory = "64M"
cpus = [0, 1]
after = "pio-device"
args = ["/vm/vm.toml"]
vfs = [
    "/vm/vm.toml = rom guest.toml",
    "/vm/guest = rom mmio",
]

[[component]]
name = "exceptions"
kind = "linux"
binary = "tern-vmm"
memory = "64M"
cpus = [0, 1]
after = "mmio"
args = ["/vm/vm.toml"]
vfs = [
    "/vm/vm.toml = rom guest.toml",
    "/vm/guest = rom exceptions",
]

[[component]]
name = "hlt-irq"
kind = "linux"
binary = "tern-vmm"
memory = "64M"
cpus = [0, 1]
after = "exceptions"
args = ["/vm/vm.toml"]
vfs = [
    "/vm/vm.toml = rom guest.toml",
    "/vm/guest = rom hlt-irq",
]

[[component]]
name = "irq-window"
kind = "linux"
binary = "tern-vmm"
memory = "64M"
cpus = [0, 1]
after = "hlt-irq"
args = ["/vm/vm.toml"]
vfs = [
    "/vm/vm.toml = rom guest.toml",
    "/vm/guest = rom irq-window",
]

[[component]]
name = "tsc-offset"
kind = "linux"
binary = "tern-vmm"
memory = "64M"
cpus = [0, 1]
after = "irq-window"
args = ["/vm/vm.toml"]
vfs = [
    "/vm/vm.toml = rom guest.toml",
    "/vm/guest = rom tsc-offset",
]

[[component]]
name = "smp"
kind = "linux"
binary = "tern-vmm"
memory = "64M"
cpus = [0, 1]
after = "tsc-offset"
args = ["/vm/vm.toml"]
vfs = [
    "/vm/vm.toml = rom smp.toml",
    "/vm/guest = rom smp",
]

[[component]]
name = "recall"
kind = "linux"
binary = "tern-vmm"
memory = "64M"
cpus = [0, 1]
after = "smp"
args = ["/vm/vm.toml"]
vfs = [
    "/vm/vm.toml = rom guest.toml",
    "/vm/guest = rom recall",
]

[[component]]
name = "high-memory"
kind = "linux"
binary = "tern-vmm"
memory = "3200M"
cpus = [0, 1]
after = "recall"
args = ["/vm/vm.toml"]
vfs = [
    "/vm/vm.toml = rom high-memory.toml",
    "/vm/guest = rom high-memory",
]

[[component]]
name = "multiboot-info"
kind = "linux"
binary = "tern-vmm"
memory = "64M"
cpus = [0, 1]
after = "high-memory"
args = ["/vm/vm.toml"]
vfs = [
    "/vm/vm.toml = rom multiboot-info.toml",
    "/vm/guest = rom multiboot-info",
    "/vm/module-0 = rom module-0",
    "/vm/module-1 = rom module-1",
]

[[component]]
name = "virtio-hostile"
kind = "linux"
binary = "tern-vmm"
memory = "128M"
cpus = [0, 1]
after = "multiboot-info"
args = ["/vm/vm.toml"]
vfs = [
    "/vm/vm.toml = rom hostile.toml",
    "/vm/guest = rom virtio-hostile",
    "/vm/disk.img = rom disk.img",
]

[[component]]
name = "mmio-nowhere"
kind = "linux"
binary = "tern-vmm"
memory = "128M"
cpus = [0, 1]
after = "virtio-hostile"
args = ["/vm/vm.toml"]
vfs = [
    "/vm/vm.toml = rom hostile.toml",
    "/vm/guest = rom mmio-nowhere",
    "/vm/disk.img = rom disk.img",
]

[[component]]
name = "irq-storm"
kind = "linux"
binary = "tern-vmm"
memory = "128M"
cpus = [0, 1]
after = "mmio-nowhere"
args = ["/vm/vm.toml"]
vfs = [
    "/vm/vm.toml = rom hostile.toml",
    "/vm/guest = rom irq-storm",
    "/vm/disk.img = rom disk.img",
]

[[component]]
name = "triple-fault"
kind = "linux"
binary = "tern-vmm"
memory = "64M"
cpus = [0, 1]
after = "irq-storm"
args = ["/vm/vm.toml"]
vfs = [
    "/vm/vm.toml = rom guest.toml",
    "/vm/guest = rom triple-fault",
]

[[component]]
name = "exit-flood"
kind = "linux"
binary = "tern-vmm"
memory = "64M"
cpus = [0, 1]
after = "triple-fault"
args = ["/vm/vm.toml"]
vfs = [
    "/vm/vm.toml = rom exit-flood.toml",
    "/vm/guest = rom exit-flood",
]

[[component]]
name = "unmapped-memory"
kind = "linux"
binary = "tern-vmm"
memory = "64M"
cpus = [0, 1]
after = "exit-flood"
args = ["/vm/vm.toml"]
vfs = [
    "/vm/vm.toml = rom guest.toml",
    "/vm/guest = rom unmapped-memory",
]

[[component]]
name = "invalid-state"
kind = "linux"
binary = "tern-vmm"
memory = "64M"
cpus = [0, 1]
after = "unmapped-memory"
args = ["/vm/vm.toml"]
vfs = [
    "/vm/vm.toml = rom guest.toml",
    "/vm/guest = rom invalid-state",
]

[[component]]
name = "ping"
binary = "ipc-ping"
memory = "2M"
cpu = 0
after = "invalid-state"
args = ["--calls", "1000"]
uses = ["echo"]
