"""10,000 idle connections to one server process: server RSS per connection.

    python -m bench.conns                     # ghostwire and aioquic, 10,000 each
    python -m bench.conns --connections 2000 --stacks ghostwire

Reuses the bench's ``memory`` workload (bench/gw.py, bench/aq.py): 10 warm-up
connections, server RSS read, then N connections opened (16 handshakes at a
time) by one client process and left idle, RSS read again; the figure is
(RSS after - RSS before) / N. The client holds one UDP socket per connection,
so the soft ``RLIMIT_NOFILE`` is raised to the hard limit first (children
inherit it), and the idle timeout is raised so the first connections outlive
the setup of the last. ``--stacks ghostwire,aioquic,qh3`` adds qh3 (the
aioquic workload on qh3, bench/qh.py).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from .__main__ import machine_info, run_workload
from .common import CertFiles, Settings, Sizes

STACKS = ("ghostwire", "aioquic")


def raise_fd_limit(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.conns", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--stacks", default=",".join(STACKS))
    parser.add_argument("--timeout", type=float, default=1200.0, help="per stack (s)")
    args = parser.parse_args(argv)
    limit = raise_fd_limit(args.connections + 256)
    if limit < args.connections + 64:
        print(f"RLIMIT_NOFILE is {limit}: cannot hold {args.connections} client sockets")
        return 1
    # Setup takes minutes under load: connections must not idle out meanwhile.
    os.environ["GW_BENCH_IDLE_TIMEOUT"] = str(max(600.0, args.timeout))
    sizes = Sizes.full()
    sizes.idle_connections = args.connections
    print("command: python -m bench.conns " + " ".join(sys.argv[1:]))
    for key, value in machine_info().items():
        print(f"{key}: {value}")
    print(f"fd limit: {limit}")
    per_connection: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="gw-conns-") as directory:
        settings = Settings(CertFiles.create(Path(directory)), 1200)
        for stack in [s for s in args.stacks.split(",") if s]:
            started = time.perf_counter()
            outcome = run_workload(stack, "memory", settings, sizes, args.timeout)
            took = time.perf_counter() - started
            if outcome.error or outcome.measurement is None:
                print(f"{stack}: FAILED after {took:.0f}s: {outcome.error}")
                continue
            values = outcome.measurement.values
            per_connection[stack] = values["per_connection"] / 1024
            print(
                f"{stack}: {int(values['connections'])} idle connections, "
                f"RSS {values['rss_before'] / 2**20:.1f} -> {values['rss_after'] / 2**20:.1f} MiB, "
                f"{per_connection[stack]:.1f} KiB/connection "
                f"(setup {values['setup_seconds']:.0f}s, run {took:.0f}s)"
            )
    if "ghostwire" in per_connection and "aioquic" in per_connection:
        ratio = per_connection["ghostwire"] / per_connection["aioquic"]
        print(f"ghostwire / aioquic memory per connection: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
