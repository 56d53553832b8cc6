# boot-bench: tern-vmm as a Linux component on CPU 0; the benchmark VM (1 vCPU, 1 GiB),
# its kernel and initramfs are boot modules it reads as files under /vm
[[component]]
name = "vmm"
kind = "linux"
binary = "tern-vmm"
memory = "1300M"
cpus = [0]
args = ["/vm/vm.toml"]
vfs = [
    "/vm/vm.toml = rom vm.toml",
    "/vm/vmlinuz = rom vmlinuz",
    "/vm/initramfs.cpio = rom initramfs",
]
