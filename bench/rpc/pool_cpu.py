"""The RPC client's pool alone: CPU per call above ``RpcConnection.call_at``.

    python -m bench.rpc.pool_cpu                          # this tree
    python -m bench.rpc.pool_cpu --tree /tmp/before .     # trees alternated
    python -m bench.rpc.pool_cpu --in-flight 1 --runs 7

A ghostwire server and an ``rpc.connect`` client run in one process (TLS,
loopback); after 200 real calls, ``RpcConnection.call_at`` is replaced by a
stub that returns at once, and ``--calls`` calls are made through
``Client.call`` from ``--in-flight`` tasks. What is measured is what the
client does per call above the connection: ``Client.call``, ``Pool.call``,
the deadline, the balancer's pick and the lease, the connection's choice
(links), metrics, the retry budget. No packet is sent while measuring, so
the figure does not depend on how calls batch into datagrams: it resolves
changes of ~0.1 us where the whole client (``bench.rpc.client_cpu``) swings
by 10% under load. Each run prints the min and median of ``--repeat``
measurements (``process_time``); trees are alternated run by run (a tree
need not have this file: it is run against the tree's modules).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_ROLE = "--measure"


def _measure(calls: int, in_flight: int, repeat: int) -> None:
    # Imported here, absolute: this runs as a script against the tree on PYTHONPATH.
    import trio

    import ghostwire.quic as quic
    import ghostwire.rpc as rpc
    from bench.common import CertFiles
    from bench.rpc.common import HOST, SERVER_NAME, payload
    from bench.rpc.gw_stack import bench
    from ghostwire.rpc.client import RpcConnection

    async def stub(self: Any, *args: Any, **kwargs: Any) -> bytes:
        return b""

    async def main(certs: CertFiles) -> list[float]:
        config = quic.ServerConfig(certfile=certs.certfile, keyfile=certs.keyfile)
        server = rpc.Server([bench], config=config)
        async with trio.open_nursery() as nursery:
            listener = await nursery.start(server.serve, 0)
            client_config = quic.ClientConfig(cafile=certs.cafile, server_name=SERVER_NAME)
            async with rpc.connect(f"{HOST}:{listener.port}", config=client_config) as client:
                body = payload()
                for _ in range(200):
                    await client.call("bench.echo", body=body)
                RpcConnection.call_at = stub  # type: ignore[method-assign]
                figures = []
                for _ in range(repeat):

                    async def worker(n: int) -> None:
                        for _ in range(n):
                            await client.call("bench.echo", body=body)

                    started = time.process_time()
                    async with trio.open_nursery() as workers:
                        for _ in range(in_flight):
                            workers.start_soon(worker, calls // in_flight)
                    per_call = (time.process_time() - started) / (calls // in_flight * in_flight)
                    figures.append(per_call * 1e6)
            nursery.cancel_scope.cancel()
        return figures

    with tempfile.TemporaryDirectory() as tmp:
        figures = trio.run(main, CertFiles.create(Path(tmp)))
    print(f"{min(figures):.3f} {statistics.median(figures):.3f}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == _ROLE:
        _measure(*(int(value) for value in argv[1:4]))
        return
    parser = argparse.ArgumentParser(prog="python -m bench.rpc.pool_cpu")
    parser.add_argument("--tree", action="append", help="a source tree (repeat to compare)")
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5, help="measurements per run")
    parser.add_argument("--runs", type=int, default=3, help="runs per tree")
    args = parser.parse_args(argv)
    trees = [str(Path(tree).resolve()) for tree in (args.tree or ["."])]
    mins: dict[str, list[float]] = {tree: [] for tree in trees}
    for run in range(args.runs):
        for tree in trees if run % 2 == 0 else trees[::-1]:
            # This file, run against the other tree's ghostwire and bench modules.
            command = [sys.executable, str(Path(__file__).resolve()), _ROLE]
            command += [str(args.calls), str(args.in_flight), str(args.repeat)]
            env = dict(os.environ, PYTHONPATH=tree)
            done = subprocess.run(
                command, capture_output=True, text=True, env=env, cwd=tree, check=True
            )
            low, median = (float(value) for value in done.stdout.split())
            mins[tree].append(low)
            load = os.getloadavg()[0]
            print(f"run {run + 1} {tree}: min {low:.2f}, median {median:.2f} us (load {load:.2f})")
    for tree, values in mins.items():
        figures = ", ".join(f"{v:.2f}" for v in values)
        print(f"{tree}: median of the mins {statistics.median(values):.2f} us ({figures})")


if __name__ == "__main__":
    main()
