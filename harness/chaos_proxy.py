"""A TCP proxy between the pipeline and its broker, for faults of the network itself.

The processes connect to the proxy's port on 127.0.0.1 instead of the broker's; the proxy
forwards bytes both ways and, when told, cuts: every connection now (`cut_all`), every
connection every 0.5 to 3 s for a while (`flap`), or new connections in the middle of the AMQP
handshake (`cut_handshakes`: after the broker's Connection.Start, as a network that drops
during login would). The broker itself stays up and reachable throughout.

It runs an asyncio loop on a thread of its own; every method is safe from the test's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit, urlunsplit

CHUNK = 65536  # bytes read at a time


class ChaosProxy:
    """Listens on 127.0.0.1 (a free port), forwards to `target_host:target_port`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="chaos-proxy", daemon=True
        )
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._handshake_cuts = 0  # connections still to cut during the handshake
        self._server: asyncio.Server | None = None
        self._flapping: asyncio.Task[None] | None = None
        self.port = 0
        self.connections = 0  # accepted so far
        self.cuts = 0  # connections cut so far

    @classmethod
    def in_front_of(cls, amqp_url: str) -> ChaosProxy:
        parts = urlsplit(amqp_url)
        proxy = cls(parts.hostname or "localhost", parts.port or 5672)
        proxy.start()
        return proxy

    def url(self, amqp_url: str) -> str:
        """`amqp_url` pointed at the proxy instead of the broker (user, password, vhost kept)."""
        parts = urlsplit(amqp_url)
        credentials = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return urlunsplit(parts._replace(netloc=f"{credentials}127.0.0.1:{self.port}"))

    # -- control, from any thread ----------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self._server = self._run(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        self._run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def cut_all(self) -> int:
        """Cut every open connection now; how many were cut."""
        return self._run(self._cut_all())

    def cut_handshakes(self, count: int) -> None:
        """Cut the next `count` new connections right after the broker's first frame."""
        self._loop.call_soon_threadsafe(setattr, self, "_handshake_cuts", count)

    def flap(
        self, seconds: float, shortest: float = 0.5, longest: float = 3.0, seed: int = 0
    ) -> None:
        """Cut every connection every `shortest` to `longest` s (at random), for `seconds`."""
        self._run(self._start_flapping(seconds, shortest, longest, random.Random(seed)))

    @property
    def flapping(self) -> bool:
        return self._flapping is not None and not self._flapping.done()

    # -- the loop's side -------------------------------------------------------------------------

    def _run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)

    async def _accept(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        try:
            broker_reader, broker = await asyncio.open_connection(*self._target)
        except OSError:
            client.close()
            return
        link = (client, broker)
        self._links.add(link)
        cut_in_handshake = self._handshake_cuts > 0
        if cut_in_handshake:
            self._handshake_cuts -= 1
        await asyncio.gather(
            self._pipe(client_reader, broker, link, cut_after_first=False),
            self._pipe(broker_reader, client, link, cut_after_first=cut_in_handshake),
        )

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
        *,
        cut_after_first: bool,
    ) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
                if cut_after_first:
                    break
        self._close(link, cut=cut_after_first)

    def _close(self, link: tuple[asyncio.StreamWriter, asyncio.StreamWriter], *, cut: bool) -> None:
        if link in self._links:
            self._links.discard(link)
            self.cuts += cut
        for writer in link:
            with contextlib.suppress(OSError, RuntimeError):
                writer.transport.abort()  # a reset, as a dropped network gives

    async def _cut_all(self) -> int:
        links = list(self._links)
        for link in links:
            self._close(link, cut=True)
        return len(links)

    async def _start_flapping(
        self, seconds: float, shortest: float, longest: float, rng: random.Random
    ) -> None:
        async def flap() -> None:
            end = self._loop.time() + seconds
            while self._loop.time() < end:
                await asyncio.sleep(rng.uniform(shortest, longest))
                await self._cut_all()

        self._flapping = self._loop.create_task(flap())

    async def _stop(self) -> None:
        if self._flapping is not None:
            self._flapping.cancel()
        if self._server is not None:
            self._server.close()
        await self._cut_all()
