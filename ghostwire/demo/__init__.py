"""``ghostwire demo``: a QUIC server and client talking over loopback.

It makes a throwaway certificate authority, starts a server on an ephemeral
port, connects a client that verifies the server's certificate against that
CA, echoes a message over a stream, and prints what was negotiated and how
long the handshake took.
"""

from __future__ import annotations

import tempfile
import time
from functools import partial
from pathlib import Path

import trio

from .certs import CertificateAuthority
from .quic import ClientConfig, Connection, ServerConfig, connect, serve

ALPN = "ghostwire-demo"


async def _echo(conn: Connection) -> None:
    async for stream in conn:
        async with stream:
            while data := await stream.receive_some():
                await stream.send_all(data)  # type: ignore[union-attr]


async def _demo(host: str, workdir: Path) -> None:
    ca = CertificateAuthority.create("ghostwire demo CA")
    server_cert = ca.issue(["localhost", host])
    server_cert.write_pem(workdir / "server.pem", workdir / "server.key")
    ca.write_pem(workdir / "ca.pem")

    server_config = ServerConfig(
        alpn=[ALPN], certfile=workdir / "server.pem", keyfile=workdir / "server.key"
    )
    client_config = ClientConfig(alpn=[ALPN], cafile=workdir / "ca.pem", server_name="localhost")

    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(serve, _echo, 0, server_config, host=host))
        print(f"server listening on udp://{host}:{server.port}")
        started = time.perf_counter()
        async with connect(host, server.port, client_config) as conn:
            handshake_ms = (time.perf_counter() - started) * 1000
            print(f"QUIC version : 0x{conn.version:08x}")
            print(f"cipher suite : {conn.cipher_suite}")
            print(f"ALPN         : {conn.alpn}")
            print(
                f"handshake    : {handshake_ms:.2f} ms"
                " (certificate verified against the demo CA)"
            )
            stream = await conn.open_stream()
            message = b"hello over QUIC"
            await stream.send_all(message)
            await stream.send_eof()
            echoed = b""
            while chunk := await stream.receive_some():
                echoed += chunk
            print(f"echo         : {echoed.decode()!r}")
            stats = conn.statistics()
            print(f"smoothed RTT : {stats.smoothed_rtt * 1000:.3f} ms")
        nursery.cancel_scope.cancel()


def run_demo(host: str = "127.0.0.1") -> int:
    with tempfile.TemporaryDirectory(prefix="ghostwire-demo-") as tmp:
        trio.run(_demo, host, Path(tmp))
    return 0
