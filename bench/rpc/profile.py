"""Function calls per RPC call, server and client (cProfile; independent of load).

    python -m bench.rpc.profile                       # 5,000 calls at 64 in flight
    python -m bench.rpc.profile --workload c1 --calls 1000
    python -m bench.rpc.profile --dir DIR             # keep server.prof / client.prof
    python -m bench.rpc.profile --top 25              # the top functions by own time

The ghostwire server and client of ``python -m bench.rpc`` run under cProfile
in two processes over loopback (TLS). The client makes ``--calls`` echo calls
after the workload's 200 warm-up calls; the counts are divided by all calls
made, warm-up included (the handshake and connection set-up, a few thousand
function calls, stay in the totals: under 1% at the default size).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from ..common import CertFiles
from .common import PORT_PREFIX, WORKLOADS

WARM_UP = 200  # the calls gw_stack._workload makes before measuring


def _profiled(out: str, run: object, *args: object) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        run(*args)  # type: ignore[operator]
    except KeyboardInterrupt:
        pass
    finally:
        profiler.disable()
        profiler.dump_stats(out)


def _role(argv: list[str]) -> None:
    from . import gw_stack

    role, out, *rest = argv
    if role == "server":
        _profiled(out, gw_stack.run_server, *rest)
    else:
        workload, port, cafile, server_pid, count = rest
        _profiled(
            out, gw_stack.run_client, workload, int(port), cafile, int(server_pid), int(count)
        )


def _calls(path: str) -> int:
    return int(pstats.Stats(path).total_calls)  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rpc.profile")
    parser.add_argument(
        "--workload", default="c64", choices=[w for w in WORKLOADS if w != "events"]
    )
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--dir", default=None, help="keep the profiles here")
    parser.add_argument("--top", type=int, default=0, help="print the top N functions by own time")
    args = parser.parse_args(argv)
    me = [sys.executable, "-m", "bench.rpc.profile", "--role"]
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(args.dir or tmp)
        where.mkdir(parents=True, exist_ok=True)
        certs = CertFiles.create(Path(tmp))
        server_out, client_out = str(where / "server.prof"), str(where / "client.prof")
        server = subprocess.Popen(
            [*me, "server", server_out, certs.certfile, certs.keyfile],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            line = server.stdout.readline()
            if not line.startswith(PORT_PREFIX):
                raise RuntimeError(f"the server did not start: {line!r}")
            port = line[len(PORT_PREFIX) :].strip()
            pid, calls = str(server.pid), str(args.calls)
            subprocess.run(
                [*me, "client", client_out, args.workload, port, certs.cafile, pid, calls],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=60)
        total = args.calls + WARM_UP
        for side, path in (("server", server_out), ("client", client_out)):
            print(f"{side}: {_calls(path) / total:,.0f} function calls per call ({total} calls)")
            if args.top:
                pstats.Stats(path).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--role":
        os.environ.setdefault("PYTHONHASHSEED", "0")
        _role(sys.argv[2:])
    else:
        main()
