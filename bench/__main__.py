"""ghostwire vs aioquic: the same QUIC and HTTP/3 workloads on both stacks, in one run.

Run from the repository root::

    python -m bench            # full run (a few minutes)
    python -m bench --quick    # smaller sizes, under a minute

Every (workload, stack) pair gets a fresh server process and a client
process, both on 127.0.0.1; each is bounded by a timeout and killed at the
end. A stack that fails a workload (error, timeout, wrong data) is reported
as failed and the run goes on. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import pstats
import selectors
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from .common import (
    DEFAULT_STACKS,
    PORT_PREFIX,
    RESULT_PREFIX,
    STACKS,
    CertFiles,
    Measurement,
    Settings,
    Sizes,
    median,
    percentile,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ("bulk", "handshake", "handshake8", "rr", "rps", "memory", "h3rr", "h3rps")
# Workloads whose server speaks HTTP/3 (the others: the raw echo protocol).
H3_WORKLOADS = ("h3rr", "h3rps")
SERVER_START_TIMEOUT = 20.0
# Client timeouts per workload (seconds), full and --quick.
TIMEOUTS = {
    "bulk": 300.0, "handshake": 120.0, "handshake8": 120.0, "rr": 120.0, "rps": 180.0,
    "memory": 300.0, "h3rr": 120.0, "h3rps": 120.0,
}  # fmt: skip
QUICK_TIMEOUTS = {
    "bulk": 30.0, "handshake": 20.0, "handshake8": 20.0, "rr": 20.0, "rps": 20.0,
    "memory": 30.0, "h3rr": 20.0, "h3rps": 20.0,
}  # fmt: skip


@dataclass
class Outcome:
    """One stack's run of one workload: a measurement, or why there is none."""

    measurement: Measurement | None = None
    error: str | None = None
    wall_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)  # each run's headline, with --repeat


# -- processes ----------------------------------------------------------------


def _worker_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench.worker", *args]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.pop("SSLKEYLOGFILE", None)  # would make both stacks write secrets
    return env


def _tail(handle: IO[bytes], limit: int = 1500) -> str:
    handle.flush()
    handle.seek(0)
    text = handle.read().decode(errors="replace").strip()
    return text[-limit:]


def _stop(proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)


def _read_port(proc: subprocess.Popen[bytes], timeout: float) -> int:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"server did not listen within {timeout:g}s")
            if not selector.select(left):
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError(f"server exited (code {proc.wait()}) before listening")
            buffer += chunk
            for line in buffer.decode(errors="replace").splitlines():
                if line.startswith(PORT_PREFIX):
                    return int(line[len(PORT_PREFIX) :])


@contextlib.contextmanager
def _server(
    stack: str,
    settings: Settings,
    stderr: IO[bytes],
    profile: str | None = None,
    protocol: str = "raw",
) -> Iterator[subprocess.Popen[bytes]]:
    args = ["server", stack, settings.to_json(), "--protocol", protocol]
    if profile is not None:
        args += ["--profile", profile]
    proc = subprocess.Popen(
        _worker_command(*args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        cwd=REPO_ROOT,
        env=_child_env(),
    )
    try:
        yield proc
    finally:
        _stop(proc)
        if proc.stdout is not None:
            proc.stdout.close()


def run_workload(
    stack: str,
    workload: str,
    settings: Settings,
    sizes: Sizes,
    timeout: float,
    profile_dir: str | None = None,
) -> Outcome:
    """Start a server, run one client workload against it, stop both."""
    started = time.perf_counter()
    outcome = Outcome()
    with (
        tempfile.TemporaryFile() as server_err,
        tempfile.TemporaryFile() as client_err,
        tempfile.TemporaryFile() as client_out,
    ):
        server_profile = client_profile = None
        if profile_dir is not None:
            server_profile = os.path.join(profile_dir, f"{stack}-{workload}-server.prof")
            client_profile = os.path.join(profile_dir, f"{stack}-{workload}-client.prof")
        try:
            protocol = "h3" if workload in H3_WORKLOADS else "raw"
            with _server(stack, settings, server_err, server_profile, protocol) as server:
                port = _read_port(server, SERVER_START_TIMEOUT)
                args = [
                    "client", stack, settings.to_json(), workload, str(port),
                    str(server.pid), json.dumps(asdict(sizes)),
                ]  # fmt: skip
                if client_profile is not None:
                    args += ["--profile", client_profile]
                client = subprocess.Popen(
                    _worker_command(*args),
                    stdin=subprocess.DEVNULL,
                    stdout=client_out,
                    stderr=client_err,
                    cwd=REPO_ROOT,
                    env=_child_env(),
                )
                timed_out = False
                try:
                    client.wait(timeout)
                except subprocess.TimeoutExpired:
                    timed_out = True
                finally:
                    _stop(client)
                server_code = server.poll()
        except (OSError, RuntimeError, TimeoutError) as exc:
            outcome.error = f"{type(exc).__name__}: {exc}"
            tail = _tail(server_err)
            if tail:
                outcome.error += f"\n  server stderr: {tail}"
            outcome.wall_seconds = time.perf_counter() - started
            return outcome

        client_out.seek(0)
        for line in client_out.read().decode(errors="replace").splitlines():
            if line.startswith(RESULT_PREFIX):
                outcome.measurement = Measurement.from_line(line)
        if timed_out:
            message = f"client timed out after {timeout:g}s"
            if outcome.measurement is None:
                outcome.error = message
            else:
                outcome.warnings.append(message + " (after reporting: cleanup hung)")
        elif client.returncode != 0 and outcome.measurement is None:
            outcome.error = f"client exited with code {client.returncode}"
        if outcome.measurement is None and outcome.error is None:
            outcome.error = "client reported no result"
        if outcome.error is not None:
            tail = _tail(client_err)
            if tail:
                outcome.error += f"\n  client stderr: {tail}"
        if server_code is not None:
            outcome.warnings.append(f"server exited early with code {server_code}")
        server_tail = _tail(server_err)
        if server_tail:
            outcome.warnings.append(f"server stderr: {server_tail}")
        client_tail = _tail(client_err)
        if client_tail and outcome.error is None:
            outcome.warnings.append(f"client stderr: {client_tail}")
    outcome.wall_seconds = time.perf_counter() - started
    return outcome


# -- results ------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    workload: str
    name: str
    unit: str
    higher_is_better: bool
    target: str  # "" when the issue sets no target for this metric


METRICS = (
    Metric("bulk", "bulk throughput", "Mbit/s", True, ">= 2.00"),
    Metric("handshake", "handshake latency, median", "ms", False, "<= 1.00"),
    Metric("handshake", "handshake latency, p99", "ms", False, ""),
    Metric("handshake", "server CPU per handshake, sequential", "us", False, ""),
    Metric("handshake", "client CPU per handshake, sequential", "us", False, ""),
    Metric("handshake8", "handshakes/s, 8 in flight", "handshakes/s", True, ""),
    Metric("handshake8", "handshake latency at 8 in flight, median", "ms", False, ""),
    # Issue 13: a server's CPU per full handshake at most half of aioquic's.
    Metric("handshake8", "server CPU per handshake, 8 in flight", "us", False, "<= 0.50"),
    Metric("handshake8", "client CPU per handshake, 8 in flight", "us", False, ""),
    Metric("rr", "request/response latency, median", "ms", False, ""),
    Metric("rr", "request/response latency, p99", "ms", False, ""),
    Metric("rr", "server CPU per request, sequential", "us", False, ""),
    Metric("rr", "client CPU per request, sequential", "us", False, ""),
    Metric("rps", "requests/s, 64 streams in flight", "req/s", True, ""),
    Metric("rps", "server CPU per request, 64 in flight", "us", False, ""),
    Metric("rps", "client CPU per request, 64 in flight", "us", False, ""),
    Metric("memory", "server memory per idle connection", "KiB", False, "< 1.00"),
    Metric("h3rr", "HTTP/3 GET latency, median", "ms", False, ""),
    Metric("h3rr", "HTTP/3 GET latency, p99", "ms", False, ""),
    Metric("h3rps", "HTTP/3 requests/s, 64 in flight", "req/s", True, ""),
    Metric("h3rps", "HTTP/3 server CPU per request, 64 in flight", "us", False, ""),
    Metric("h3rps", "HTTP/3 client CPU per request, 64 in flight", "us", False, ""),
)


def metric_value(metric: Metric, measurement: Measurement) -> float:
    values = measurement.values
    samples_ms = [s * 1000 for s in measurement.samples]
    match metric.name:
        case "bulk throughput":
            return values["mbit_s"]
        case (
            "handshake latency, median"
            | "handshake latency at 8 in flight, median"
            | "request/response latency, median"
            | "HTTP/3 GET latency, median"
        ):
            return median(samples_ms)
        case "handshake latency, p99" | "request/response latency, p99" | "HTTP/3 GET latency, p99":
            return percentile(samples_ms, 0.99)
        case "requests/s, 64 streams in flight" | "HTTP/3 requests/s, 64 in flight":
            return values["rps"]
        case "handshakes/s, 8 in flight":
            return values["handshakes_s"]
        case "server memory per idle connection":
            return values["per_connection"] / 1024
        case (
            "server CPU per handshake, sequential"
            | "server CPU per handshake, 8 in flight"
            | "server CPU per request, sequential"
            | "server CPU per request, 64 in flight"
            | "HTTP/3 server CPU per request, 64 in flight"
        ):
            return values.get("server_cpu_us_per_request", math.nan)
        case (
            "client CPU per handshake, sequential"
            | "client CPU per handshake, 8 in flight"
            | "client CPU per request, sequential"
            | "client CPU per request, 64 in flight"
            | "HTTP/3 client CPU per request, 64 in flight"
        ):
            return values.get("client_cpu_us_per_request", math.nan)
    raise KeyError(metric.name)


def headline(workload: str, measurement: Measurement) -> str:
    """The number a run is judged by, as text (for the progress lines)."""
    key = primary_value(workload, measurement)
    unit = {"bulk": "Mbit/s", "handshake": "ms median",
            "handshake8": "us server CPU/handshake", "rr": "ms median", "rps": "req/s",
            "memory": "KiB/connection", "h3rr": "ms median",
            "h3rps": "req/s"}[workload]  # fmt: skip
    text = f"{_format(key)} {unit}"
    values = measurement.values
    if "handshakes_s" in values:
        text += f" ({values['handshakes_s']:.0f} handshakes/s)"
    elif "server_cpu_us_per_request" in values:
        what = "handshake" if workload == "handshake" else "request"
        text += (
            f" (CPU/{what}: server {values['server_cpu_us_per_request']:.0f} us,"
            f" client {values['client_cpu_us_per_request']:.0f} us)"
        )
    return text


def primary_value(workload: str, measurement: Measurement) -> float:
    name = {
        "bulk": "bulk throughput",
        "handshake": "handshake latency, median",
        # The figure; the lowest of the runs is reported (load only adds CPU).
        "handshake8": "server CPU per handshake, 8 in flight",
        "rr": "request/response latency, median",
        "rps": "requests/s, 64 streams in flight",
        "memory": "server memory per idle connection",
        "h3rr": "HTTP/3 GET latency, median",
        "h3rps": "HTTP/3 requests/s, 64 in flight",
    }[workload]
    metric = next(m for m in METRICS if m.name == name)
    return metric_value(metric, measurement)


def representative(workload: str, outcomes: list[Outcome]) -> Outcome:
    """The run reported for a stack: the best of its successful runs.

    Best is the highest throughput / request rate or the lowest median
    latency (background load only ever slows a run down). For memory it is
    the median run, as load does not bias it one way. Failed runs are listed
    as warnings of the chosen one; with no successful run the first failure
    is reported.
    """
    good = [o for o in outcomes if o.measurement is not None]
    failed = [o for o in outcomes if o.measurement is None]
    if not good:
        chosen = failed[0]
        extra = failed[1:]
    else:
        good.sort(key=lambda o: primary_value(workload, o.measurement))  # type: ignore[arg-type]
        if workload == "memory":
            chosen = good[(len(good) - 1) // 2]
        elif workload in ("bulk", "rps", "h3rps"):
            chosen = good[-1]
        else:
            chosen = good[0]
        extra = failed
    result = Outcome(chosen.measurement, chosen.error, chosen.wall_seconds, list(chosen.warnings))
    result.warnings += [f"another run failed: {o.error}" for o in extra]
    for o in outcomes:
        if o.measurement is None:
            result.runs.append("FAILED")
        else:
            result.runs.append(headline(workload, o.measurement))
    return result


@dataclass
class Row:
    label: str
    ghostwire: str
    aioquic: str
    ratio: str
    target: str
    qh3: str = "not run"  # an optional third column (--stacks ...,qh3)


def _format(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def _target_verdict(target: str, ratio: float) -> str:
    if not target:
        return ""
    if math.isnan(ratio):
        return f"{target}: not measured"
    op, bound_text = target.split()
    bound = float(bound_text)
    met = {">=": ratio >= bound, "<=": ratio <= bound, "<": ratio < bound}[op]
    return f"{target}: {'met' if met else 'MISSED'}"


def build_rows(results: dict[str, dict[str, Outcome]], workloads: list[str]) -> list[Row]:
    rows = []
    for metric in METRICS:
        if metric.workload not in workloads:
            continue
        cells: dict[str, float] = {}
        texts: dict[str, str] = {}
        for stack in STACKS:
            outcome = results.get(metric.workload, {}).get(stack)
            if outcome is None:
                texts[stack] = "not run"
                cells[stack] = math.nan
            elif outcome.measurement is None:
                texts[stack] = "FAILED"
                cells[stack] = math.nan
            else:
                cells[stack] = metric_value(metric, outcome.measurement)
                texts[stack] = _format(cells[stack])
        gw, aq = cells["ghostwire"], cells["aioquic"]
        ratio = gw / aq if aq and not math.isnan(gw) and not math.isnan(aq) else math.nan
        better = "higher" if metric.higher_is_better else "lower"
        rows.append(
            Row(
                label=f"{metric.name} ({metric.unit}, {better} is better)",
                ghostwire=texts["ghostwire"],
                aioquic=texts["aioquic"],
                ratio="n/a" if math.isnan(ratio) else f"{ratio:.2f}",
                target=_target_verdict(metric.target, ratio),
                qh3=texts["qh3"],
            )
        )
    return rows


HEADERS = ("metric", "ghostwire", "aioquic", "ratio gw/aq", "target (on the ratio)")
QH3_HEADER = "qh3"


def _with_qh3(rows: list[Row]) -> bool:
    return any(r.qh3 != "not run" for r in rows)


def _headers(rows: list[Row]) -> tuple[str, ...]:
    return (*HEADERS, QH3_HEADER) if _with_qh3(rows) else HEADERS


def _cells(row: Row, with_qh3: bool = False) -> tuple[str, ...]:
    cells = (row.label, row.ghostwire, row.aioquic, row.ratio, row.target)
    return (*cells, row.qh3) if with_qh3 else cells


def text_table(rows: list[Row]) -> str:
    headers = _headers(rows)
    table = [headers, *(_cells(r, _with_qh3(rows)) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(headers))]
    lines = []
    for index, line in enumerate(table):
        lines.append(
            "  ".join(
                cell.ljust(w) if i in (0, 4) else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(line, widths, strict=True))
            ).rstrip()
        )
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    with_qh3 = _with_qh3(rows)
    lines = [
        "| " + " | ".join(_headers(rows)) + " |",
        "| --- | ---: | ---: | ---: | --- |" + (" ---: |" if with_qh3 else ""),
    ]
    lines += ["| " + " | ".join(_cells(r, with_qh3)) + " |" for r in rows]
    return "\n".join(lines)


def run_lines(results: dict[str, dict[str, Outcome]]) -> list[str]:
    return [
        f"{workload} / {stack}: {'; '.join(outcome.runs)}"
        for workload, by_stack in results.items()
        for stack, outcome in by_stack.items()
        if len(outcome.runs) > 1
    ]


def failures(results: dict[str, dict[str, Outcome]]) -> list[str]:
    out = []
    for workload, by_stack in results.items():
        for stack, outcome in by_stack.items():
            if outcome.error is not None:
                out.append(f"{stack} / {workload}: FAILED: {outcome.error}")
            out.extend(f"{stack} / {workload}: {w}" for w in outcome.warnings)
    return out


# -- machine ------------------------------------------------------------------


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min)"


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "load average before": load_average(),
    }
    from importlib.metadata import PackageNotFoundError, version

    for package in ("ghostwire", "aioquic", "trio", "cryptography"):
        try:
            info[package] = version(package)
        except PackageNotFoundError:
            info[package] = "not installed"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=False,
        ).stdout.strip()  # fmt: skip
        if commit:
            info["ghostwire"] += f" (git {commit}, working tree)"
    return info


# -- profiling ----------------------------------------------------------------


def profile_workload(
    workload: str,
    settings: Settings,
    sizes: Sizes,
    timeouts: dict[str, float],
    top: int,
    keep_dir: str | None = None,
) -> int:
    """Run one ghostwire workload under cProfile; print the hot functions.

    With ``keep_dir`` the two profiles (pstats files) are kept there.
    """
    timeout = timeouts[workload]
    with contextlib.ExitStack() as stack:
        if keep_dir is None:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="gw-bench-prof-"))
        else:
            os.makedirs(keep_dir, exist_ok=True)
            directory = keep_dir
        outcome = run_workload("ghostwire", workload, settings, sizes, timeout, directory)
        if outcome.measurement is not None:
            print(f"{workload} under cProfile: {headline(workload, outcome.measurement)}")
        for line in failures({workload: {"ghostwire": outcome}}):
            print(line)
        for role in ("client", "server"):
            path = os.path.join(directory, f"ghostwire-{workload}-{role}.prof")
            if not os.path.exists(path):
                print(f"no profile written for the {role}")
                continue
            for order in ("cumulative", "tottime"):
                print(f"\n=== ghostwire {workload} {role}, top {top} by {order} ===")
                stats = pstats.Stats(path)
                stats.sort_stats(order).print_stats(top)
    return 0 if outcome.error is None else 1


# -- main ---------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes; under a minute")
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated subset of {','.join(WORKLOADS)}",
    )
    parser.add_argument(
        "--stacks",
        default=",".join(DEFAULT_STACKS),
        help="comma-separated subset of ghostwire,aioquic,qh3 (default ghostwire,aioquic)",
    )
    parser.add_argument(
        "--datagram-size", type=int, default=1200,
        help="max_datagram_size of both stacks (default 1200, both stacks' default)",
    )  # fmt: skip
    parser.add_argument(
        "--pmtu-max", type=int, default=1452,
        help="ghostwire's pmtu_max_datagram_size: the largest datagram its path MTU "
        "discovery probes for, from --datagram-size up (default 1452; aioquic has none)",
    )  # fmt: skip
    parser.add_argument(
        "--repeat", type=int, default=None,
        help="runs per workload and stack; the best is reported (default 3, --quick 1)",
    )  # fmt: skip
    parser.add_argument("--timeout", type=float, default=None, help="client timeout per run (s)")
    parser.add_argument("--bulk-mb", type=float, default=None, help="override the bulk size (MB)")
    parser.add_argument(
        "--idle-connections", type=int, default=None,
        help="override the memory workload's connection count",
    )  # fmt: skip
    parser.add_argument("--markdown", default=None, help="also write the results as Markdown")
    parser.add_argument("--json", default=None, help="also write the raw results as JSON")
    parser.add_argument(
        "--profile", nargs="?", const="bulk", default=None, choices=WORKLOADS,
        metavar="WORKLOAD",
        help="instead: run one ghostwire workload (default bulk) with client and server "
        "under cProfile and print the hot functions",
    )  # fmt: skip
    parser.add_argument("--top", type=int, default=15, help="functions listed by --profile")
    parser.add_argument(
        "--profile-dir", default=None,
        help="with --profile: keep the client and server pstats files in this directory",
    )  # fmt: skip
    args = parser.parse_args(argv)

    workloads = [w for w in args.workloads.split(",") if w]
    stacks = [s for s in args.stacks.split(",") if s]
    for w in workloads:
        if w not in WORKLOADS:
            parser.error(f"unknown workload {w!r}")
    for s in stacks:
        if s not in STACKS:
            parser.error(f"unknown stack {s!r}")
    sizes = Sizes.quick() if args.quick else Sizes.full()
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.bulk_mb is not None:
        sizes.bulk_bytes = int(args.bulk_mb * 1e6)
    if args.idle_connections is not None:
        sizes.idle_connections = args.idle_connections
    timeouts = dict(QUICK_TIMEOUTS if args.quick else TIMEOUTS)
    if args.timeout is not None:
        timeouts = dict.fromkeys(timeouts, args.timeout)

    with tempfile.TemporaryDirectory(prefix="gw-bench-") as directory:
        settings = Settings(CertFiles.create(Path(directory)), args.datagram_size, args.pmtu_max)
        if args.profile is not None:
            return profile_workload(
                args.profile, settings, sizes, timeouts, args.top, args.profile_dir
            )
        return _run_all(args, settings, sizes, workloads, stacks, timeouts)


def _run_all(
    args: argparse.Namespace,
    settings: Settings,
    sizes: Sizes,
    workloads: list[str],
    stacks: list[str],
    timeouts: dict[str, float],
) -> int:
    command = "python -m bench " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "python -m bench"
    info = machine_info()
    print(f"command: {command}")
    for key, value in info.items():
        print(f"{key}: {value}")
    print(f"max_datagram_size: {settings.max_datagram_size} (both stacks)")
    print(f"ghostwire path MTU discovery up to: {settings.pmtu_max_datagram_size}")
    print(f"sizes: {asdict(sizes)}, repeat: {args.repeat}\n")

    started = time.perf_counter()
    results: dict[str, dict[str, Outcome]] = {}
    runs: dict[str, dict[str, list[Outcome]]] = {}
    for workload in workloads:
        for rep in range(args.repeat):
            # Alternate the order so that both stacks see the same background load.
            order = stacks if rep % 2 == 0 else stacks[::-1]
            for stack in order:
                label = f"[{workload:9}] {stack:9} run {rep + 1}/{args.repeat}"
                print(f"{label} ...", end=" ", flush=True)
                outcome = run_workload(stack, workload, settings, sizes, timeouts[workload])
                runs.setdefault(workload, {}).setdefault(stack, []).append(outcome)
                if outcome.measurement is not None:
                    status = f"ok: {headline(workload, outcome.measurement)}"
                else:
                    status = "FAILED: " + (outcome.error or "").split("\n")[0]
                print(f"{status} ({outcome.wall_seconds:.1f}s)", flush=True)
        for stack, outcomes in runs[workload].items():
            results.setdefault(workload, {})[stack] = representative(workload, outcomes)
    info["load average after"] = load_average()
    total = time.perf_counter() - started

    rows = build_rows(results, workloads)
    print()
    print(text_table(rows))
    every_run = run_lines(results)
    if every_run:
        print("\nevery run (the table shows the best, or the median for memory):")
        for line in every_run:
            print("  " + line)
    problems = failures(results)
    if problems:
        print("\nfailures and warnings:")
        for line in problems:
            print("  " + line.replace("\n", "\n  "))
    print(f"\ntotal wall time: {total:.1f}s")

    if args.markdown:
        Path(args.markdown).write_text(
            _markdown(command, info, settings, sizes, rows, every_run, problems, total),
            encoding="utf-8",
        )
    if args.json:
        raw: dict[str, object] = {
            "command": command,
            "machine": info,
            "max_datagram_size": settings.max_datagram_size,
            "pmtu_max_datagram_size": settings.pmtu_max_datagram_size,
            "sizes": asdict(sizes),
            "runs": {
                w: {s: [asdict(o) for o in outcomes] for s, outcomes in by_stack.items()}
                for w, by_stack in runs.items()
            },
        }
        Path(args.json).write_text(json.dumps(raw, indent=1), encoding="utf-8")
    return 0


def _markdown(
    command: str,
    info: dict[str, str],
    settings: Settings,
    sizes: Sizes,
    rows: list[Row],
    every_run: list[str],
    problems: list[str],
    total: float,
) -> str:
    lines = [
        f"Command (from the repository root): `{command}`",
        "",
        "Machine:",
        "",
        *(f"- {key}: {value}" for key, value in info.items()),
        f"- max_datagram_size: {settings.max_datagram_size} bytes, both stacks",
        f"- ghostwire path MTU discovery up to {settings.pmtu_max_datagram_size} bytes",
        "",
        markdown_table(rows),
        "",
        f"Sizes: `{json.dumps(asdict(sizes))}`; total wall time {total:.0f}s.",
    ]
    if every_run:
        lines += ["", "Every run (the table shows the best, or the median for memory):", ""]
        lines += [f"- {line}" for line in every_run]
    if problems:
        lines += ["", "Failures and warnings:", "", "```", *problems, "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
