"""What the RPC bench's orchestrator, servers and clients share.

Every stack serves the same two methods over TLS on 127.0.0.1:

* ``echo``: a unary call whose request is ``PAYLOAD_SIZE`` bytes and whose
  reply is the same bytes (the shape of a small contract call);
* ``events``: one request, then ``count`` events of ``PAYLOAD_SIZE`` bytes
  streamed back (an event subscription / a gRPC server stream);
* ``echo_await``: ``echo`` whose handler yields to its event loop once
  before it replies, as a handler that reads a database or runs the contract
  VM does (the thread-pool server's handler, which never yields, is
  ``echo``'s). The ``c64-await`` workload calls it with a 5 s deadline on
  every call: the shape of real calls, where ``echo`` measures the lightest
  path each stack has.

A server prints ``PORT <n>`` once it listens and runs until killed; a client
runs one workload and prints ``RESULT <json>``. The server's CPU time is
read by the client from ``/proc/<pid>/stat`` around the measured phase, so
it counts every thread of the server (gRPC's C core included).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

PAYLOAD_SIZE = 100
HOST = "127.0.0.1"
SERVER_NAME = "localhost"
RESULT_PREFIX = "RESULT "
PORT_PREFIX = "PORT "

STACKS = ("ghostwire", "grpcio-aio", "grpcio-threaded", "grpclib")
# name -> (calls in flight, or 0 for the event stream)
WORKLOADS = {"latency": 1, "c1": 1, "c64": 64, "c64-await": 64, "c1024": 1024, "events": 0}
# Workloads that call ``echo_await`` with a deadline (CALL_DEADLINE seconds).
AWAITING = frozenset({"c64-await"})
CALL_DEADLINE = 5.0


def in_flight_label(workload: str) -> str:
    """How a workload's metrics are named: "64 in flight", and for the
    awaiting ones "64 in flight, awaiting handler, deadline"."""
    label = f"{WORKLOADS[workload]} in flight"
    return label + ", awaiting handler, deadline" if workload in AWAITING else label


def payload() -> bytes:
    return bytes(range(PAYLOAD_SIZE))


@dataclass
class Result:
    """What a client reports for one workload."""

    operations: int = 0
    seconds: float = 0.0
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_line(self) -> str:
        return RESULT_PREFIX + json.dumps(asdict(self))

    @classmethod
    def from_line(cls, line: str) -> Result:
        raw: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
        return cls(**raw)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of every thread of ``pid`` (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return ticks / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds used by this process and by the server during a phase."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self._client0 = time.process_time()
        self._server0 = process_cpu_seconds(server_pid)
        self._wall0 = time.perf_counter()

    def finish(self, result: Result) -> None:
        result.seconds = time.perf_counter() - self._wall0
        result.client_cpu = time.process_time() - self._client0
        result.server_cpu = process_cpu_seconds(self.server_pid) - self._server0


def record_failure(result: Result, exc: BaseException) -> None:
    """Count a failed call by its error (reported beside the table, not timed)."""
    key = type(exc).__name__
    code = getattr(exc, "code", None)
    if callable(code):
        key += f" {code()}"
    elif code is not None:
        key += f" {code}"
    result.failures[key] = result.failures.get(key, 0) + 1
