# linux-net: the switch on both CPUs; two VMMs (tern-vmm), one per CPU, each booting Debian's
# kernel with the scenario's initramfs (run/scenarios/linux-net-guest.init as /init).

[[component]]
name = "switch"
kind = "linux"
binary = "net-switch"
memory = "32M"
cpus = [0, 1]
args = ["lan"]
provides = ["lan-cpu0", "lan-cpu1"]

[[component]]
name = "vm1"
kind = "linux"
binary = "tern-vmm"
memory = "400M"
cpus = [0]
args = ["/vm/vm.toml"]
uses = ["lan-cpu0"]
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
cpus = [1]
args = ["/vm/vm.toml"]
uses = ["lan-cpu1"]
vfs = [
    "/vm/vm.toml = rom vm2.toml",
    "/vm/vmlinuz = rom debian-kernel",
    "/vm/initramfs = rom initramfs",
]
