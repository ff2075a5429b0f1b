"""A QUIC echo server: every stream a client opens is echoed back.

    python examples/quic_echo_server.py --certfile cert.pem --keyfile key.pem

Without a certificate it makes a throwaway CA and server certificate and
writes the CA to ``echo-ca.pem`` so ``quic_echo_client.py`` can verify it.
"""

from __future__ import annotations

import argparse
from functools import partial

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
    print(f"connection from {conn.peer_address} ({conn.alpn}, {conn.cipher_suite})")
    async with trio.open_nursery() as nursery:
        async for stream in conn:
            nursery.start_soon(echo_stream, stream)


def make_config(args: argparse.Namespace) -> quic.ServerConfig:
    if args.certfile:
        return quic.ServerConfig(alpn=["echo"], certfile=args.certfile, keyfile=args.keyfile)
    ca = CertificateAuthority.create("ghostwire echo example CA")
    ca.write_pem("echo-ca.pem")
    identity = ca.issue(["localhost", "127.0.0.1"])
    print("no certificate given: made one; its CA is in echo-ca.pem")
    return quic.ServerConfig(
        alpn=["echo"], certificate_chain=identity.chain, private_key=identity.private_key
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4433)
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    args = parser.parse_args()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(quic.serve, handler, args.port, make_config(args), host=args.host)
        )
        print(f"echo server on udp://{args.host}:{server.port}")


if __name__ == "__main__":
    trio.run(main)
