# std-terminal: the console's input goes to a std program's standard input
terminal = "typist"

[[component]]
name = "typist"
kind = "linux"
binary = "std-echo"
memory = "16M"
args = ["lines"]
vfs = ["/dev/console = terminal"]
stdin = "/dev/console"
