"""Calls through a client of 3 endpoints while one endpoint restarts every few seconds.

    python -m bench.rpc.restart [--quick] [--seconds S] [--period P] [--concurrency C]

Three ``ghostwire.rpc`` servers run in subprocesses on 127.0.0.1. One client
(this process) keeps ``--concurrency`` idempotent ``echo`` calls in flight
through ``rpc.connect([a, b, c])`` for ``--seconds``. Every ``--period``
seconds the next server restarts on the same port, alternately

* **drained**: SIGTERM, the server runs ``Server.shutdown`` (refusals, then
  GOAWAY_CLOSE_CODE) and exits; and
* **killed**: SIGKILL, nothing is said; the client notices by its pings;

and is started again at once. Meanwhile the client's metrics are served in
Prometheus's text format on a loopback HTTP port and scraped every second
(parsed with prometheus-client), as a Prometheus server would.

Reported: calls/s, p50 / p99 / max latency, failed calls by status, the
restarts, and what the scrapes saw (count, samples, the endpoints'
reconnects). ``--quick`` runs about 15 s.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import trio

import ghostwire.quic as quic
import ghostwire.rpc as rpc
from ghostwire.rpc.resilience import BackoffPolicy

from ..common import CertFiles
from .common import HOST, PORT_PREFIX, SERVER_NAME, payload

ENDPOINTS = 3

bench = rpc.Service("bench")


@bench.call(idempotent=True)
async def echo(ctx: rpc.Context, body: bytes) -> bytes:
    return body


# -- the server processes --------------------------------------------------------------


def serve(certfile: str, keyfile: str, port: int) -> None:
    """A server process: prints ``PORT n``; drains and exits on SIGTERM."""

    async def main() -> None:
        config = quic.ServerConfig(certfile=certfile, keyfile=keyfile)
        server = rpc.Server([bench], config=config)
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                serving = functools.partial(server.serve, port, host=HOST)
                listener = await nursery.start(serving)
                print(f"{PORT_PREFIX}{listener.port}", flush=True)
                async for _ in signals:
                    await server.shutdown(grace=5.0)
                    return

    trio.run(main)


class ServerProcess:
    def __init__(self, certs: CertFiles) -> None:
        self.certs = certs
        self.port = 0
        self.process: trio.Process | None = None

    async def start(self) -> None:
        command = [sys.executable, "-m", "bench.rpc.restart", "--serve", str(self.port)]
        command += [self.certs.certfile, self.certs.keyfile]
        self.process = await trio.lowlevel.open_process(command, stdout=subprocess.PIPE)
        stdout = self.process.stdout
        assert stdout is not None
        output = b""
        with trio.fail_after(30):
            while b"\n" not in output:
                chunk = await stdout.receive_some()
                if not chunk:
                    raise RuntimeError(f"server process ended: {output!r}")
                output += chunk
        line = output.decode().splitlines()[0]
        self.port = int(line[len(PORT_PREFIX) :])

    async def stop(self, sig: int) -> None:
        process = self.process
        if process is not None and process.returncode is None:
            process.send_signal(sig)
            with trio.move_on_after(10):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


# -- the Prometheus endpoint and its scraper -------------------------------------------


async def serve_metrics(client: rpc.Client, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """A minimal HTTP/1.0 endpoint answering every GET with the exposition."""
    from ghostwire.rpc.resilience.prometheus import exposition

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = await stream.receive_some()
                if not chunk:
                    return
                request += chunk
            body = exposition(client.metrics)
            head = (
                "HTTP/1.0 200 OK\r\n"
                "Content-Type: text/plain; version=0.0.4\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            await stream.send_all(head.encode() + body)

    listeners = await trio.open_tcp_listeners(0, host=HOST)
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)


async def scrape(port: int) -> dict[str, float]:
    """GET /metrics; the samples by name (summed over labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    stream = await trio.open_tcp_stream(HOST, port)
    async with stream:
        await stream.send_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        response = b""
        while chunk := await stream.receive_some():
            response += chunk
    text = response.split(b"\r\n\r\n", 1)[1].decode()
    samples: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name] += sample.value
    return dict(samples)


# -- the run ----------------------------------------------------------------------------


class Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.failures: Counter[str] = Counter()
        self.restarts: list[str] = []
        self.scrapes: list[dict[str, float]] = []


async def load(client: rpc.Client, tally: Tally, until: float) -> None:
    body = payload()
    while time.monotonic() < until:
        start = time.perf_counter()
        try:
            with trio.fail_after(10):
                await client.call("bench.echo", body)
        except rpc.RpcError as exc:
            tally.failures[exc.status.name] += 1
        except trio.TooSlowError:
            tally.failures["HUNG_10S"] += 1
        else:
            tally.latencies.append(time.perf_counter() - start)


async def restarter(
    servers: list[ServerProcess], period: float, tally: Tally, until: float
) -> None:
    index = 0
    while time.monotonic() + period < until:
        await trio.sleep(period)
        server = servers[index % len(servers)]
        sig = signal.SIGTERM if index % 2 == 0 else signal.SIGKILL
        await server.stop(sig)
        await server.start()
        tally.restarts.append(f"{server.port}:{'drained' if sig == signal.SIGTERM else 'killed'}")
        index += 1


async def scraper(port: int, tally: Tally, until: float) -> None:
    while time.monotonic() < until:
        await trio.sleep(1.0)
        tally.scrapes.append(await scrape(port))


async def run(seconds: float, period: float, concurrency: int) -> Tally:
    tally = Tally()
    with tempfile.TemporaryDirectory() as tmp:
        certs = CertFiles.create(Path(tmp))
        servers = [ServerProcess(certs) for _ in range(ENDPOINTS)]
        try:
            for server in servers:
                await server.start()
            config = quic.ClientConfig(cafile=certs.cafile, server_name=SERVER_NAME)
            options = rpc.PoolOptions(backoff=BackoffPolicy(initial=0.2, max_backoff=2.0))
            addresses = [f"{HOST}:{s.port}" for s in servers]
            async with rpc.connect(addresses, config=config, options=options) as client:
                async with trio.open_nursery() as nursery:
                    metrics_port = await nursery.start(serve_metrics, client)
                    until = time.monotonic() + seconds
                    async with trio.open_nursery() as work:
                        work.start_soon(restarter, servers, period, tally, until)
                        work.start_soon(scraper, metrics_port, tally, until)
                        for _ in range(concurrency):
                            work.start_soon(load, client, tally, until)
                    nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                for server in servers:
                    await server.stop(signal.SIGKILL)
    return tally


def report(tally: Tally, seconds: float, concurrency: int) -> str:
    latencies = sorted(tally.latencies)

    def pct(fraction: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(fraction * len(latencies)))] * 1000

    last = tally.scrapes[-1] if tally.scrapes else {}
    lines = [
        f"endpoints {ENDPOINTS}, concurrency {concurrency}, {seconds:.0f} s",
        f"calls/s   {len(latencies) / seconds:,.0f}",
        f"latency   p50 {pct(0.50):.2f} ms  p99 {pct(0.99):.2f} ms  max {pct(1.0):.1f} ms",
        f"failed    {sum(tally.failures.values())} {dict(tally.failures)}",
        f"restarts  {len(tally.restarts)}: {', '.join(tally.restarts)}",
        f"scrapes   {len(tally.scrapes)}, {len(last)} sample names in the last; "
        f"reconnects {last.get('ghostwire_rpc_endpoint_reconnects_total', 0):.0f}, "
        f"calls {last.get('ghostwire_rpc_client_calls_total', 0):,.0f}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rpc.restart", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (about 15 s)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--period", type=float, default=4.0, help="seconds between restarts")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "CERTFILE", "KEYFILE"))
    args = parser.parse_args(argv)
    if args.serve:
        port, certfile, keyfile = args.serve
        serve(certfile, keyfile, int(port))
        return
    seconds = 15.0 if args.quick else args.seconds
    period = 3.0 if args.quick else args.period
    os.environ.setdefault("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    tally = trio.run(run, seconds, period, args.concurrency)
    print(report(tally, seconds, args.concurrency))


if __name__ == "__main__":
    main()
