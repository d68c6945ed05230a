"""A TCP proxy on 127.0.0.1 that adds a fixed delay each way in front of a unix socket.

The kernel here has no netem: each chunk read is queued with a due time (now + delay) and
written when it is due, in both directions, so calls keep pipelining as on a real link.
Pointed at libvirtd's read-only socket, `test+tcp://127.0.0.1:PORT/ABS/node.xml` reaches the
daemon's test driver and `qemu+tcp://127.0.0.1:PORT/system` its QEMU driver, remotely.
"""

from __future__ import annotations

import asyncio
import threading
import time


class DelayProxy:
    """`with DelayProxy(socket_path, delay=0.010) as p: p.port`; runs in a thread of its own."""

    def __init__(self, target: str, delay: float):
        self.target, self.delay = target, delay
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> DelayProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        server = self._loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", 0, limit=1 << 20)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(self.target, limit=1 << 20)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await queue.get()
                if chunk is None:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(chunk)
                await writer.drain()
            writer.close()

        sender = asyncio.ensure_future(deliver())
        try:
            while chunk := await reader.read(1 << 16):
                queue.put_nowait((time.monotonic() + self.delay, chunk))
        finally:
            queue.put_nowait((0.0, None))
            await sender
