"""RPC bench: ghostwire.rpc beside grpcio and grpclib, in one run.

    python -m bench.rpc                 # full sizes
    python -m bench.rpc --quick         # small sizes, about a minute
    python -m bench.rpc --stacks ghostwire,grpcio-aio --workloads c64
    python -m bench.rpc --repeat 3      # 3 runs per workload and stack, the best shown

The stacks' servers run side by side; each workload is run for every stack
in turn (``--repeat`` times), so the ratios compare runs minutes apart at
most. Every stack serves the same unary echo (100-byte request and reply)
and event stream over TLS on loopback, server and client in separate
processes (see ``bench/rpc/common.py``). The table shows, per metric, each stack and the
ratio of ghostwire to the best gRPC stack for that metric.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ..common import CertFiles
from .common import PORT_PREFIX, RESULT_PREFIX, STACKS, WORKLOADS, Result, in_flight_label

FULL = {
    "latency": 2000,
    "c1": 2000,
    "c64": 20_000,
    "c64-await": 20_000,
    "c1024": 20_000,
    "events": 50_000,
}
QUICK = {
    "latency": 300,
    "c1": 300,
    "c64": 3000,
    "c64-await": 3000,
    "c1024": 3000,
    "events": 5000,
}
WORKER = [sys.executable, "-m", "bench.rpc.worker"]


def _percentile(samples: list[float], fraction: float) -> float:
    if not samples:
        return math.nan
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def _start_server(stack: str, certs: CertFiles) -> tuple[subprocess.Popen[str], int]:
    server = subprocess.Popen(
        [*WORKER, "server", stack, certs.certfile, certs.keyfile],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    if not line.startswith(PORT_PREFIX):
        server.kill()
        raise RuntimeError(f"{stack} server did not start: {line!r}")
    return server, int(line[len(PORT_PREFIX) :])


def _run_client(
    stack: str,
    workload: str,
    port: int,
    certs: CertFiles,
    server_pid: int,
    count: int,
    timeout: float,
) -> Result:
    command = [
        *WORKER,
        "client",
        stack,
        workload,
        str(port),
        certs.cafile,
        str(server_pid),
        str(count),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return Result.from_line(line)
    raise RuntimeError(f"{stack} {workload} failed:\n{done.stderr[-2000:]}")


def _metrics(results: dict[str, Result]) -> dict[str, float]:
    out: dict[str, float] = {}
    if "latency" in results:
        lat = results["latency"].latencies
        out["p50 latency, 1 in flight (ms)"] = _percentile(lat, 0.5) * 1e3
        out["p99 latency, 1 in flight (ms)"] = _percentile(lat, 0.99) * 1e3
    for name, in_flight in WORKLOADS.items():
        if name in ("latency", "events") or name not in results:
            continue
        r = results[name]
        label = in_flight_label(name)
        out[f"calls/s, {label}"] = r.operations / r.seconds
        out[f"server CPU per call, {label} (us)"] = r.server_cpu / r.operations * 1e6
        out[f"client CPU per call, {label} (us)"] = r.client_cpu / r.operations * 1e6
        if in_flight > 1:
            out[f"p99 latency, {label} (ms)"] = _percentile(r.latencies, 0.99) * 1e3
    if "events" in results:
        r = results["events"]
        out["events/s, one subscription"] = r.operations / r.seconds
        out["server CPU per event (us)"] = r.server_cpu / r.operations * 1e6
    return out


def _best(workload: str, runs: list[Result]) -> Result:
    """The best of several runs: the lowest median latency for ``latency``,
    else the most operations per second (its CPU figures come with it)."""
    if workload == "latency":
        return min(runs, key=lambda r: _percentile(r.latencies, 0.5))
    return max(runs, key=lambda r: r.operations / r.seconds if r.seconds else 0.0)


def _summary(workload: str, r: Result) -> str:
    if workload == "latency":
        return f"p50 {_percentile(r.latencies, 0.5) * 1e3:.3f} ms"
    per = max(1, r.operations)
    return (
        f"{r.operations / r.seconds:,.0f}/s, server {r.server_cpu / per * 1e6:.0f} us, "
        f"client {r.client_cpu / per * 1e6:.0f} us per operation"
    )


def _load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _higher_is_better(metric: str) -> bool:
    return metric.startswith(("calls/s", "events/s"))


def _table(by_stack: dict[str, dict[str, float]]) -> str:
    stacks = list(by_stack)
    metrics = [m for m in next(iter(by_stack.values()))]
    head = "| metric | " + " | ".join(stacks) + " | ghostwire / best gRPC |"
    lines = [head, "|---" * (len(stacks) + 2) + "|"]
    for metric in metrics:
        row = [by_stack[s].get(metric, math.nan) for s in stacks]
        peers = [by_stack[s].get(metric, math.nan) for s in stacks if s != "ghostwire"]
        peers = [p for p in peers if not math.isnan(p)]
        ratio = "n/a"
        if "ghostwire" in by_stack and peers:
            best = max(peers) if _higher_is_better(metric) else min(peers)
            ratio = f"{by_stack['ghostwire'][metric] / best:.2f}"
        cells = " | ".join(f"{v:,.1f}" if v >= 100 else f"{v:.3g}" for v in row)
        lines.append(f"| {metric} | {cells} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rpc")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--stacks", default=",".join(STACKS))
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per workload and stack; the best is shown"
    )
    parser.add_argument("--markdown", default=None, help="also write the table to this file")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    workloads = args.workloads.split(",")
    stacks = args.stacks.split(",")
    runs: dict[str, dict[str, list[Result]]] = {stack: {} for stack in stacks}
    load_before = _load_average()
    with tempfile.TemporaryDirectory() as tmp:
        certs = CertFiles.create(Path(tmp))
        servers: dict[str, tuple[subprocess.Popen[str], int]] = {}
        try:
            for stack in stacks:
                servers[stack] = _start_server(stack, certs)
            # Workload by workload, the stacks in turn within each run: a
            # change of the machine's load hits every stack alike.
            for workload in workloads:
                for run in range(args.repeat):
                    for stack in stacks:
                        server, port = servers[stack]
                        print(
                            f"# {stack} {workload} run {run + 1} ...", file=sys.stderr, flush=True
                        )
                        result = _run_client(
                            stack, workload, port, certs, server.pid, sizes[workload], args.timeout
                        )
                        print(f"#   {_summary(workload, result)}", file=sys.stderr, flush=True)
                        runs[stack].setdefault(workload, []).append(result)
        finally:
            for server, _ in servers.values():
                server.kill()
                server.wait()
    by_stack: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    for stack in stacks:
        results = {w: _best(w, each) for w, each in runs[stack].items()}
        by_stack[stack] = _metrics(results)
        for workload, each in runs[stack].items():
            failures = [r.failures for r in each if r.failures]
            if failures:
                notes.append(f"{stack} {workload}: failed calls {failures}")
    notes.append(f"load average (1, 5, 15 min): before {load_before}, after {_load_average()}")
    table = _table(by_stack)
    if notes:
        table += "\n\n" + "\n".join(f"- {note}" for note in notes)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
