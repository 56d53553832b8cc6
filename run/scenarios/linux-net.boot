# linux-net: the switch on CPUs 1 and 2; two VMMs (tern-vmm), one per CPU, each booting
# Debian's kernel with the scenario's initramfs (run/scenarios/linux-net-guest.init as /init).
# CPU 0 runs no guest: run/scenarios/README.md, "CPU 0 and QEMU TCG".

[[component]]
name = "switch"
kind = "linux"
binary = "net-switch"
memory = "32M"
cpus = [1, 2]
args = ["lan"]
provides = ["lan-cpu1", "lan-cpu2"]

[[component]]
name = "vm1"
kind = "linux"
binary = "tern-vmm"
memory = "400M"
cpus = [1]
args = ["/vm/vm.toml"]
uses = ["lan-cpu1"]
vfs = [
    "/vm/vm.toml = rom vm1.toml",
    "/vm/vmlinuz = rom debian-kernel",
    "/vm/initramfs = rom initramfs",
]

[[component]]
name = "vm2"
kind = "linux"
binary = "tern-vmm"
memory = "400M"
cpus = [2]
args = ["/vm/vm.toml"]
uses = ["lan-cpu2"]
vfs = [
    "/vm/vm.toml = rom vm2.toml",
    "/vm/vmlinuz = rom debian-kernel",
    "/vm/initramfs = rom initramfs",
]
