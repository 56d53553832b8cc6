# vcpu-shootdown: the native VMM's revocation check (two CPUs)
[[component]]
name = "vmm"
binary = "vmm-native"
memory = "8M"
args = ["--shootdown"]
