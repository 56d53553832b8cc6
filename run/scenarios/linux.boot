# linux: tern-vmm as a Linux component on both CPUs (vCPU n on CPU n); its VM
# configuration, the guest's kernel, initramfs and disk are boot modules it reads as
# files under /vm
[[component]]
name = "vmm"
kind = "linux"
binary = "tern-vmm"
memory = "5400M"
cpus = [0, 1]
args = ["/vm/vm.toml"]
vfs = [
    "/vm/vm.toml = rom vm.toml",
    "/vm/vmlinuz = rom vmlinuz",
    "/vm/initramfs.cpio = rom initramfs",
    "/vm/disk.img = rom disk.img",
]
