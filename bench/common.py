"""What the orchestrator, the servers and the clients of the bench share.

The wire protocol is the same for both stacks, so the two servers are
interchangeable:

* the client opens a bidirectional stream, sends its request and FIN;
* the server reads the stream to its end, then replies and sends FIN. The
  reply echoes the request when it is at most ``ECHO_LIMIT`` bytes long
  (request/response workloads), else it is the byte count received as 8
  bytes big-endian (bulk workload: the client checks that every byte arrived).

The HTTP/3 workloads use an HTTP/3 server instead (ALPN ``h3``): every
request is ``GET H3_PATH`` and the answer is status 200 with a
``content-length`` and an ``H3_BODY_SIZE``-byte body, which the client checks.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ALPN = "gw-bench"
HOST = "127.0.0.1"
SERVER_NAME = "localhost"
ECHO_LIMIT = 100
# The handshake8 workload makes this many times the handshake workload's connects.
HANDSHAKE8_FACTOR = 2
# Idle timeout of both stacks (seconds): long enough that the 1,000 idle
# connections of the memory workload outlive their slowest handshake.
IDLE_TIMEOUT = float(os.environ.get("GW_BENCH_IDLE_TIMEOUT", "120"))  # bench/conns.py raises it
# Bulk transfers write in chunks of this size.
BULK_CHUNK = 64 << 10
# aioquic's streams have no send back-pressure; the bench client parks while
# more than this many bytes are unacknowledged (aioquic's default
# max_stream_data, so it never limits more than flow control already does).
AIOQUIC_SEND_BUFFER = 1 << 20

# HTTP/3 workloads (h3rr, h3rps): ALPN "h3"; every request is a GET of
# H3_PATH, answered 200 with an H3_BODY_SIZE-byte body (request_payload).
H3_ALPN = "h3"
H3_BODY_SIZE = 100
H3_PATH = "/small"

RESULT_PREFIX = "RESULT "
PORT_PREFIX = "PORT "

STACKS = ("ghostwire", "aioquic", "qh3")
# qh3 (aioquic's API over a Rust core) runs only when asked for (--stacks).
DEFAULT_STACKS = ("ghostwire", "aioquic")
# What a bench server speaks: the raw stream echo protocol, or HTTP/3.
PROTOCOLS = ("raw", "h3")


@dataclass(frozen=True)
class CertFiles:
    """The test CA and the server identity, as PEM files."""

    cafile: str
    certfile: str
    keyfile: str

    @classmethod
    def create(cls, directory: Path) -> CertFiles:
        from ghostwire.certs import CertificateAuthority

        ca = CertificateAuthority.create("ghostwire bench CA")
        identity = ca.issue([SERVER_NAME, HOST])
        files = cls(
            cafile=str(directory / "ca.pem"),
            certfile=str(directory / "server.pem"),
            keyfile=str(directory / "server.key"),
        )
        ca.write_pem(files.cafile)
        identity.write_pem(files.certfile, files.keyfile)
        return files


@dataclass(frozen=True)
class Settings:
    """Everything a server or client process needs besides its workload."""

    certs: CertFiles
    max_datagram_size: int
    # ghostwire's path MTU discovery: the largest size it probes for
    # (aioquic has no discovery and stays at max_datagram_size).
    pmtu_max_datagram_size: int = 1452

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Settings:
        raw = json.loads(text)
        return cls(
            certs=CertFiles(**raw["certs"]),
            max_datagram_size=raw["max_datagram_size"],
            pmtu_max_datagram_size=raw.get("pmtu_max_datagram_size", 1452),
        )


@dataclass
class Sizes:
    """Workload sizes (counts and bytes)."""

    bulk_bytes: int
    handshakes: int
    handshake_warmup: int
    requests: int
    request_warmup: int
    rps_requests: int
    rps_concurrency: int
    idle_connections: int
    idle_concurrency: int
    h3_requests: int
    h3_rps_requests: int
    message_size: int = ECHO_LIMIT
    # handshake8: this many connects in flight, HANDSHAKE8_FACTOR x handshakes in all.
    handshake_concurrency: int = 8

    @classmethod
    def full(cls) -> Sizes:
        return cls(
            bulk_bytes=100 * 1000 * 1000,
            handshakes=200,
            handshake_warmup=5,
            requests=1000,
            request_warmup=50,
            rps_requests=10_000,
            rps_concurrency=64,
            idle_connections=1000,
            idle_concurrency=16,
            h3_requests=1000,
            h3_rps_requests=5000,
        )

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            bulk_bytes=10 * 1000 * 1000,
            handshakes=30,
            handshake_warmup=2,
            requests=200,
            request_warmup=10,
            rps_requests=2000,
            rps_concurrency=64,
            idle_connections=100,
            idle_concurrency=16,
            h3_requests=200,
            h3_rps_requests=1000,
        )


@dataclass
class Measurement:
    """What a client process reports (one workload, one stack)."""

    values: dict[str, float] = field(default_factory=dict)
    samples: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_line(self) -> str:
        return RESULT_PREFIX + json.dumps(asdict(self))

    @classmethod
    def from_line(cls, line: str) -> Measurement:
        raw: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
        return cls(values=raw["values"], samples=raw["samples"], notes=raw["notes"])


def request_payload(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + bytes(range(size % 256))


def reply_for(received: int, head: bytes) -> bytes:
    """The server's reply to a stream that carried ``received`` bytes starting with ``head``."""
    if received <= ECHO_LIMIT:
        return head[:received]
    return received.to_bytes(8, "big")


def check_bulk_reply(reply: bytes, sent: int) -> None:
    if reply != sent.to_bytes(8, "big"):
        got = int.from_bytes(reply, "big") if len(reply) == 8 else reply
        raise RuntimeError(f"server reports {got!r} bytes received, {sent} were sent")


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (p99 of 200 samples is the 198th smallest)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples) if samples else math.nan


def read_rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc/PID/status (VmRSS)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def read_cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used, from /proc/PID/stat (clock ticks)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        stat = f.read()
    # Fields after the command name (which may hold spaces) in parentheses;
    # utime and stime are fields 14 and 15 of proc(5).
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


class CpuMeter:
    """CPU time used by this process (the client) and by the server process
    over a measured phase, per request.

    The client's is ``time.process_time()``; the server's is read from
    /proc/PID/stat (clock-tick resolution, 10 ms: a phase of 10,000 requests
    makes that well under 1%).
    """

    def __init__(self, server_pid: int) -> None:
        self._server_pid = server_pid
        self._client_start = time.process_time()
        self._server_start = read_cpu_seconds(server_pid)

    def per_request(self, requests: int) -> dict[str, float]:
        """CPU per request (or per handshake) since the meter was made."""
        client = time.process_time() - self._client_start
        server = read_cpu_seconds(self._server_pid) - self._server_start
        return {
            "client_cpu_s": client,
            "server_cpu_s": server,
            "client_cpu_us_per_request": client / requests * 1e6,
            "server_cpu_us_per_request": server / requests * 1e6,
        }


def pid_alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")
