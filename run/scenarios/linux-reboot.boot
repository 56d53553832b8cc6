# linux-reboot: tern-vmm as a Linux component on CPU 0; its VM configuration, the guest's
# kernel, initramfs and disk are boot modules it reads as files under /vm
[[component]]
name = "vmm"
kind = "linux"
binary = "tern-vmm"
memory = "400M"
cpus = [0]
args = ["/vm/vm.toml"]
vfs = [
    "/vm/vm.toml = rom vm.toml",
    "/vm/vmlinuz = rom vmlinuz",
    "/vm/initramfs.cpio = rom initramfs",
    "/vm/disk.img = rom disk.img",
]
