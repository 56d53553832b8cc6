# vcpu-smoke: the native VMM's built-in vCPU check
[[component]]
name = "vmm"
binary = "vmm-native"
memory = "8M"
args = ["--smoke"]

