# std-bench: the cost of a reflected system call beside a portal round trip
[[component]]
name = "echo-server"
kind = "linux"
binary = "std-echo"
memory = "16M"
args = ["server"]
provides = ["echo"]

[[component]]
name = "bench"
kind = "linux"
binary = "std-echo"
memory = "16M"
args = ["bench", "10000"]
uses = ["echo"]
