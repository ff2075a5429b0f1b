"""A QUIC echo server: every stream a client opens is echoed back.

    python examples/quic_echo_server.py --certfile cert.pem --keyfile key.pem

Without a certificate it makes a throwaway CA and server certificate, and
writes the CA where the client can read it: to ``--write-ca FILE`` if given,
else into a temporary folder removed when the server stops. It prints the
client's command line. Ctrl-C (or SIGTERM) stops it.
"""

from __future__ import annotations

import argparse
import signal
import tempfile
from functools import partial
from pathlib import Path

import trio

import ghostwire.quic as quic
from ghostwire.certs import CertificateAuthority


async def echo_stream(stream: quic.QuicStream | quic.QuicReceiveStream) -> None:
    if not isinstance(stream, quic.QuicStream):
        await stream.aclose()  # unidirectional: nothing to echo on
        return
    async with stream:
        while data := await stream.receive_some():
            await stream.send_all(data)


async def handler(conn: quic.Connection) -> None:
    print(f"connection from {conn.peer_address} ({conn.alpn}, {conn.cipher_suite})", flush=True)
    async with trio.open_nursery() as nursery:
        async for stream in conn:
            nursery.start_soon(echo_stream, stream)


def make_config(args: argparse.Namespace, ca_path: Path) -> quic.ServerConfig:
    if args.certfile:
        return quic.ServerConfig(alpn=["echo"], certfile=args.certfile, keyfile=args.keyfile)
    ca = CertificateAuthority.create("ghostwire echo example CA")
    ca.write_pem(ca_path)
    identity = ca.issue(["localhost", "127.0.0.1"])
    print(f"no certificate given: made one; its CA is in {ca_path}", flush=True)
    return quic.ServerConfig(
        alpn=["echo"], certificate_chain=identity.chain, private_key=identity.private_key
    )


async def main(args: argparse.Namespace, ca_path: Path) -> None:
    config = make_config(args, ca_path)
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            server = await nursery.start(
                partial(quic.serve, handler, args.port, config, host=args.host)
            )
            print(f"echo server on udp://{args.host}:{server.port}", flush=True)
            if not args.certfile:
                print(
                    f"try: python examples/quic_echo_client.py --port {server.port}"
                    f" --cafile {ca_path} hello",
                    flush=True,
                )
            async for _ in signals:  # Ctrl-C or SIGTERM: stop cleanly
                break
        nursery.cancel_scope.cancel()
    print("stopped", flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4433)
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    parser.add_argument("--write-ca", metavar="FILE", help="where to write the throwaway CA")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.write_ca:
        trio.run(main, arguments, Path(arguments.write_ca))
    else:
        with tempfile.TemporaryDirectory(prefix="ghostwire-echo-") as folder:
            trio.run(main, arguments, Path(folder) / "ca.pem")
