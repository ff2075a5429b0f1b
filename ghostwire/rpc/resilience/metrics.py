"""Metrics records for RPC clients and servers, with a plain-data snapshot.

Theory of operation
-------------------
The client and the server update small mutable records as calls happen
(sans-IO: durations and transport figures are passed in, nothing here reads
a clock), and anyone may take a *snapshot*: frozen dataclasses of plain
values (str, int, float, tuples and dicts of them) that are safe to keep,
compare, log or turn into JSON with :func:`dataclasses.asdict`. The snapshot
is what ``client.metrics()`` and ``server.metrics()`` return, and the only
thing the Prometheus exporter (``prometheus.py``) reads.

* Per method (:class:`MethodMetrics`): calls started, calls in flight,
  calls that ended with each non-OK status (by status name), and a latency
  histogram with fixed bucket bounds (:data:`LATENCY_BUCKETS`, seconds, from
  0.5 ms to 10 s; the last bucket is +Inf), kept cumulative-ready as
  per-bucket counts plus the sum.
* Per endpoint of a client (:class:`EndpointMetrics`): connectivity state,
  reconnects, circuit state and times opened, smoothed RTT, bytes each way
  and packets lost, and connections open. Transport counters are those of
  the endpoint's open QUIC connections (``connection.statistics()``, one
  entry per connection key: an endpoint may have several) added to the
  totals of the connections before them, so they never go backwards across
  a reconnect.
* Per server (:class:`ServerMetrics`): connections open and accepted in
  total, calls in flight, and per-method records.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "LATENCY_BUCKETS",
    "ClientMetrics",
    "ClientSnapshot",
    "EndpointMetrics",
    "EndpointSnapshot",
    "HistogramSnapshot",
    "MethodMetrics",
    "MethodSnapshot",
    "ServerMetrics",
    "ServerSnapshot",
    "TransportStats",
    "status_name",
]

#: Upper bounds (seconds) of the latency histogram buckets; a last +Inf bucket follows.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


def status_name(status: int) -> str:
    """The label for a status: its enum name (``rpc.Status.UNAVAILABLE`` ->
    ``"UNAVAILABLE"``), or the number for a bare int."""
    name = getattr(status, "name", None)
    return name if isinstance(name, str) else str(int(status))


# -- snapshots (plain data) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """``counts[i]`` calls took at most ``bounds[i]`` seconds (and more than the
    bound before); ``counts[-1]`` is the +Inf bucket. Not cumulative."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float
    count: int

    def cumulative(self) -> tuple[int, ...]:
        """Counts of calls at or under each bound, +Inf last (Prometheus's ``le``)."""
        running = 0
        out = []
        for value in self.counts:
            running += value
            out.append(running)
        return tuple(out)


@dataclass(frozen=True, slots=True)
class MethodSnapshot:
    method: str
    calls: int
    in_flight: int
    errors: Mapping[str, int]
    latency: HistogramSnapshot


@dataclass(frozen=True, slots=True)
class EndpointSnapshot:
    address: str
    state: str
    reconnects: int
    circuit_state: str
    circuit_opened: int
    outstanding: int
    rtt: float | None
    bytes_sent: int
    bytes_received: int
    packets_lost: int
    connections: int = 0


@dataclass(frozen=True, slots=True)
class ClientSnapshot:
    methods: Mapping[str, MethodSnapshot]
    endpoints: Mapping[str, EndpointSnapshot]


@dataclass(frozen=True, slots=True)
class ServerSnapshot:
    connections: int
    connections_total: int
    calls_in_flight: int
    methods: Mapping[str, MethodSnapshot]


# -- live records ---------------------------------------------------------------


class MethodMetrics:
    """Calls of one method, on one side (client or server)."""

    def __init__(self, method: str, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        if list(bounds) != sorted(bounds) or len(set(bounds)) != len(bounds):
            raise ValueError("histogram bounds must be strictly increasing")
        self.method = method
        self._bounds = bounds
        self._buckets = [0] * (len(bounds) + 1)
        self._latency_sum = 0.0
        self._calls = 0
        self._in_flight = 0
        self._errors: dict[str, int] = {}

    def started(self) -> None:
        """A call began."""
        self._calls += 1
        self._in_flight += 1

    def finished(self, status: int, duration: float) -> None:
        """A call that :meth:`started` ended with ``status`` (0 is OK) after ``duration`` s."""
        self._in_flight = max(0, self._in_flight - 1)
        if status:  # not OK
            label = status_name(status)
            self._errors[label] = self._errors.get(label, 0) + 1
        if duration >= 0 and math.isfinite(duration):
            # bisect_left: a duration equal to a bound belongs to that bucket (le).
            self._buckets[bisect.bisect_left(self._bounds, duration)] += 1
            self._latency_sum += duration

    def snapshot(self) -> MethodSnapshot:
        return MethodSnapshot(
            method=self.method,
            calls=self._calls,
            in_flight=self._in_flight,
            errors=dict(self._errors),
            latency=HistogramSnapshot(
                bounds=self._bounds,
                counts=tuple(self._buckets),
                sum=self._latency_sum,
                count=sum(self._buckets),
            ),
        )


class TransportStats(Protocol):
    """The figures read from a QUIC connection (``ConnectionStats`` fits)."""

    @property
    def smoothed_rtt(self) -> float: ...
    @property
    def bytes_sent(self) -> int: ...
    @property
    def bytes_received(self) -> int: ...
    @property
    def packets_lost(self) -> int: ...


@dataclass(slots=True)
class _Counters:
    bytes_sent: int = 0
    bytes_received: int = 0
    packets_lost: int = 0


class EndpointMetrics:
    """One endpoint of a client. The pool keeps ``state``, ``circuit_state``
    and ``outstanding`` current (strings and an int, so this stays plain)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.state = "IDLE"
        self.circuit_state = "CLOSED"
        self.circuit_opened = 0
        self.outstanding = 0
        self.reconnects = 0
        self.rtt: float | None = None
        self.connections = 0  # open now (the pool keeps it current)
        self._previous = _Counters()
        self._current: dict[int, _Counters] = {}  # per open connection

    def observe_transport(self, stats: TransportStats, key: int = 0) -> None:
        """Record the figures of the connection named ``key`` (call as often as you like)."""
        if stats.smoothed_rtt > 0:
            self.rtt = stats.smoothed_rtt
        self._current[key] = _Counters(stats.bytes_sent, stats.bytes_received, stats.packets_lost)

    def connection_replaced(self, key: int = 0) -> None:
        """The connection named ``key`` ended: its figures join the totals."""
        current = self._current.pop(key, None)
        if current is not None:
            previous = self._previous
            self._previous = _Counters(
                previous.bytes_sent + current.bytes_sent,
                previous.bytes_received + current.bytes_received,
                previous.packets_lost + current.packets_lost,
            )

    def reconnected(self) -> None:
        """A connection was established again after one was lost."""
        self.reconnects += 1

    def snapshot(self) -> EndpointSnapshot:
        total = self._previous
        sent, received, lost = total.bytes_sent, total.bytes_received, total.packets_lost
        for current in self._current.values():
            sent += current.bytes_sent
            received += current.bytes_received
            lost += current.packets_lost
        return EndpointSnapshot(
            address=self.address,
            state=self.state,
            reconnects=self.reconnects,
            circuit_state=self.circuit_state,
            circuit_opened=self.circuit_opened,
            outstanding=self.outstanding,
            rtt=self.rtt,
            bytes_sent=sent,
            bytes_received=received,
            packets_lost=lost,
            connections=self.connections,
        )


class _MethodTable:
    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.records: dict[str, MethodMetrics] = {}  # read-only outside this class

    def method(self, name: str) -> MethodMetrics:
        record = self.records.get(name)
        if record is None:
            record = self.records[name] = MethodMetrics(name, self._bounds)
        return record

    def snapshot(self) -> dict[str, MethodSnapshot]:
        return {name: record.snapshot() for name, record in sorted(self.records.items())}


class ClientMetrics:
    """Everything ``client.metrics()`` reports."""

    def __init__(
        self, endpoints: Iterable[str] = (), *, bounds: tuple[float, ...] = LATENCY_BUCKETS
    ) -> None:
        self._methods = _MethodTable(bounds)
        self._endpoints: dict[str, EndpointMetrics] = {}
        for address in endpoints:
            self.endpoint(address)

    def method(self, name: str) -> MethodMetrics:
        """The record of method ``name`` ("service.method"), created on first use."""
        return self._methods.records.get(name) or self._methods.method(name)

    def endpoint(self, address: str) -> EndpointMetrics:
        """The record of endpoint ``address``, created on first use."""
        record = self._endpoints.get(address)
        if record is None:
            record = self._endpoints[address] = EndpointMetrics(address)
        return record

    def snapshot(self) -> ClientSnapshot:
        return ClientSnapshot(
            methods=self._methods.snapshot(),
            endpoints={a: e.snapshot() for a, e in sorted(self._endpoints.items())},
        )


@dataclass(slots=True)
class ServerMetrics:
    """Everything ``server.metrics()`` reports."""

    connections: int = 0
    connections_total: int = 0
    calls_in_flight: int = 0
    bounds: tuple[float, ...] = LATENCY_BUCKETS
    _methods: _MethodTable = field(init=False)

    def __post_init__(self) -> None:
        self._methods = _MethodTable(self.bounds)

    def connection_opened(self) -> None:
        self.connections += 1
        self.connections_total += 1

    def connection_closed(self) -> None:
        self.connections = max(0, self.connections - 1)

    def call_started(self, method: str) -> MethodMetrics:
        """Count a call in flight; end it with :meth:`call_finished`."""
        self.calls_in_flight += 1
        record = self._methods.records.get(method) or self._methods.method(method)
        record.started()
        return record

    def call_finished(self, method: str, status: int, duration: float) -> None:
        self.call_ended(self._methods.method(method), status, duration)

    def call_ended(self, record: MethodMetrics, status: int, duration: float) -> None:
        """:meth:`call_finished` with the record :meth:`call_started` returned."""
        self.calls_in_flight = max(0, self.calls_in_flight - 1)
        record.finished(status, duration)

    def method(self, name: str) -> MethodMetrics:
        return self._methods.method(name)

    def snapshot(self) -> ServerSnapshot:
        return ServerSnapshot(
            connections=self.connections,
            connections_total=self.connections_total,
            calls_in_flight=self.calls_in_flight,
            methods=self._methods.snapshot(),
        )
