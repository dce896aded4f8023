#!/bin/sh
# Prints N (default 1) distinct TCP ports that are free on 127.0.0.1 right now, one a line.
# All are bound at once before any is released, so they never repeat within one call.
exec /usr/bin/python3 -c '
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print("\n".join(str(s.getsockname()[1]) for s in socks))
' "${1:-1}"
