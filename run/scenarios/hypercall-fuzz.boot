# hypercall-fuzz: one component makes random hypercalls; the kernel must survive
[[component]]
name = "fuzz"
binary = "hypercall-fuzz"
memory = "2M"
args = ["--seed", "42", "--count", "100000"]
