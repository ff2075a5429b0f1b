"""Where a resumed connect's time goes: its legs, timed on both sides.

Run from the repository root::

    python -m bench.connect_legs                 # 300 resumed connects
    python -m bench.connect_legs --mode full --connects 100

A ghostwire server process (the bench's echo handler and server config,
0-RTT off) and, in this process, a client making ``--connects`` connections one
after another (after 5 unmeasured), each closed as soon as ``connect``
returns; ``resumed`` offers the previous connection's ticket. Both sides'
UDP sockets record ``time.perf_counter()`` (CLOCK_MONOTONIC, the same clock
in both processes) as each datagram is read and before each is sent, which
splits a connect into:

* client setup: ``connect()`` called -> ClientHello handed to the kernel
  (resolution, socket and endpoint, ``QuicConnection``, ClientHello);
* ClientHello to server: sent -> read by the server (kernel, wake-up);
* server: ClientHello read -> its flight handed to the kernel;
* flight to client: sent -> read by the client;
* client: flight read -> Finished handed to the kernel;
* connect returns: Finished sent -> ``connect`` returned.

Medians (and 25th percentiles) of each leg are printed, with the server
process's CPU per connection (user and system, ``getrusage``) and the
share of it its garbage collector took; with ``--core-share``, also the CPU
spent inside the sans-IO core's calls (``QuicConnection``'s public methods),
the rest being the trio shell, trio and the kernel. A leg is CPU on one side or the
other (no timer or deliberate wait is on the path), so on a loaded machine
compare runs alternated, and read the legs rather than the total.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import HOST, PORT_PREFIX, RESULT_PREFIX, CertFiles, Settings

WARMUP = 5
# Pause between connects: the server finishes the previous connection (its
# ticket, ACKs, the close) before the next ClientHello arrives.
PAUSE = 0.002
LEGS = (
    "client setup",
    "ClientHello to server",
    "server",
    "flight to client",
    "client",
    "connect returns",
)


class StampedSocket(socket.socket):
    """A UDP socket noting when each datagram is read and before each is sent."""

    __slots__ = ()
    stamps: list[tuple[float, str]] = []  # (perf_counter, "recv" | "send"), process-wide

    def recvfrom_into(self, *args: Any, **kwargs: Any) -> Any:
        result = super().recvfrom_into(*args, **kwargs)
        self.stamps.append((time.perf_counter(), "recv"))
        return result

    def recvmsg_into(self, *args: Any, **kwargs: Any) -> Any:
        result = super().recvmsg_into(*args, **kwargs)
        self.stamps.append((time.perf_counter(), "recv"))
        return result

    def sendto(self, *args: Any, **kwargs: Any) -> Any:
        self.stamps.append((time.perf_counter(), "send"))
        return super().sendto(*args, **kwargs)

    def sendmsg(self, *args: Any, **kwargs: Any) -> Any:
        self.stamps.append((time.perf_counter(), "send"))
        return super().sendmsg(*args, **kwargs)


def stamped(sock: socket.socket) -> StampedSocket:
    """The same socket (its options kept), as a :class:`StampedSocket`."""
    return StampedSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())


# -- the server process -------------------------------------------------------------


def _time_core_calls() -> list[float]:
    """Add the CPU time (``thread_time``) spent in the sans-IO core's public
    methods, outermost calls only, to the returned one-item list. Each call
    then costs two more clock reads (~1 us): the figure includes them."""
    from ghostwire.quic.connection import QuicConnection

    spent = [0.0]
    depth = [0]

    def timed(method: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            if depth[0]:
                return method(*args, **kwargs)
            depth[0] = 1
            start = time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                spent[0] += time.thread_time() - start
                depth[0] = 0

        return call

    for name, value in list(vars(QuicConnection).items()):
        if callable(value) and (name == "__init__" or not name.startswith("_")):
            setattr(QuicConnection, name, timed(value))
    return spent


def _server(settings: Settings, core_share: bool) -> None:
    from functools import partial

    import trio

    from ghostwire.quic.net.api import serve_on_socket
    from ghostwire.quic.net.endpoint import open_udp_socket

    from . import gw

    gc_seconds = [0.0, 0.0]  # total, start of the running collection

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_seconds[1] = time.thread_time()
        else:
            gc_seconds[0] += time.thread_time() - gc_seconds[1]

    gc.callbacks.append(on_gc)
    core = _time_core_calls() if core_share else [0.0]

    def report(*_: Any) -> None:
        # Asked for by the client around its measured connects (SIGUSR1).
        usage = resource.getrusage(resource.RUSAGE_SELF)
        state = {
            "user": usage.ru_utime,
            "system": usage.ru_stime,
            "gc": gc_seconds[0],
            "core": core[0],
        }
        state["stamps"] = StampedSocket.stamps
        print(RESULT_PREFIX + json.dumps(state), flush=True)
        StampedSocket.stamps = []

    signal.signal(signal.SIGUSR1, report)
    sock = stamped(open_udp_socket(HOST, 0))

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                serve = partial(serve_on_socket, gw._handler, sock, gw.server_config(settings))
                server = await nursery.start(serve)
                print(f"{PORT_PREFIX}{server.port}", flush=True)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    trio.run(main)


# -- the client (this process) ------------------------------------------------------


def _client(settings: Settings, port: int, mode: str, connects: int) -> list[tuple[float, float]]:
    """(start, end) of each measured connect; the sockets' stamps are kept."""
    import trio

    import ghostwire.quic as quic
    from ghostwire.quic.net import api
    from ghostwire.quic.tls import MemoryTicketStore

    from . import gw

    store = MemoryTicketStore() if mode == "resumed" else None
    config = dataclasses.replace(gw.client_config(settings), session_tickets=store)
    open_plain = api.open_udp_socket
    # The client's sockets are stamped too (connect opens its own).
    api.open_udp_socket = lambda *args: stamped(open_plain(*args))  # type: ignore[assignment]
    spans: list[tuple[float, float]] = []

    async def once() -> tuple[float, float]:
        start = time.perf_counter()
        async with quic.connect(HOST, port, config) as conn:
            end = time.perf_counter()
            if store is not None and not len(store):
                await conn.ping()  # the ticket comes before the answer to it
            if mode == "resumed" and spans and not conn.resumed:
                raise RuntimeError("a connect did not resume")
        return start, end

    async def main() -> None:
        for _ in range(WARMUP):
            await once()
            await trio.sleep(PAUSE)
        StampedSocket.stamps = []
        for _ in range(connects):
            spans.append(await once())
            await trio.sleep(PAUSE)

    try:
        trio.run(main)
    finally:
        api.open_udp_socket = open_plain  # type: ignore[assignment]
    return spans


def _legs(
    spans: list[tuple[float, float]],
    client: list[tuple[float, str]],
    server: list[tuple[float, str]],
) -> dict[str, list[float]]:
    """Each connect's legs (seconds), from the stamps of both sides."""
    out: dict[str, list[float]] = {name: [] for name in (*LEGS, "total")}
    for start, end in spans:
        ours = [s for s in client if start <= s[0] <= end]
        hello = next((t for t, kind in ours if kind == "send"), None)
        flight = next((t for t, kind in ours if kind == "recv" and hello and t > hello), None)
        finished = next((t for t, kind in ours if kind == "send" and flight and t > flight), None)
        if hello is None or flight is None or finished is None:
            continue
        theirs = [s for s in server if hello <= s[0] <= flight]
        read = next((t for t, kind in theirs if kind == "recv"), None)
        sent = next((t for t, kind in theirs if kind == "send" and read and t > read), None)
        if read is None or sent is None:
            continue
        points = (start, hello, read, sent, flight, finished, end)
        for index, name in enumerate(LEGS):  # each leg between two points
            out[name].append(points[index + 1] - points[index])
        out["total"].append(end - start)
    return out


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.connect_legs")
    parser.add_argument("role", nargs="?", choices=["server"])
    parser.add_argument("rest", nargs="*")
    parser.add_argument("--connects", type=int, default=300)
    parser.add_argument("--mode", choices=["resumed", "full"], default="resumed")
    parser.add_argument(
        "--core-share",
        action="store_true",
        help="also time the server's calls into the sans-IO core (slows them a little)",
    )
    args = parser.parse_args(argv)
    if args.role == "server":
        _server(Settings.from_json(args.rest[0]), args.core_share)
        return
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings(certs=CertFiles.create(Path(directory)), max_datagram_size=1200)
        command = [sys.executable, "-m", "bench.connect_legs", "server", settings.to_json()]
        if args.core_share:
            command.append("--core-share")
        server = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, text=True)
        try:
            assert server.stdout is not None
            line = server.stdout.readline()
            if not line.startswith(PORT_PREFIX):
                raise RuntimeError("the server did not start")
            port = int(line[len(PORT_PREFIX) :])

            def server_state() -> dict[str, Any]:
                server.send_signal(signal.SIGUSR1)
                assert server.stdout is not None
                state: dict[str, Any] = json.loads(server.stdout.readline()[len(RESULT_PREFIX) :])
                return state

            load = os.getloadavg()[0]
            spans = _client(settings, port, args.mode, WARMUP)  # the server's warm-up
            before = server_state()
            spans = _client(settings, port, args.mode, args.connects)
            after = server_state()
        finally:
            server.terminate()
            server.wait()
    legs = _legs(spans, StampedSocket.stamps, after["stamps"])
    count = len(legs["total"])
    print(
        f"ghostwire, {args.mode} connects: {count} of {len(spans)} split into legs; "
        f"load average {load:.2f} -> {os.getloadavg()[0]:.2f}"
    )
    print("| leg | median (us) | p25 (us) |\n|---|---:|---:|")
    for name, values in legs.items():
        if values:
            median, p25 = _quantile(values, 0.5) * 1e6, _quantile(values, 0.25) * 1e6
            print(f"| {name} | {median:.0f} | {p25:.0f} |")
    per = {k: (after[k] - before[k]) / len(spans) * 1e6 for k in ("user", "system", "gc", "core")}
    print(
        f"server CPU per connection (getrusage): user {per['user']:.0f} us, "
        f"system {per['system']:.0f} us; its garbage collection {per['gc']:.0f} us"
    )
    if args.core_share:
        rest = per["user"] + per["system"] - per["core"]
        print(
            f"of which in the sans-IO core's calls {per['core']:.0f} us (GC passes that "
            f"started there included), the rest (shell, trio, system) {rest:.0f} us"
        )


if __name__ == "__main__":
    main()
