# net-switch: the switch serves a portal on each of its CPUs; "echo" sends
# from both CPUs, "ping" from CPU 1 only.

[[component]]
name = "switch"
kind = "linux"
binary = "net-switch"
memory = "32M"
cpus = [0, 1]
args = ["lan"]
provides = ["lan-cpu0", "lan-cpu1"]

[[component]]
name = "echo"
kind = "linux"
binary = "net-switch-peer"
memory = "16M"
cpus = [0, 1]
args = ["lan", "echo", "2", "1", "200"]
uses = ["lan-cpu0", "lan-cpu1"]

[[component]]
name = "ping"
kind = "linux"
binary = "net-switch-peer"
memory = "16M"
cpus = [1]
args = ["lan", "ping", "1", "2", "200"]
uses = ["lan-cpu1"]

# after the exchange: a client tries ports it was not given (port requests
# through the service portal, its own port's capabilities after its detach)
[[component]]
name = "intruder"
kind = "linux"
binary = "net-switch-peer"
memory = "16M"
cpus = [0]
args = ["lan", "intruder", "3", "1", "0"]
uses = ["lan-cpu0"]
after = "ping"
