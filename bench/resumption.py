"""Full vs resumed connects (session tickets, 0-RTT): ghostwire and aioquic in one run.

Run from the repository root::

    python -m bench.resumption                # 200 connects per mode and stack
    python -m bench.resumption --connects 50  # quicker

For each stack a fresh server process (0-RTT enabled: aioquic's server
always allows it, ghostwire's with ``ServerConfig(early_data=True)``) and a
client process that makes, one after another, ``--connects`` connections
(after 5 unmeasured) in each of three modes:

* ``full``    -- no ticket: certificate, signature and (EC)DHE;
* ``resumed`` -- a ticket from the previous connection (PSK with (EC)DHE),
  data sent after the handshake;
* ``0rtt``    -- the same, with the request sent in 0-RTT.

Each connection makes one request (100 bytes + FIN each way, the bench's
echo protocol) and is measured from the ``connect`` call: until the
handshake is complete ("connect", not for 0-RTT, where connect returns at
once) and until the reply has arrived ("first reply"). The server's CPU
time over each mode, divided by the connections, is the server CPU per
handshake. Both stacks: 127.0.0.1, P-256 certificate verified, AES-128-GCM.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from .common import (
    HOST,
    PORT_PREFIX,
    RESULT_PREFIX,
    CertFiles,
    CpuMeter,
    Settings,
    median,
    percentile,
    request_payload,
)

MODES = ("full", "resumed", "0rtt")
WARMUP = 5
PAYLOAD = request_payload(100)
STACKS = ("ghostwire", "aioquic")


# -- servers ------------------------------------------------------------------------


def _gw_server(settings: Settings) -> None:
    import signal
    from functools import partial

    import trio

    import ghostwire.quic as quic

    from . import gw

    config = dataclasses.replace(gw.server_config(settings), early_data=True)

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                server = await nursery.start(partial(quic.serve, gw._handler, 0, config, host=HOST))
                print(f"{PORT_PREFIX}{server.port}", flush=True)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    trio.run(main)


def _aq_server(settings: Settings) -> None:
    import signal

    from aioquic.asyncio.server import serve

    from . import aq

    tickets: dict[bytes, Any] = {}

    async def main() -> None:
        server = await serve(
            HOST,
            0,
            configuration=aq.server_config(settings),
            create_protocol=aq.ServerProtocol,
            session_ticket_fetcher=tickets.get,  # aioquic's way: the server keeps tickets
            session_ticket_handler=lambda t: tickets.__setitem__(t.ticket, t),
        )
        assert server._transport is not None
        print(f"{PORT_PREFIX}{server._transport.get_extra_info('sockname')[1]}", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        server.close()

    asyncio.run(main())


# -- clients ------------------------------------------------------------------------


async def _gw_connect_once(config: Any, port: int) -> tuple[float | None, float, bool]:
    import ghostwire.quic as quic

    start = time.perf_counter()
    async with quic.connect(HOST, port, config) as conn:
        connected = None if not conn.handshake_complete else time.perf_counter() - start
        stream = await conn.open_stream()
        await stream.send_all(PAYLOAD)
        await stream.send_eof()
        reply = b""
        while chunk := await stream.receive_some():
            reply += chunk
        first_reply = time.perf_counter() - start
        if reply != PAYLOAD:
            raise RuntimeError("wrong reply")
        await conn.wait_handshake()
        store = config.session_tickets
        if store is not None and not len(store):
            await conn.ping()  # the ticket comes before the answer to it
        return connected, first_reply, conn.resumed


def _gw_client(port: int, settings: Settings, connects: int, server_pid: int) -> dict[str, Any]:
    import trio

    from ghostwire.quic.tls import MemoryTicketStore

    from . import gw

    async def main() -> dict[str, Any]:
        out = {}
        for mode in MODES:
            store = None if mode == "full" else MemoryTicketStore()
            config = dataclasses.replace(
                gw.client_config(settings), session_tickets=store, early_data=mode == "0rtt"
            )
            try:
                out[mode] = await _measure(
                    partial(_gw_connect_once, config, port), connects, server_pid
                )
            except Exception as exc:
                raise RuntimeError(f"ghostwire, mode {mode}") from exc
        return out

    return trio.run(main)


async def _aq_connect_once(
    settings: Settings, port: int, mode: str, state: dict[str, Any]
) -> tuple[float | None, float, bool]:
    from aioquic.asyncio.client import connect

    from . import aq

    config = aq.client_config(settings)
    if mode != "full":
        config.session_ticket = state.pop("ticket", None)
    handler = None if mode == "full" else (lambda t: state.__setitem__("ticket", t))
    start = time.perf_counter()
    async with connect(
        HOST,
        port,
        configuration=config,
        create_protocol=aq.ClientProtocol,
        session_ticket_handler=handler,
        wait_connected=mode != "0rtt",
    ) as protocol:
        connected = None if mode == "0rtt" else time.perf_counter() - start
        reply = await protocol.request(PAYLOAD)
        first_reply = time.perf_counter() - start
        if reply != PAYLOAD:
            raise RuntimeError("wrong reply")
        if handler is not None:
            for _ in range(100):  # the ticket follows the handshake
                if "ticket" in state:
                    break
                await protocol.ping()
        return connected, first_reply, protocol._quic.tls.session_resumed


def _aq_client(port: int, settings: Settings, connects: int, server_pid: int) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        out = {}
        for mode in MODES:
            state: dict[str, Any] = {}
            out[mode] = await _measure(
                partial(_aq_connect_once, settings, port, mode, state), connects, server_pid
            )
        return out

    return asyncio.run(main())


async def _measure(once: Any, connects: int, server_pid: int) -> dict[str, Any]:
    for _ in range(WARMUP):
        await once()
    connected: list[float] = []
    first: list[float] = []
    resumed = 0
    cpu = CpuMeter(server_pid)
    for _ in range(connects):
        c, f, r = await once()
        if c is not None:
            connected.append(c)
        first.append(f)
        resumed += r
    per = cpu.per_request(connects)
    return {
        "connect_ms": median(connected) * 1e3 if connected else None,
        "connect_p99_ms": percentile(connected, 0.99) * 1e3 if connected else None,
        "first_reply_ms": median(first) * 1e3,
        "first_reply_p99_ms": percentile(first, 0.99) * 1e3,
        "server_cpu_us": per["server_cpu_us_per_request"],
        "client_cpu_us": per["client_cpu_us_per_request"],
        "resumed": resumed,
        "connects": connects,
    }


# -- the orchestrator ---------------------------------------------------------------


def _run_stack(stack: str, settings: Settings, connects: int, timeout: float) -> dict[str, Any]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    me = [sys.executable, "-m", "bench.resumption"]
    server = subprocess.Popen(
        [*me, "server", stack, settings.to_json()], stdout=subprocess.PIPE, env=env
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline().decode()
        if not line.startswith(PORT_PREFIX):
            raise RuntimeError(f"{stack} server did not start")
        port = line[len(PORT_PREFIX) :].strip()
        args = [*me, "client", stack, settings.to_json(), port, str(server.pid), str(connects)]
        out = subprocess.run(args, capture_output=True, env=env, timeout=timeout, check=False)
        if out.returncode:
            raise RuntimeError(f"{stack} client failed: {out.stderr.decode()[-3000:]}")
        for text in out.stdout.decode().splitlines():
            if text.startswith(RESULT_PREFIX):
                result: dict[str, Any] = json.loads(text[len(RESULT_PREFIX) :])
                return result
        raise RuntimeError(f"{stack} client gave no result: {out.stderr.decode()[-1500:]}")
    finally:
        server.terminate()
        try:
            server.wait(3)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


ROWS = (
    ("connect_ms", "connect latency, median (ms)"),
    ("first_reply_ms", "connect + first reply, median (ms)"),
    ("first_reply_p99_ms", "connect + first reply, p99 (ms)"),
    ("server_cpu_us", "server CPU per connection (us)"),
    ("client_cpu_us", "client CPU per connection (us)"),
)


def _table(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| mode | metric | ghostwire | aioquic | ratio gw/aq |",
        "|---|---|---:|---:|---:|",
    ]
    gw, aq = results["ghostwire"], results["aioquic"]
    for mode in MODES:
        for key, label in ROWS:
            a, b = gw[mode][key], aq[mode][key]
            if a is None or b is None:
                continue
            digits = 0 if "cpu" in key else 3
            lines.append(f"| {mode} | {label} | {a:.{digits}f} | {b:.{digits}f} | {a / b:.2f} |")
    for mode in MODES:
        for stack, result in results.items():
            if mode != "full" and result[mode]["resumed"] != result[mode]["connects"]:
                lines.append(f"\nWARNING: {stack} {mode}: only {result[mode]['resumed']} resumed")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.resumption")
    parser.add_argument("role", nargs="?", choices=["server", "client"])
    parser.add_argument("rest", nargs="*")
    parser.add_argument("--connects", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    if args.role == "server":
        stack, settings_json = args.rest
        settings = Settings.from_json(settings_json)
        (_gw_server if stack == "ghostwire" else _aq_server)(settings)
        return
    if args.role == "client":
        stack, settings_json, port, server_pid, connects = args.rest
        settings = Settings.from_json(settings_json)
        client = _gw_client if stack == "ghostwire" else _aq_client
        result = client(int(port), settings, int(connects), int(server_pid))
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings(certs=CertFiles.create(Path(directory)), max_datagram_size=1200)
        print(f"load average before: {os.getloadavg()}", flush=True)
        results = {s: _run_stack(s, settings, args.connects, args.timeout) for s in STACKS}
        print(f"load average after: {os.getloadavg()}")
    print(_table(results))


if __name__ == "__main__":
    main()
