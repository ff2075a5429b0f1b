"""Send a message to the QUIC echo server and print the reply.

    python examples/quic_echo_client.py --cafile echo-ca.pem "hello"
"""

from __future__ import annotations

import argparse

import trio

import ghostwire.quic as quic


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("message", nargs="?", default="hello over QUIC")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4433)
    parser.add_argument("--cafile", default="echo-ca.pem")
    args = parser.parse_args()
    config = quic.ClientConfig(alpn=["echo"], cafile=args.cafile, server_name="localhost")
    async with quic.connect(args.host, args.port, config) as conn:
        stream = await conn.open_stream()
        await stream.send_all(args.message.encode())
        await stream.send_eof()
        reply = bytearray()
        while chunk := await stream.receive_some():
            reply += chunk
        stats = conn.statistics()
        print(f"{reply.decode()!r} (rtt {stats.smoothed_rtt * 1000:.2f} ms)")


if __name__ == "__main__":
    trio.run(main)
