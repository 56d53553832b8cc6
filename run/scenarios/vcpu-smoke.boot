# vcpu-smoke: the native VMM's built-in vCPU check, next to a component that keeps running
[[component]]
name = "vmm"
binary = "vmm-native"
memory = "8M"
args = ["--smoke"]

[[component]]
name = "ticker"
memory = "2M"
ioports = ["0x40-0x43"]
irqs = [0]
args = ["--ticks", "50"]
