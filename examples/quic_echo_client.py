"""Send a message to the QUIC echo server and print the reply.

    python examples/quic_echo_client.py --cafile CA.pem "hello"

(``quic_echo_server.py`` prints the CA file to use.) Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import sys

import ghostwire.program
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


if __name__ == "__main__":
    arguments = parse_args()
    try:
        # Ctrl-C cancels the program, then raises KeyboardInterrupt here.
        ghostwire.program.run(main, arguments)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
