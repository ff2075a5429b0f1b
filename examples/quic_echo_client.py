"""Send a message to the QUIC echo server and print the reply.

    python examples/quic_echo_client.py --cafile CA.pem "hello"

(``quic_echo_server.py`` prints the CA file to use.) Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Awaitable, Callable

import trio

import ghostwire.quic as quic


async def main(args: argparse.Namespace) -> None:
    config = quic.ClientConfig(alpn=["echo"], cafile=args.cafile, server_name="localhost")
    print(f"connecting to {args.host}:{args.port}...", file=sys.stderr, flush=True)
    async with quic.connect(args.host, args.port, config) as conn:
        stream = await conn.open_stream()
        await stream.send_all(args.message.encode())
        await stream.send_eof()
        reply = bytearray()
        while chunk := await stream.receive_some():
            reply += chunk
        stats = conn.statistics()
        print(f"{reply.decode()!r} (rtt {stats.smoothed_rtt * 1000:.2f} ms)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("message", nargs="?", default="hello over QUIC")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4433)
    parser.add_argument("--cafile", required=True, help="the CA of the server's certificate")
    return parser.parse_args()


async def until_ctrl_c(
    main: Callable[[argparse.Namespace], Awaitable[None]], args: argparse.Namespace
) -> bool:
    """``await main(args)``, cancelled by Ctrl-C (SIGINT); True if it was.

    A cancellation reaches every task at its next checkpoint, where it knows
    how to stop; a bare KeyboardInterrupt is raised in whatever code runs
    when the signal arrives (often a connection's own task, mid-update).
    """
    interrupted = False
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def cancel_on_ctrl_c() -> None:
                nonlocal interrupted
                async for _ in signals:
                    interrupted = True
                    nursery.cancel_scope.cancel()

            nursery.start_soon(cancel_on_ctrl_c)
            try:
                await main(args)
            except Exception:
                if not interrupted:
                    raise  # (an error met while cut off by Ctrl-C is the interruption)
            nursery.cancel_scope.cancel()
    return interrupted


def _interrupted(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_interrupted(inner) for inner in exc.exceptions)
    return isinstance(exc, KeyboardInterrupt)


if __name__ == "__main__":
    arguments = parse_args()
    try:
        interrupted = trio.run(until_ctrl_c, main, arguments)
    except BaseException as exc:
        if not _interrupted(exc):  # Ctrl-C before the signal receiver was in place
            raise
        interrupted = True
    if interrupted:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
