# vcpu-bench: the native VMM runs bench-pio (100,000 port-I/O exits) once
[[component]]
name = "vmm"
binary = "vmm-native"
memory = "40M"
cpu = 0
args = ["--raw-bench", "bench-pio"]
