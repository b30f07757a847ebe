#!/usr/bin/env python3
"""A TCP proxy that holds every chunk DELAY seconds in each direction (a one-way latency),
for bench/wan.sh where the kernel has no `netem` qdisc. Order is kept per direction; nothing
limits the bytes in flight, so it behaves like a long fat pipe whose rate `tbf` sets.

Usage: delay_proxy.py LISTEN_HOST LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT DELAY_SECONDS
"""
import asyncio
import sys


async def pump(reader, writer, delay):
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def sender():
        while True:
            due, chunk = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if chunk is None:
                try:
                    writer.write_eof()
                except (OSError, RuntimeError):
                    pass
                return
            writer.write(chunk)
            await writer.drain()

    task = asyncio.create_task(sender())
    try:
        while True:
            chunk = await reader.read(256 * 1024)
            queue.put_nowait((loop.time() + delay, chunk or None))
            if not chunk:
                break
        await task
    except (ConnectionError, OSError):
        task.cancel()


async def handle(client_reader, client_writer, upstream, delay):
    try:
        up_reader, up_writer = await asyncio.open_connection(*upstream)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(
        pump(client_reader, up_writer, delay),
        pump(up_reader, client_writer, delay),
        return_exceptions=True,
    )
    for w in (up_writer, client_writer):
        try:
            w.close()
        except OSError:
            pass


async def main():
    host, port, up_host, up_port, delay = sys.argv[1:6]
    upstream = (up_host, int(up_port))
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, upstream, float(delay)), host, int(port)
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
