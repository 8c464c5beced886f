"""A TCP relay in front of a broker listener that holds every byte for a while: the fault
suite's slow broker. Clients reach it because the broker advertises the relay's port for
that listener (`invsync.localkafka.start(relay=...)`), so every request of theirs — fetches,
produce acknowledgements (changelog writes included), offset commits, group heartbeats —
is answered ``delay_s`` later than the broker answered it. Order is kept: each direction's
bytes leave in the order they came, each no earlier than ``delay_s`` after it arrived."""

from __future__ import annotations

import asyncio
import contextlib
import time


class DelayRelay:
    def __init__(self, listen_port: int, target_port: int, delay_s: float) -> None:
        self.listen_port = listen_port
        self.target_port = target_port
        self.delay_s = delay_s
        """Change it at any time: bytes arriving afterwards are held that long."""
        self.connections = 0
        self.held = 0
        """Chunks held back (``delay_s`` > 0 when they arrived)."""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.listen_port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            broker_r, broker_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.close()
            return
        self.connections += 1
        self._writers.update((client_w, broker_w))
        pumps = [
            asyncio.create_task(self._pump(client_r, broker_w)),
            asyncio.create_task(self._pump(broker_r, client_w)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            for writer in (client_w, broker_w):
                writer.close()
                self._writers.discard(writer)
            self._tasks.difference_update(pumps)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def release() -> None:
            while True:
                due, chunk = await held.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(chunk)
                await writer.drain()
                held.task_done()

        releaser = asyncio.create_task(release())
        try:
            while chunk := await reader.read(65536):
                self.held += self.delay_s > 0
                held.put_nowait((time.monotonic() + self.delay_s, chunk))
            await held.join()  # the peer closed: what it sent still goes, late
        except (ConnectionError, OSError):
            pass
        finally:
            releaser.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await releaser
