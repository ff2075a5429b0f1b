"""Stats objects with the original's field names, and the counters behind them.

``ServerStats`` is ``AsyncUnifiedServer.getStats()``'s shape; its
``uptime_ms`` really is the uptime (the original stored the wall clock
there). ``Http3ServerStats`` is the vendored HTTP/3 server's shape.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import trio


@dataclass(frozen=True)
class ServerStats:
    active_connections: int
    total_connections: int
    routes_registered: int
    middlewares_registered: int
    uptime_ms: int
    requests_handled: int = 0
    errors_count: int = 0


@dataclass(frozen=True)
class Http3ServerStats:
    connections_active: int
    connections_total: int
    requests_handled: int
    requests_per_second: float
    bytes_sent: int
    bytes_received: int
    errors_count: int
    start_time: int  # unix seconds, as the original


@dataclass
class StatsCounter:
    """Mutable counters, updated by the transports (one trio thread: no locks)."""

    started_monotonic: float | None = None
    started_unix: int = 0
    http1_active: int = 0
    http1_total: int = 0
    websockets_active: int = 0
    requests: dict[str, int] = field(default_factory=lambda: {"http1_1": 0, "http3": 0})
    errors: dict[str, int] = field(default_factory=lambda: {"http1_1": 0, "http3": 0})
    h3_bytes_sent: int = 0
    h3_bytes_received: int = 0
    h3_peak_connections: int = 0
    in_flight: int = 0
    _idle: trio.Event = field(default_factory=trio.Event)

    def request_started(self) -> None:
        self.in_flight += 1

    def request_finished(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()
            self._idle = trio.Event()

    async def wait_no_requests(self) -> None:
        """Until no request is in progress."""
        if self.in_flight:
            await self._idle.wait()

    def started(self) -> None:
        self.started_monotonic = time.monotonic()
        self.started_unix = int(time.time())

    def uptime(self) -> float:
        if self.started_monotonic is None:
            return 0.0
        return time.monotonic() - self.started_monotonic

    def http1_connection_opened(self) -> None:
        self.http1_active += 1
        self.http1_total += 1

    def http1_connection_closed(self) -> None:
        self.http1_active -= 1

    def websocket_opened(self) -> None:
        self.websockets_active += 1

    def websocket_closed(self) -> None:
        self.websockets_active -= 1

    def request_done(self, protocol: str, status: int) -> None:
        self.requests[protocol] = self.requests.get(protocol, 0) + 1
        if status >= 500:
            self.errors[protocol] = self.errors.get(protocol, 0) + 1

    def http3_bytes_sent(self, n: int) -> None:
        self.h3_bytes_sent += n

    def http3_bytes_received(self, n: int) -> None:
        self.h3_bytes_received += n

    def http3_connections(self, active: int) -> None:
        self.h3_peak_connections = max(self.h3_peak_connections, active)


__all__ = ["Http3ServerStats", "ServerStats", "StatsCounter"]
