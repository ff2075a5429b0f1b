"""Requests/s and handshakes/s of ``serve(..., workers=N)`` at N = 1 and N = 2.

    python -m bench.workers                     # N = 1, 2; 10 s per figure
    python -m bench.workers --workers 1,2,4 --seconds 5 --clients 2

The server runs in this process (``workers=N`` puts the work in N worker
processes; with N = 1 it is a plain ``serve``). Load comes from ``--clients``
client processes, each for ``--seconds``:

* handshakes/s: connects (certificate verified), each closed at once, 8 at
  a time per client (``--handshakes-in-flight``): one at a time measures a
  client's round trips, not what the server can take;
* requests/s: 4 connections per client, 16 requests in flight on each; a
  request is a new bidirectional stream, 100 bytes + FIN each way.

On a 2-core machine the clients compete with the workers for the cores, so
N = 2 can only show what is left after the clients' own CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from functools import partial
from pathlib import Path

import trio

import ghostwire.quic as quic
from ghostwire.quic.suites import CipherSuite

from .__main__ import machine_info
from .common import CertFiles, read_cpu_seconds

ALPN = "gw-workers-bench"
HOST = "127.0.0.1"
PAYLOAD = b"x" * 100
CONNECTIONS_PER_CLIENT = 4
IN_FLIGHT = 16


async def echo(conn: quic.Connection) -> None:
    """Each stream: read to EOF, echo it back."""
    async with trio.open_nursery() as nursery:
        async for stream in conn:
            nursery.start_soon(_echo_stream, stream)


async def _echo_stream(stream: quic.QuicStream | quic.QuicReceiveStream) -> None:
    assert isinstance(stream, quic.QuicStream)
    data = b""
    while chunk := await stream.receive_some():
        data += chunk
    await stream.send_all(data)
    await stream.send_eof()


def _client_config(certs: CertFiles) -> quic.ClientConfig:
    return quic.ClientConfig(
        alpn=[ALPN], cafile=certs.cafile, server_name="localhost",
        cipher_suites=[CipherSuite.AES_128_GCM_SHA256],
    )  # fmt: skip


async def _handshakes(port: int, config: quic.ClientConfig, seconds: float, in_flight: int) -> int:
    done = 0
    deadline = trio.current_time() + seconds

    async def loop() -> None:
        nonlocal done
        while trio.current_time() < deadline:
            async with quic.connect(HOST, port, config):
                done += 1

    async with trio.open_nursery() as nursery:
        for _ in range(in_flight):
            nursery.start_soon(loop)
    return done


async def _request(conn: quic.Connection) -> None:
    stream = await conn.open_stream()
    await stream.send_all(PAYLOAD)
    await stream.send_eof()
    received = 0
    while chunk := await stream.receive_some():
        received += len(chunk)
    if received != len(PAYLOAD):
        raise RuntimeError("short reply")


async def _requests(port: int, config: quic.ClientConfig, seconds: float, in_flight: int) -> int:
    del in_flight  # CONNECTIONS_PER_CLIENT x IN_FLIGHT requests
    done = 0
    async with trio.open_nursery() as nursery:
        deadline = trio.current_time() + seconds

        async def one_connection() -> None:
            async with quic.connect(HOST, port, config) as conn:

                async def loop() -> None:
                    nonlocal done
                    while trio.current_time() < deadline:
                        await _request(conn)
                        done += 1

                async with trio.open_nursery() as inner:
                    for _ in range(IN_FLIGHT):
                        inner.start_soon(loop)

        for _ in range(CONNECTIONS_PER_CLIENT):
            nursery.start_soon(one_connection)
    return done


def client_main(
    mode: str, port: int, certs_json: str, seconds: float, handshakes_in_flight: int
) -> None:
    config = _client_config(CertFiles(**json.loads(certs_json)))
    run = _handshakes if mode == "handshakes" else _requests
    count = trio.run(run, port, config, seconds, handshakes_in_flight)
    print(json.dumps({"count": count}), flush=True)


async def _measure(
    workers: int, certs: CertFiles, clients: int, seconds: float, handshakes_in_flight: int
) -> dict[str, float]:
    config = quic.ServerConfig(
        alpn=[ALPN], certfile=certs.certfile, keyfile=certs.keyfile,
        cipher_suites=[CipherSuite.AES_128_GCM_SHA256],
    )  # fmt: skip
    results: dict[str, float] = {}
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(quic.serve, echo, 0, config, host=HOST, workers=workers)
        )
        # The server's processes: this one and, with workers=N, its children
        # so far (the client processes come later).
        server_pids = [os.getpid(), *_children_of(os.getpid())]
        for mode in ("handshakes", "requests"):
            command = [
                sys.executable, "-m", "bench.workers", "--client", mode, str(server.port),
                json.dumps(certs.__dict__), str(seconds), str(handshakes_in_flight),
            ]  # fmt: skip
            outputs = [0] * clients
            cpu_before = sum(read_cpu_seconds(pid) for pid in server_pids)
            async with trio.open_nursery() as clients_nursery:
                for index in range(clients):
                    clients_nursery.start_soon(_client_process, command, outputs, index)
            cpu = sum(read_cpu_seconds(pid) for pid in server_pids) - cpu_before
            results[mode] = sum(outputs) / seconds
            results[mode + "_cpu_us"] = cpu / max(sum(outputs), 1) * 1e6
        nursery.cancel_scope.cancel()
    return results


def _children_of(pid: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            if int(fields[1]) == pid:  # field 4, ppid (after the state)
                children.append(int(entry))
    return children


async def _client_process(command: list[str], outputs: list[int], index: int) -> None:
    process = await trio.run_process(command, capture_stdout=True)
    outputs[index] = json.loads(process.stdout)["count"]


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--client":
        _, _, mode, port, certs_json, seconds, in_flight = sys.argv
        client_main(mode, int(port), certs_json, float(seconds), int(in_flight))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.workers")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--handshakes-in-flight", type=int, default=8)
    args = parser.parse_args(argv)
    print("command: python -m bench.workers " + " ".join(sys.argv[1:]))
    for key, value in machine_info().items():
        print(f"{key}: {value}")
    print(
        f"cpus: {os.cpu_count()}, clients: {args.clients} processes, "
        f"{args.handshakes_in_flight} handshakes in flight each"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="gw-workers-") as directory:
        certs = CertFiles.create(Path(directory))
        for workers in (int(w) for w in args.workers.split(",")):
            figures = trio.run(
                _measure, workers, certs, args.clients, args.seconds, args.handshakes_in_flight
            )
            rows.append((workers, figures["handshakes"], figures["requests"]))
            print(
                f"workers={workers}: {figures['handshakes']:.0f} handshakes/s "
                f"(server CPU {figures['handshakes_cpu_us']:.0f} us each), "
                f"{figures['requests']:.0f} requests/s "
                f"(server CPU {figures['requests_cpu_us']:.0f} us each)"
            )
    base = rows[0]
    for workers, handshakes, requests in rows[1:]:
        print(
            f"workers={workers} / workers={base[0]}: handshakes {handshakes / base[1]:.2f}x, "
            f"requests {requests / base[2]:.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
