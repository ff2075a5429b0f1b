"""Metrics records, their plain-data snapshots, and the Prometheus exposition."""

from __future__ import annotations

import dataclasses
import enum
import importlib
import json
import sys
from dataclasses import dataclass
from typing import Any

import pytest

from ghostwire.rpc.resilience.metrics import (
    LATENCY_BUCKETS,
    ClientMetrics,
    ClientSnapshot,
    MethodMetrics,
    ServerMetrics,
    status_name,
)


class Status(enum.IntEnum):  # the shape of rpc.Status
    OK = 0
    INVALID_ARGUMENT = 3
    UNAVAILABLE = 14


@dataclass
class Stats:  # the shape of ghostwire.quic's ConnectionStats
    smoothed_rtt: float
    bytes_sent: int
    bytes_received: int
    packets_lost: int


def test_status_labels_use_the_enum_name() -> None:
    assert status_name(Status.UNAVAILABLE) == "UNAVAILABLE"
    assert status_name(14) == "14"


def test_method_histogram_uses_fixed_buckets_le_inclusive() -> None:
    method = MethodMetrics("zvm.get_balance")
    for duration, status in [
        (0.0004, Status.OK),
        (0.001, Status.OK),  # exactly on a bound: that bucket (Prometheus "le")
        (0.003, Status.UNAVAILABLE),
        (0.2, Status.OK),
        (60.0, Status.INVALID_ARGUMENT),  # past the last bound: +Inf
    ]:
        method.started()
        method.finished(status, duration)
    method.started()  # one still running
    snap = method.snapshot()
    assert snap.calls == 6 and snap.in_flight == 1
    assert snap.errors == {"UNAVAILABLE": 1, "INVALID_ARGUMENT": 1}
    hist = snap.latency
    assert hist.bounds == LATENCY_BUCKETS and len(hist.counts) == len(LATENCY_BUCKETS) + 1
    assert hist.counts[0] == 1 and hist.counts[1] == 1
    assert hist.counts[LATENCY_BUCKETS.index(0.005)] == 1
    assert hist.counts[LATENCY_BUCKETS.index(0.25)] == 1
    assert hist.counts[-1] == 1
    assert hist.count == 5 and hist.sum == pytest.approx(60.2044)
    assert hist.cumulative()[-1] == 5
    with pytest.raises(ValueError):
        MethodMetrics("x", bounds=(1.0, 0.5))


def test_endpoint_counters_survive_reconnects() -> None:
    metrics = ClientMetrics(["node-a:4433"])
    endpoint = metrics.endpoint("node-a:4433")
    endpoint.observe_transport(Stats(0.012, 1000, 5000, 2))
    endpoint.observe_transport(Stats(0.010, 1500, 7000, 3))  # same connection, later
    endpoint.connection_replaced()
    endpoint.reconnected()
    endpoint.observe_transport(Stats(0.0, 100, 200, 0))  # no RTT sample yet: keep the last
    snap = metrics.snapshot().endpoints["node-a:4433"]
    assert (snap.bytes_sent, snap.bytes_received, snap.packets_lost) == (1600, 7200, 3)
    assert snap.rtt == 0.010 and snap.reconnects == 1


def _client_metrics() -> ClientMetrics:
    metrics = ClientMetrics(["node-a:4433", "node-b:4433"])
    call = metrics.method("zvm.get_balance")
    for duration in (0.002, 0.004, 0.03):
        call.started()
        call.finished(Status.OK, duration)
    call.started()
    call.finished(Status.UNAVAILABLE, 1.5)
    a = metrics.endpoint("node-a:4433")
    a.state, a.circuit_state, a.outstanding = "READY", "CLOSED", 3
    a.observe_transport(Stats(0.0125, 4096, 8192, 1))
    b = metrics.endpoint("node-b:4433")
    b.state, b.circuit_state, b.circuit_opened, b.reconnects = "TRANSIENT_FAILURE", "OPEN", 1, 4
    return metrics


def test_snapshots_are_plain_data() -> None:
    snap = _client_metrics().snapshot()
    assert isinstance(snap, ClientSnapshot)
    as_dict = dataclasses.asdict(snap)
    text = json.dumps(as_dict)  # nothing but JSON-able values inside
    assert json.loads(text)["endpoints"]["node-b:4433"]["circuit_state"] == "OPEN"
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.endpoints["node-a:4433"].reconnects = 9  # type: ignore[misc]
    # A snapshot does not move when the records do.
    metrics = _client_metrics()
    before = metrics.snapshot()
    metrics.method("zvm.get_balance").started()
    assert before.methods["zvm.get_balance"].calls == 4


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, parsed by prometheus-client's own parser."""
    parser = pytest.importorskip("prometheus_client.parser")
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _exporter() -> Any:
    """The exporter module (the tests skip without the optional prometheus-client)."""
    pytest.importorskip("prometheus_client")
    return importlib.import_module("ghostwire.rpc.resilience.prometheus")


def test_client_exposition_parses_with_the_values_of_the_snapshot() -> None:
    text = _exporter().exposition(_client_metrics().snapshot).decode()
    samples = _samples(text)
    m = (("method", "zvm.get_balance"),)
    assert samples[("ghostwire_rpc_client_calls_total", m)] == 4
    assert samples[("ghostwire_rpc_client_calls_in_flight", m)] == 0
    assert samples[("ghostwire_rpc_client_errors_total", (("code", "UNAVAILABLE"), *m))] == 1
    # The histogram is cumulative, ends in +Inf, and carries count and sum.
    le = "ghostwire_rpc_client_call_duration_seconds_bucket"
    assert samples[(le, (("le", "0.001"), *m))] == 0
    assert samples[(le, (("le", "0.005"), *m))] == 2
    assert samples[(le, (("le", "0.05"), *m))] == 3
    assert samples[(le, (("le", "+Inf"), *m))] == 4
    assert samples[("ghostwire_rpc_client_call_duration_seconds_count", m)] == 4
    assert samples[("ghostwire_rpc_client_call_duration_seconds_sum", m)] == pytest.approx(1.536)
    # Endpoint states are one-hot over gRPC's five names.
    a = ("endpoint", "node-a:4433")
    b = ("endpoint", "node-b:4433")
    states = {
        k[1][1][1]: v
        for k, v in samples.items()
        if k[0] == "ghostwire_rpc_endpoint_state" and a in k[1]
    }
    assert states == {
        "IDLE": 0,
        "CONNECTING": 0,
        "READY": 1,
        "TRANSIENT_FAILURE": 0,
        "SHUTDOWN": 0,
    }
    assert samples[("ghostwire_rpc_endpoint_circuit_state", (b, ("state", "OPEN")))] == 1
    assert samples[("ghostwire_rpc_endpoint_circuit_state", (b, ("state", "CLOSED")))] == 0
    assert samples[("ghostwire_rpc_endpoint_circuit_opened_total", (b,))] == 1
    assert samples[("ghostwire_rpc_endpoint_reconnects_total", (b,))] == 4
    assert samples[("ghostwire_rpc_endpoint_rtt_seconds", (a,))] == 0.0125
    assert ("ghostwire_rpc_endpoint_rtt_seconds", (b,)) not in samples  # never measured
    assert samples[("ghostwire_rpc_endpoint_sent_bytes_total", (a,))] == 4096
    assert samples[("ghostwire_rpc_endpoint_received_bytes_total", (a,))] == 8192
    assert samples[("ghostwire_rpc_endpoint_lost_packets_total", (a,))] == 1
    assert samples[("ghostwire_rpc_endpoint_outstanding_calls", (a,))] == 3
    # Types are declared for every family.
    assert "# TYPE ghostwire_rpc_client_call_duration_seconds histogram" in text
    assert "# TYPE ghostwire_rpc_endpoint_reconnects_total counter" in text


def test_server_exposition_and_a_shared_registry() -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    RpcCollector = _exporter().RpcCollector
    server = ServerMetrics()
    server.connection_opened()
    server.connection_opened()
    server.connection_closed()
    server.call_started("zvm.logs")
    server.call_started("zvm.get_balance")
    server.call_finished("zvm.get_balance", Status.INVALID_ARGUMENT, 0.0001)
    snap = server.snapshot()
    assert (snap.connections, snap.connections_total, snap.calls_in_flight) == (1, 2, 1)

    registry = prometheus_client.CollectorRegistry()
    client = _client_metrics()
    registry.register(RpcCollector(client.snapshot))
    registry.register(RpcCollector(server.snapshot))
    samples = _samples(prometheus_client.generate_latest(registry).decode())
    assert samples[("ghostwire_rpc_server_connections", ())] == 1
    assert samples[("ghostwire_rpc_server_accepted_connections_total", ())] == 2
    assert samples[("ghostwire_rpc_server_calls_in_flight", ())] == 1
    logs = (("method", "zvm.logs"),)
    balance = (("method", "zvm.get_balance"),)
    assert samples[("ghostwire_rpc_server_calls_in_flight", logs)] == 1
    assert (
        samples[("ghostwire_rpc_server_errors_total", (("code", "INVALID_ARGUMENT"), *balance))]
        == 1
    )
    assert samples[("ghostwire_rpc_client_calls_total", balance)] == 4
    # Each scrape reads a fresh snapshot.
    client.method("zvm.get_balance").started()
    samples = _samples(prometheus_client.generate_latest(registry).decode())
    assert samples[("ghostwire_rpc_client_calls_total", balance)] == 5


def test_without_prometheus_client_the_exporter_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("prometheus_client", "prometheus_client.core"):
        monkeypatch.setitem(sys.modules, name, None)  # makes the import fail
    # The module may not have been imported yet (no earlier test needed it).
    monkeypatch.delitem(sys.modules, "ghostwire.rpc.resilience.prometheus", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'ghostwire\[prometheus\]'"):
        importlib.import_module("ghostwire.rpc.resilience.prometheus")
