"""A lossy UDP relay on loopback, for handshakes and transfers under loss (test helper).

:class:`LossyRelay` listens on one loopback port and forwards every datagram
to a server, through one socket per client address (so the server sees one
peer per client); replies go back the same way. Each direction drops
datagrams by its own seeded :class:`BurstLoss`, so the loss pattern (which
datagram of the sequence is dropped) is reproducible, though over real UDP the
sequence itself depends on timing.

Everything runs in the nursery that runs :meth:`LossyRelay.serve`; cancelling
it closes every socket.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import trio

MAX_CLIENTS = 64
MAX_DATAGRAM = 65536


@dataclass
class BurstLoss:
    """Loss in bursts of at most ``max_run`` datagrams in a row.

    With ``gilbert`` a two-state model loses ``rate`` of the datagrams in
    bursts of ``burst`` datagrams on average; without, each datagram is lost
    with probability ``rate`` (the QUIC interop runner's drop-rate model)."""

    rate: float
    burst: float = 3.0
    seed: int = 0
    max_run: int | None = None
    gilbert: bool = False
    dropped: int = 0
    forwarded: int = 0
    _rng: random.Random = field(init=False, repr=False)
    _in_burst: bool = field(default=False, init=False, repr=False)
    _run: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(f"burst-loss/{self.seed}")

    def drop(self) -> bool:
        lost = self._next()
        if lost:
            self.dropped += 1
        else:
            self.forwarded += 1
        return lost

    def _next(self) -> bool:
        lost = self._gilbert() if self.gilbert else self._rng.random() < self.rate
        if lost and (self.max_run is None or self._run < self.max_run):
            self._run += 1
            return True
        self._run = 0
        return False

    def _gilbert(self) -> bool:
        mean = max(self.burst, 1.0)
        if self._in_burst:
            if self._rng.random() < 1.0 / mean:
                self._in_burst = False
        elif self._rng.random() < self.rate / (mean * (1.0 - self.rate)):
            self._in_burst = True
        return self._in_burst


class LossyRelay:
    """Forwards datagrams between clients and ``server`` with losses."""

    def __init__(self, server: tuple[str, int], to_server: BurstLoss, to_client: BurstLoss) -> None:
        self.server = server
        self.to_server = to_server
        self.to_client = to_client
        self.port = 0
        self._front = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        self._backs: dict[tuple[str, int], trio.socket.SocketType] = {}

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        front = self._front
        try:
            await front.bind(("127.0.0.1", 0))
            self.port = front.getsockname()[1]
            async with trio.open_nursery() as nursery:
                task_status.started(self.port)
                while True:
                    data, address = await front.recvfrom(MAX_DATAGRAM)
                    back = self._backs.get(address)
                    if back is None:
                        if len(self._backs) >= MAX_CLIENTS:
                            continue
                        back = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
                        await back.bind(("127.0.0.1", 0))
                        await back.connect(self.server)
                        self._backs[address] = back
                        nursery.start_soon(self._replies, back, address)
                    if not self.to_server.drop():
                        await _send(back, data)
        finally:
            front.close()
            for back in self._backs.values():
                back.close()

    async def _replies(self, back: trio.socket.SocketType, client: tuple[str, int]) -> None:
        while True:
            try:
                data = await back.recv(MAX_DATAGRAM)
            except OSError:
                continue  # ICMP unreachable from a server that went away
            if not self.to_client.drop():
                await self._front.sendto(data, client)


async def _send(sock: trio.socket.SocketType, data: bytes) -> None:
    try:
        await sock.send(data)
    except OSError:
        pass  # the server is gone: as good as lost
