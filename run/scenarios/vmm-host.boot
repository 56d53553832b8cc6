# vmm-host: the std VMM check as a Linux component on two CPUs; its guests are
# boot modules it reads as files under /rom
[[component]]
name = "vmm"
kind = "linux"
binary = "vmm-host-check"
memory = "96M"
cpus = [0, 1]
args = ["--memory", "16", "--max-exits", "200000",
        "/rom/modes", "/rom/mmio", "/rom/hlt-irq", "/rom/recall", "/rom/smp:2", "/rom/high-memory"]
vfs = [
    "/rom/modes = rom modes",
    "/rom/mmio = rom mmio",
    "/rom/hlt-irq = rom hlt-irq",
    "/rom/recall = rom recall",
    "/rom/smp = rom smp",
    "/rom/high-memory = rom high-memory",
]

# then 2 GiB of guest RAM, half of it above 4 GiB: more than the machine has
# below 4 GiB, so the roottask hands out physical memory above 4 GiB too
[[component]]
name = "vmm-big"
kind = "linux"
binary = "vmm-host-check"
memory = "2100M"
cpus = [0, 1]
args = ["--memory", "1024", "--high-memory", "1024", "/rom/high-memory"]
vfs = ["/rom/high-memory = rom high-memory"]
after = "vmm"
