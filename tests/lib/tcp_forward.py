#!/usr/bin/python3
"""A TCP forwarder for tests: accepts on each LISTEN address and copies bytes both ways
to TARGET (a new connection per accepted one). Tests use it to let processes in another
network namespace reach a server that listens only on 127.0.0.1 of this one, over an
address of a veth pair (as a web host reaches its database over the network).

  tcp_forward.py TARGET_HOST:PORT LISTEN_HOST:PORT [LISTEN_HOST:PORT ...]

Prints "ready" once every address listens. SIGTERM ends it (and every connection).
Standard library only."""
import asyncio
import signal
import sys


def addr(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


async def pump(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.transport.abort()


async def main():
    target = addr(sys.argv[1])

    async def handle(cr, cw):
        try:
            tr, tw = await asyncio.open_connection(*target)
        except OSError:
            cw.transport.abort()
            return
        await asyncio.gather(pump(cr, tw), pump(tr, cw))

    servers = [await asyncio.start_server(handle, *addr(a), reuse_address=True, backlog=1024) for a in sys.argv[2:]]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for s in servers:
        s.close()


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    asyncio.run(main())
