"""Prometheus exposition of RPC metrics (the optional ``ghostwire[prometheus]`` extra).

A custom collector reads a metrics *snapshot* (``client.metrics()`` /
``server.metrics()``, see ``metrics.py``) each time Prometheus scrapes, so
nothing is counted twice and the RPC code never touches prometheus-client::

    from ghostwire.rpc.resilience.prometheus import RpcCollector
    prometheus_client.REGISTRY.register(RpcCollector(client.metrics))
    # or, without a registry: text = exposition(client.metrics, server.metrics)

Metric names (all prefixed ``ghostwire_rpc_``):

========================================  =========  ==============================
name                                      type       labels
========================================  =========  ==============================
``client_calls_total``                    counter    method
``client_calls_in_flight``                gauge      method
``client_errors_total``                   counter    method, code (status name)
``client_call_duration_seconds``          histogram  method
``endpoint_state``                        gauge      endpoint, state (1 = current)
``endpoint_reconnects_total``             counter    endpoint
``endpoint_circuit_state``                gauge      endpoint, state (1 = current)
``endpoint_circuit_opened_total``         counter    endpoint
``endpoint_outstanding_calls``            gauge      endpoint
``endpoint_connections``                  gauge      endpoint
``endpoint_rtt_seconds``                  gauge      endpoint (once measured)
``endpoint_sent_bytes_total``             counter    endpoint
``endpoint_received_bytes_total``         counter    endpoint
``endpoint_lost_packets_total``           counter    endpoint
``server_connections``                    gauge
``server_accepted_connections_total``     counter
``server_calls_in_flight``                gauge
``server_calls_total`` (and the other     as above   method (, code)
per-method families with ``server_``)
========================================  =========  ==============================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

try:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
except ImportError as exc:
    raise ImportError(
        "ghostwire.rpc.resilience.prometheus needs the optional 'prometheus-client' "
        "package: pip install 'ghostwire[prometheus]'"
    ) from exc

from .circuit import CircuitState
from .metrics import ClientSnapshot, EndpointSnapshot, MethodSnapshot, ServerSnapshot
from .states import ConnectivityState

__all__ = ["PREFIX", "RpcCollector", "SnapshotSource", "exposition"]

PREFIX = "ghostwire_rpc_"

Snapshot = ClientSnapshot | ServerSnapshot
SnapshotSource = Callable[[], Snapshot]


def _format_bound(bound: float) -> str:
    return repr(float(bound))


def _method_families(side: str, methods: Mapping[str, MethodSnapshot]) -> Iterator[Metric]:
    prefix = f"{PREFIX}{side}_"
    calls = CounterMetricFamily(f"{prefix}calls", f"Calls started ({side}).", labels=["method"])
    in_flight = GaugeMetricFamily(
        f"{prefix}calls_in_flight", f"Calls not finished yet ({side}).", labels=["method"]
    )
    errors = CounterMetricFamily(
        f"{prefix}errors",
        f"Calls that ended with a status other than OK ({side}).",
        labels=["method", "code"],
    )
    latency = HistogramMetricFamily(
        f"{prefix}call_duration_seconds",
        f"Call duration in seconds ({side}).",
        labels=["method"],
    )
    for name, method in methods.items():
        calls.add_metric([name], method.calls)
        in_flight.add_metric([name], method.in_flight)
        for code, count in sorted(method.errors.items()):
            errors.add_metric([name, code], count)
        histogram = method.latency
        cumulative = histogram.cumulative()
        finite = zip(histogram.bounds, cumulative[:-1], strict=True)
        buckets = [(_format_bound(b), float(c)) for b, c in finite]
        buckets.append(("+Inf", float(cumulative[-1])))
        latency.add_metric([name], buckets, histogram.sum)
    yield from (calls, in_flight, errors, latency)


def _state_set(
    name: str, doc: str, endpoints: Iterable[EndpointSnapshot], states: Iterable[str], attr: str
) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=["endpoint", "state"])
    names = list(states)
    for endpoint in endpoints:
        current = getattr(endpoint, attr)
        for state in names:
            family.add_metric([endpoint.address, state], 1.0 if state == current else 0.0)
    return family


def _endpoint_families(endpoints: Mapping[str, EndpointSnapshot]) -> Iterator[Metric]:
    prefix = f"{PREFIX}endpoint_"
    values = list(endpoints.values())
    yield _state_set(
        f"{prefix}state",
        "Connectivity state of the endpoint (1 for the current state).",
        values,
        (s.name for s in ConnectivityState),
        "state",
    )
    yield _state_set(
        f"{prefix}circuit_state",
        "Circuit breaker state of the endpoint (1 for the current state).",
        values,
        (s.name for s in CircuitState),
        "circuit_state",
    )
    counters = (
        ("reconnects", "Connections re-established after one was lost.", "reconnects"),
        ("circuit_opened", "Times the endpoint's circuit opened.", "circuit_opened"),
        ("sent_bytes", "Bytes sent to the endpoint (QUIC, all connections).", "bytes_sent"),
        ("received_bytes", "Bytes received from the endpoint.", "bytes_received"),
        ("lost_packets", "Packets to the endpoint declared lost.", "packets_lost"),
    )
    for suffix, doc, attr in counters:
        counter = CounterMetricFamily(f"{prefix}{suffix}", doc, labels=["endpoint"])
        for endpoint in values:
            counter.add_metric([endpoint.address], getattr(endpoint, attr))
        yield counter
    outstanding = GaugeMetricFamily(
        f"{prefix}outstanding_calls", "Calls outstanding on the endpoint.", labels=["endpoint"]
    )
    rtt = GaugeMetricFamily(
        f"{prefix}rtt_seconds", "Smoothed round-trip time to the endpoint.", labels=["endpoint"]
    )
    connections = GaugeMetricFamily(
        f"{prefix}connections", "QUIC connections open to the endpoint.", labels=["endpoint"]
    )
    for endpoint in values:
        outstanding.add_metric([endpoint.address], endpoint.outstanding)
        connections.add_metric([endpoint.address], endpoint.connections)
        if endpoint.rtt is not None:
            rtt.add_metric([endpoint.address], endpoint.rtt)
    yield outstanding
    yield connections
    yield rtt


def _server_families(snapshot: ServerSnapshot) -> Iterator[Metric]:
    prefix = f"{PREFIX}server_"
    yield GaugeMetricFamily(f"{prefix}connections", "Connections open.", value=snapshot.connections)
    yield CounterMetricFamily(
        f"{prefix}accepted_connections",
        "Connections accepted since the server started.",
        value=snapshot.connections_total,
    )
    yield GaugeMetricFamily(
        f"{prefix}calls_in_flight", "Calls being handled.", value=snapshot.calls_in_flight
    )
    yield from _method_families("server", snapshot.methods)


def families(snapshot: Snapshot) -> Iterator[Metric]:
    """The metric families of one snapshot."""
    if isinstance(snapshot, ServerSnapshot):
        yield from _server_families(snapshot)
    else:
        yield from _method_families("client", snapshot.methods)
        yield from _endpoint_families(snapshot.endpoints)


class RpcCollector:
    """A prometheus-client collector over a snapshot source (``client.metrics``).

    Register one per source; a client and a server may share a registry
    since their names differ (``client_`` / ``server_``). Two clients in
    one registry would collide: give each its own registry.
    """

    def __init__(self, source: SnapshotSource) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        return list(families(self._source()))

    def describe(self) -> Iterable[Metric]:
        # Nothing to declare up front: the names depend on the snapshot, and
        # describing by collecting would call the source at registration.
        return []


def exposition(*sources: SnapshotSource) -> bytes:
    """The Prometheus text exposition of ``sources`` (no global registry involved)."""
    registry = CollectorRegistry(auto_describe=False)
    for source in sources:
        registry.register(RpcCollector(source))
    return generate_latest(registry)
