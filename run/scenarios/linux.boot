# linux: tern-vmm as a Linux component on CPUs 1 and 2 (vCPU n on its n-th CPU); its VM
# configuration, the guest's kernel, initramfs and disk are boot modules it reads as
# files under /vm. CPU 0 runs no guest: QEMU's TCG races on CPU 0's nested-paging flag
# (run/scenarios/README.md, "CPU 0 and QEMU TCG").
[[component]]
name = "vmm"
kind = "linux"
binary = "tern-vmm"
memory = "5400M"
cpus = [1, 2]
args = ["/vm/vm.toml"]
vfs = [
    "/vm/vm.toml = rom vm.toml",
    "/vm/vmlinuz = rom vmlinuz",
    "/vm/initramfs.cpio = rom initramfs",
    "/vm/disk.img = rom disk.img",
]
