# linux-shell (the main job): tern-vmm as a Linux component on CPUs 1 and 2 (CPU 0 runs no
# guest: run/scenarios/README.md, "CPU 0 and QEMU TCG"); the console's input goes to its
# standard input, which the VM's COM1 reads
terminal = "vmm"

[[component]]
name = "vmm"
kind = "linux"
binary = "tern-vmm"
memory = "1400M"
cpus = [1, 2]
args = ["/vm/vm.toml"]
vfs = [
    "/vm/vm.toml = rom vm.toml",
    "/vm/vmlinuz = rom vmlinuz",
    "/vm/initramfs.cpio = rom initramfs",
    "/vm/disk.img = rom disk.img",
    "/dev/console = terminal",
]
stdin = "/dev/console"
