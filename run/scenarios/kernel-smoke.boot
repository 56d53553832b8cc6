# kernel-smoke: the components the roottask starts
[[component]]
name = "pong"
binary = "ipc-pong"
memory = "2M"
cpu = 0
provides = ["echo"]

[[component]]
name = "ping"
binary = "ipc-ping"
memory = "2M"
cpu = 0
args = ["--calls", "10000"]
uses = ["echo"]

[[component]]
name = "ticker"
memory = "2M"
ioports = ["0x40-0x43"]
irqs = [0]
args = ["--ticks", "200"]
