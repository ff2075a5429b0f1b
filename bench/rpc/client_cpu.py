"""The ghostwire RPC client's CPU per call, by difference (no profiler).

    python -m bench.rpc.client_cpu                        # this tree, 3 rounds
    python -m bench.rpc.client_cpu --tree /tmp/before .   # trees alternated
    python -m bench.rpc.client_cpu --workload c1 --rounds 5

For each tree (a checkout or an exported copy of the repository), a
ghostwire server of ``python -m bench.rpc`` runs; each round runs the
bench's client twice against it, with ``--small`` and with ``--big`` calls,
and reports (CPU of the big run - CPU of the small one) / (big - small):
the process's start, imports and handshake cancel out, leaving what one
more call costs (user + system time of the client process, from
``getrusage``). Trees are alternated round by round (their order flipped
every other round) so a change of load hits them alike; the median per
tree is printed at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from ..common import CertFiles
from .common import PORT_PREFIX, WORKLOADS


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _worker(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench.rpc.worker", *args]


def _env(tree: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=tree)


def _client_cpu(tree: str, workload: str, port: int, cafile: str, pid: int, calls: int) -> float:
    before = _children_cpu()
    command = _worker("client", "ghostwire", workload, str(port), cafile, str(pid))
    subprocess.run(
        [*command, str(calls)], capture_output=True, env=_env(tree), cwd=tree, check=True
    )
    return _children_cpu() - before


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rpc.client_cpu")
    parser.add_argument("--tree", action="append", help="a source tree (repeat to compare)")
    parser.add_argument(
        "--workload", default="c64", choices=[w for w in WORKLOADS if w != "events"]
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--big", type=int, default=11000)
    args = parser.parse_args(argv)
    trees = [str(Path(tree).resolve()) for tree in (args.tree or ["."])]
    per_call: dict[str, list[float]] = {tree: [] for tree in trees}
    with tempfile.TemporaryDirectory() as tmp:
        certs = CertFiles.create(Path(tmp))
        servers: dict[str, tuple[subprocess.Popen[str], int]] = {}
        try:
            for tree in trees:
                server = subprocess.Popen(
                    _worker("server", "ghostwire", certs.certfile, certs.keyfile),
                    stdout=subprocess.PIPE,
                    text=True,
                    env=_env(tree),
                    cwd=tree,
                )
                assert server.stdout is not None
                line = server.stdout.readline()
                servers[tree] = (server, int(line[len(PORT_PREFIX) :]))
            for round_ in range(args.rounds):
                for tree in trees if round_ % 2 == 0 else trees[::-1]:
                    server, port = servers[tree]
                    run = (tree, args.workload, port, certs.cafile, server.pid)
                    small = _client_cpu(*run, args.small)
                    big = _client_cpu(*run, args.big)
                    us = (big - small) / (args.big - args.small) * 1e6
                    per_call[tree].append(us)
                    load = os.getloadavg()[0]
                    print(f"round {round_ + 1} {tree}: {us:.1f} us per call (load {load:.2f})")
        finally:
            for server, _ in servers.values():
                server.terminate()
                server.wait()
    for tree, values in per_call.items():
        figures = ", ".join(f"{v:.1f}" for v in values)
        print(f"{tree}: median {statistics.median(values):.1f} us per call ({figures})")


if __name__ == "__main__":
    main()
