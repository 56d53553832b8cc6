# std-runtime: Rust std programs (static musl binaries) as components.
# Order: selftest and the echo server start at boot; the echo client after the
# selftest; then three crashing programs, one after the other.

[[component]]
name = "selftest"
kind = "linux"
binary = "std-selftest"
memory = "640M"
cpus = [0, 1]
args = ["--exit", "7"]
env = ["HOME=/tmp", "LANG=C"]
vfs = [
    "/rom/test-data = rom test-data",
    "/tmp = ram 1M",
]

[[component]]
name = "echo-server"
kind = "linux"
binary = "std-echo"
memory = "16M"
args = ["server"]
provides = ["echo"]

[[component]]
name = "echo-client"
kind = "linux"
binary = "std-echo"
memory = "16M"
args = ["client", "1000"]
uses = ["echo"]
after = "selftest"

[[component]]
name = "crash-null"
kind = "linux"
binary = "std-crash"
memory = "32M"
args = ["null"]
after = "echo-client"

[[component]]
name = "crash-abort"
kind = "linux"
binary = "std-crash"
memory = "32M"
args = ["abort"]
after = "crash-null"

[[component]]
name = "crash-stack"
kind = "linux"
binary = "std-crash"
memory = "32M"
args = ["stack"]
after = "crash-abort"

# the server is still serving after all of that
[[component]]
name = "echo-again"
kind = "linux"
binary = "std-echo"
memory = "16M"
args = ["client", "3"]
uses = ["echo"]
after = "crash-stack"
