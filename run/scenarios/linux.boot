# linux: tern-vmm as a Linux component; its VM configuration, the guest's kernel,
# initramfs and disk are boot modules it reads as files under /vm.
# Both vCPUs run on host CPU 0 for now: with vCPU 1 on host CPU 1 (cpus = [0, 1]) the
# guest boots slowly and hangs after its late initcalls (a cross-CPU problem of the
# kernel or the posix-server, not found yet; scenario vmm-host runs 2 vCPUs on 2 CPUs).
[[component]]
name = "vmm"
kind = "linux"
binary = "tern-vmm"
memory = "5400M"
cpus = [0]
args = ["/vm/vm.toml"]
vfs = [
    "/vm/vm.toml = rom vm.toml",
    "/vm/vmlinuz = rom vmlinuz",
    "/vm/initramfs.cpio = rom initramfs",
    "/vm/disk.img = rom disk.img",
]
