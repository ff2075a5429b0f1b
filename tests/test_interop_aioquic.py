"""Interoperability with aioquic over loopback UDP, in both directions.

ghostwire runs under trio in the test; aioquic runs on its own asyncio loop in
a thread (tests/aioquic_peer.py), or in a subprocess for the timed bulk
transfers. Each test is bounded on our side by ``trio.fail_after`` and on
aioquic's by ``asyncio.wait_for``. The two sides speak the small command
protocol described in aioquic_peer.py, so every scenario runs with either
implementation as the server. A UDP relay in the test stands in for a NAT
(rebinding) and a lossy path.

Roles: ``gw-client`` is a ghostwire client talking to an aioquic server,
``gw-server`` an aioquic client talking to a ghostwire server.

Debugging: ``GW_INTEROP_QLOG=<dir>`` writes both sides' qlogs there and
``SSLKEYLOGFILE`` both sides' TLS secrets (then read a capture in Wireshark).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

pytest.importorskip("aioquic")
from aioquic.quic import events as aq_events
from aioquic.tls import Epoch as AqEpoch
from aioquic_peer import (
    PeerClient,
    PeerLoop,
    PeerProtocol,
    PeerServer,
    PeerStreamReset,
    pattern,
    peer_configuration,
    peer_server_process,
)
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ghostwire.certs import CertificateAuthority
from ghostwire.quic import (
    QUIC_V1,
    QUIC_V2,
    CertificateError,
    ClientConfig,
    Connection,
    ConnectionClosed,
    HandshakeError,
    IdleTimeout,
    QuicServer,
    ServerConfig,
    StreamReset,
    StreamStopped,
    connect,
    serve,
)
from ghostwire.quic.net.stream import QuicStream
from ghostwire.quic.suites import CipherSuite

pytestmark = pytest.mark.interop

ALPN = "gw-interop"
HOST = "127.0.0.1"
ROLES = ["gw-client", "gw-server"]
SUITE_NAMES = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
]
SMALL_TRANSFER = 5 << 20
BIG_TRANSFER = 50 << 20


# -- certificates (a CA made at test time) ---------------------------------------


@dataclass
class Certs:
    ca: CertificateAuthority
    ca_file: str
    gw_cert: str  # ghostwire server's certificate and key
    gw_key: str
    aq_cert: str  # aioquic server's, issued by the same CA
    aq_key: str
    other_ca_file: str  # an unrelated CA: trusting it must fail
    gw_leaf: x509.Certificate
    aq_leaf: x509.Certificate


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    path = tmp_path_factory.mktemp("interop-certs")
    ca = CertificateAuthority.create("ghostwire interop CA")
    ca.write_pem(path / "ca.pem")
    gw = ca.issue(["localhost", HOST])
    gw.write_pem(path / "gw.pem", path / "gw.key")
    aq = ca.issue(["localhost", HOST])
    aq.write_pem(path / "aq.pem", path / "aq.key")
    CertificateAuthority.create("some other CA").write_pem(path / "other-ca.pem")
    return Certs(
        ca=ca,
        ca_file=str(path / "ca.pem"),
        gw_cert=str(path / "gw.pem"),
        gw_key=str(path / "gw.key"),
        aq_cert=str(path / "aq.pem"),
        aq_key=str(path / "aq.key"),
        other_ca_file=str(path / "other-ca.pem"),
        gw_leaf=gw.certificate,
        aq_leaf=aq.certificate,
    )


def _debug_options() -> dict[str, Any]:
    qlog_dir = os.environ.get("GW_INTEROP_QLOG")
    return {"qlog_dir": qlog_dir} if qlog_dir else {}


def gw_client_config(certs: Certs, **overrides: Any) -> ClientConfig:
    options: dict[str, Any] = {"alpn": [ALPN], "cafile": certs.ca_file, **_debug_options()}
    options.update(overrides)
    return ClientConfig(**options)


def gw_server_config(certs: Certs, **overrides: Any) -> ServerConfig:
    options: dict[str, Any] = {
        "alpn": [ALPN],
        "certfile": certs.gw_cert,
        "keyfile": certs.gw_key,
        **_debug_options(),
    }
    options.update(overrides)
    return ServerConfig(**options)


def aq_server_config(certs: Certs, **overrides: Any) -> Any:
    options: dict[str, Any] = {"alpn": [ALPN], "certfile": certs.aq_cert, "keyfile": certs.aq_key}
    options.update(overrides)
    return peer_configuration(is_client=False, **options)


def aq_client_config(certs: Certs, **overrides: Any) -> Any:
    options: dict[str, Any] = {"alpn": [ALPN], "cafile": certs.ca_file, "server_name": "localhost"}
    options.update(overrides)
    return peer_configuration(is_client=True, **options)


# -- the ghostwire side of the command protocol --------------------------------------


Observed = trio.MemorySendChannel[tuple[Any, ...]]


class LineReader:
    """``readline`` over a trio receive stream, keeping what follows the line."""

    def __init__(self, stream: QuicStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def readline(self) -> bytes:
        while (index := self.buffer.find(b"\n")) < 0:
            chunk = await self.stream.receive_some()
            if not chunk:
                line = bytes(self.buffer)
                self.buffer.clear()
                return line
            self.buffer += chunk
        line = bytes(self.buffer[: index + 1])
        del self.buffer[: index + 1]
        return line

    async def receive_some(self) -> bytes:
        if self.buffer:
            data = bytes(self.buffer)
            self.buffer.clear()
            return data
        return await self.stream.receive_some()


async def serve_command(stream: QuicStream, observed: Observed) -> None:
    """Our implementation of aioquic_peer.run_command; reports what it saw to ``observed``."""
    reader = LineReader(stream)
    sid = stream.stream_id
    try:
        words = (await reader.readline()).decode().split()
        if not words:
            return
        command, args = words[0], [int(a, 0) for a in words[1:]]
        if command == "echo":
            while chunk := await reader.receive_some():
                await stream.send_all(chunk)
            await stream.send_eof()
        elif command == "sink":
            data_hash, length = hashlib.sha256(), 0
            while chunk := await reader.receive_some():
                data_hash.update(chunk)
                length += len(chunk)
            await stream.send_all(f"{data_hash.hexdigest()} {length}\n".encode())
            await stream.send_eof()
        elif command == "source":
            await stream.send_all(pattern(args[0]))
            await stream.send_eof()
        elif command == "reset":
            stream.reset(args[0])
        elif command == "stop":
            stream.stop_sending(args[0])
            await stream.send_all(b"stopped\n")
            await stream.send_eof()
        else:
            stream.reset(0x99)
    except StreamStopped as exc:
        observed.send_nowait(("stopped", sid, exc.error_code))
    except StreamReset as exc:
        observed.send_nowait(("reset", sid, exc.error_code))


def command_handler(observed: Observed) -> Any:
    async def handler(conn: Connection) -> None:
        observed.send_nowait(("connection", conn))
        async with trio.open_nursery() as nursery:
            async for stream in conn:
                assert isinstance(stream, QuicStream)
                observed.send_nowait(("stream", stream.stream_id, stream.early_data))
                nursery.start_soon(serve_command, stream, observed)

    return handler


@dataclass
class GwServer:
    server: QuicServer
    observed: trio.MemoryReceiveChannel[tuple[Any, ...]]

    @property
    def port(self) -> int:
        return self.server.port

    async def next(self, kind: str) -> tuple[Any, ...]:
        """The next observation of ``kind`` (others are skipped)."""
        async for item in self.observed:
            if item[0] == kind:
                return item
        raise AssertionError(f"no {kind!r} observed")


@asynccontextmanager
async def gw_server(config: ServerConfig) -> AsyncIterator[GwServer]:
    send, receive = trio.open_memory_channel[tuple[Any, ...]](math.inf)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(serve, command_handler(send), 0, config, host=HOST))
        yield GwServer(server, receive)
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def aq_server(peer: PeerLoop, configuration: Any) -> AsyncIterator[PeerServer]:
    server = await peer.run(PeerServer.start(configuration, HOST))
    try:
        yield server
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await peer.run(server.stop())
    assert not server.command_errors, server.command_errors


@asynccontextmanager
async def aq_client(peer: PeerLoop, port: int, configuration: Any) -> AsyncIterator[PeerClient]:
    client = await peer.run(PeerClient.connect(HOST, port, configuration))
    try:
        yield client
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await peer.run(client.close())


async def read_all(stream: QuicStream) -> bytes:
    parts = []
    while chunk := await stream.receive_some():
        parts.append(chunk)
    return b"".join(parts)


async def _describe(protocol: PeerProtocol) -> dict[str, Any]:
    return protocol.describe()


def _is_terminated(event: aq_events.QuicEvent) -> bool:
    return isinstance(event, aq_events.ConnectionTerminated)


def _stream_event(kind: type, stream_id: int) -> Any:
    return lambda e: isinstance(e, kind) and e.stream_id == stream_id


# -- QUIC core: handshake, certificates, ALPN, version, cipher suites ----------------


def _assert_negotiated(conn: Connection, info: dict[str, Any], suite: str | None = None) -> None:
    """Both sides agree on ALPN, QUIC v1 and the cipher suite (``suite`` if given)."""
    assert conn.alpn == info["alpn"] == ALPN
    assert conn.version == info["version"] == QUIC_V1
    assert conn.cipher_suite == "TLS_" + info["cipher_suite"]
    assert conn.cipher_suite in SUITE_NAMES
    if suite is not None:
        assert conn.cipher_suite == suite


async def test_handshake_gw_client_aioquic_server(peer: PeerLoop, certs: Certs) -> None:
    with trio.fail_after(20):
        async with aq_server(peer, aq_server_config(certs)) as server:
            async with connect(HOST, server.port, gw_client_config(certs)) as conn:
                [info] = await peer.run(server.describe())
                _assert_negotiated(conn, info)
                # we verified aioquic's certificate, issued at test time by our CA
                assert conn.peer_certificates[0] == certs.aq_leaf
                assert certs.aq_leaf.issuer == certs.ca.certificate.subject
            # our close reached aioquic: CONNECTION_CLOSE (application) with code 0
            closed = await peer.run(server.wait_for(_is_terminated))
            assert closed.error_code == 0


async def test_handshake_aioquic_client_gw_server(peer: PeerLoop, certs: Certs) -> None:
    with trio.fail_after(20):
        async with gw_server(gw_server_config(certs)) as server:
            async with aq_client(peer, server.port, aq_client_config(certs)) as client:
                info = await peer.run(_describe(client.protocol))
                _, conn = await server.next("connection")
                _assert_negotiated(conn, info)
                # aioquic verified our certificate against the CA file
                assert info["peer_certificate"] == certs.gw_leaf
            # aioquic's close reached us
            await conn.wait_closed()


async def test_gw_client_rejects_untrusted_aioquic_server(peer: PeerLoop, certs: Certs) -> None:
    config = gw_client_config(certs, cafile=certs.other_ca_file)
    with trio.fail_after(20):
        async with aq_server(peer, aq_server_config(certs)) as server:
            with pytest.raises(CertificateError) as info:
                async with connect(HOST, server.port, config):
                    pass  # pragma: no cover
            assert info.value.by_peer is False
            # aioquic learns why: CRYPTO_ERROR, i.e. 0x100 + the TLS alert (RFC 9001 §4.8)
            closed = await peer.run(server.wait_for(_is_terminated))
            assert closed.error_code == 0x100 + info.value.alert


async def test_aioquic_client_rejects_untrusted_gw_server(peer: PeerLoop, certs: Certs) -> None:
    config = aq_client_config(certs, cafile=certs.other_ca_file)
    with trio.fail_after(20):
        async with gw_server(gw_server_config(certs)) as server:
            with pytest.raises(ConnectionError):
                await peer.run(PeerClient.connect(HOST, server.port, config))


async def test_alpn_negotiation_gw_client(peer: PeerLoop, certs: Certs) -> None:
    offer = gw_client_config(certs, alpn=["x-unknown", ALPN])
    with trio.fail_after(20):
        async with aq_server(peer, aq_server_config(certs, alpn=["h3", ALPN])) as server:
            async with connect(HOST, server.port, offer) as conn:
                assert conn.alpn == ALPN
            with pytest.raises(HandshakeError) as info:
                async with connect(HOST, server.port, gw_client_config(certs, alpn=["nope"])):
                    pass  # pragma: no cover
    assert info.value.alert == 120  # no_application_protocol (RFC 9001 §8.1)
    assert info.value.by_peer


async def test_alpn_negotiation_gw_server(peer: PeerLoop, certs: Certs) -> None:
    offer = aq_client_config(certs, alpn=["x-unknown", ALPN])
    with trio.fail_after(20):
        async with gw_server(gw_server_config(certs, alpn=["h3", ALPN])) as server:
            async with aq_client(peer, server.port, offer) as client:
                info = await peer.run(_describe(client.protocol))
            assert info["alpn"] == ALPN
            mismatch = aq_client_config(certs, alpn=["nope"])
            with pytest.raises(ConnectionError):
                await peer.run(PeerClient.connect(HOST, server.port, mismatch))


async def _echo_once(protocol: PeerProtocol, payload: bytes) -> bytes:
    stream = protocol.open_stream()
    stream.write(b"echo\n" + payload, end_stream=True)
    return await stream.read_all()


@pytest.mark.parametrize("suite", SUITE_NAMES)
async def test_cipher_suite_gw_client(peer: PeerLoop, certs: Certs, suite: str) -> None:
    """aioquic's server allows only ``suite``; we offer all three."""
    payload = b"ciphered" * 1000
    with trio.fail_after(20):
        async with aq_server(peer, aq_server_config(certs, cipher_suites=[suite])) as server:
            async with connect(HOST, server.port, gw_client_config(certs)) as conn:
                [info] = await peer.run(server.describe())
                _assert_negotiated(conn, info, suite)
                stream = await conn.open_stream()
                await stream.send_all(b"echo\n" + payload)
                await stream.send_eof()
                assert await read_all(stream) == payload


@pytest.mark.parametrize("suite", SUITE_NAMES)
async def test_cipher_suite_gw_server(peer: PeerLoop, certs: Certs, suite: str) -> None:
    """aioquic's client offers only ``suite``; our server accepts it."""
    payload = b"ciphered" * 1000
    config = aq_client_config(certs, cipher_suites=[suite])
    with trio.fail_after(20):
        async with gw_server(gw_server_config(certs)) as server:
            async with aq_client(peer, server.port, config) as client:
                assert await peer.run(_echo_once(client.protocol, payload)) == payload
                info = await peer.run(_describe(client.protocol))
                _, conn = await server.next("connection")
                _assert_negotiated(conn, info, suite)


@pytest.mark.parametrize("suite", SUITE_NAMES)
async def test_cipher_suite_offered_by_gw_client(peer: PeerLoop, certs: Certs, suite: str) -> None:
    """Our client offers only ``suite`` to aioquic's server (which allows all three)."""
    config = gw_client_config(certs, cipher_suites=[CipherSuite[suite.removeprefix("TLS_")]])
    with trio.fail_after(20):
        async with aq_server(peer, aq_server_config(certs)) as server:
            async with connect(HOST, server.port, config) as conn:
                [info] = await peer.run(server.describe())
                _assert_negotiated(conn, info, suite)


@pytest.mark.parametrize("suite", SUITE_NAMES)
async def test_cipher_suite_chosen_by_gw_server(peer: PeerLoop, certs: Certs, suite: str) -> None:
    """Our server allows only ``suite``; aioquic's client offers all three."""
    config = gw_server_config(certs, cipher_suites=[CipherSuite[suite.removeprefix("TLS_")]])
    with trio.fail_after(20):
        async with gw_server(config) as server:
            async with aq_client(peer, server.port, aq_client_config(certs)) as client:
                info = await peer.run(_describe(client.protocol))
                _, conn = await server.next("connection")
                _assert_negotiated(conn, info, suite)


# -- QUIC transport: parallel streams ---------------------------------------------------


STREAMS = 100
STREAM_PAYLOAD = 20_000


def _payload(index: int) -> bytes:
    return index.to_bytes(4, "big") * (STREAM_PAYLOAD // 4)


async def test_parallel_echo_gw_client(peer: PeerLoop, certs: Certs) -> None:
    results: dict[int, bytes] = {}

    async def one(conn: Connection, index: int) -> None:
        stream = await conn.open_stream()
        await stream.send_all(b"echo\n" + _payload(index))
        await stream.send_eof()
        results[index] = await read_all(stream)

    with trio.fail_after(60):
        async with aq_server(peer, aq_server_config(certs)) as server:
            async with connect(HOST, server.port, gw_client_config(certs)) as conn:
                async with trio.open_nursery() as nursery:
                    for index in range(STREAMS):
                        nursery.start_soon(one, conn, index)
    assert sorted(results) == list(range(STREAMS))
    for index, data in results.items():
        assert data == _payload(index), index


async def _parallel_echo(protocol: PeerProtocol) -> list[bool]:
    streams = [protocol.open_stream() for _ in range(STREAMS)]
    for index, stream in enumerate(streams):
        stream.write(b"echo\n" + _payload(index), end_stream=True)
    replies = await asyncio.gather(*(s.read_all() for s in streams))
    return [reply == _payload(i) for i, reply in enumerate(replies)]


async def test_parallel_echo_gw_server(peer: PeerLoop, certs: Certs) -> None:
    with trio.fail_after(60):
        async with gw_server(gw_server_config(certs)) as server:
            async with aq_client(peer, server.port, aq_client_config(certs)) as client:
                ok = await peer.run(_parallel_echo(client.protocol))
    assert ok == [True] * STREAMS


# -- QUIC transport: bulk transfers verified by sha256 ------------------------------------
#
# The aioquic side runs in its own process here (tests/aioquic_peer.py as a
# script): sharing the GIL with it would make the timings measure GIL hand-offs
# on every sendto/recvfrom rather than either stack.

PEER_SCRIPT = str(Path(__file__).with_name("aioquic_peer.py"))


def _report(what: str, size: int, seconds: float) -> None:
    print(f"\n{what}: {size / 1e6:.1f} MB in {seconds:.2f} s = {size / 1e6 / seconds:.1f} MB/s")


@asynccontextmanager
async def aq_server_process(certs: Certs) -> AsyncIterator[int]:
    """An aioquic server in a subprocess; yields its port."""
    command = [
        sys.executable,
        PEER_SCRIPT,
        "serve",
        "--alpn",
        ALPN,
        "--certfile",
        certs.aq_cert,
        "--keyfile",
        certs.aq_key,
        "--timeout",
        "600",
    ]
    async with peer_server_process(command) as port:
        yield port


async def _gw_client_transfer(certs: Certs, size: int, direction: str) -> None:
    expected = hashlib.sha256(pattern(size)).hexdigest()
    async with aq_server_process(certs) as port:
        async with connect(HOST, port, gw_client_config(certs)) as conn:
            stream = await conn.open_stream()
            started = time.perf_counter()
            if direction == "upload":
                await stream.send_all(b"sink\n")
                await stream.send_all(pattern(size))
                await stream.send_eof()
                assert await read_all(stream) == f"{expected} {size}\n".encode()
                what = "ghostwire client -> aioquic server"
            else:
                await stream.send_all(f"source {size}\n".encode())
                await stream.send_eof()
                data_hash, length = hashlib.sha256(), 0
                while chunk := await stream.receive_some():
                    data_hash.update(chunk)
                    length += len(chunk)
                assert (data_hash.hexdigest(), length) == (expected, size)
                what = "aioquic server -> ghostwire client"
            _report(what, size, time.perf_counter() - started)


async def _gw_server_transfer(certs: Certs, size: int, direction: str) -> None:
    expected = hashlib.sha256(pattern(size)).hexdigest()
    async with gw_server(gw_server_config(certs)) as server:
        command = [
            sys.executable,
            PEER_SCRIPT,
            direction,
            "--alpn",
            ALPN,
            "--port",
            str(server.port),
            "--cafile",
            certs.ca_file,
            "--size",
            str(size),
        ]
        result = await trio.run_process(command, capture_stdout=True, capture_stderr=True)
    digest, length, seconds = result.stdout.decode().split()
    assert (digest, int(length)) == (expected, size)
    what = (
        "aioquic client -> ghostwire server"
        if direction == "upload"
        else ("ghostwire server -> aioquic client")
    )
    _report(what, size, float(seconds))


async def _transfer(certs: Certs, role: str, direction: str, size: int) -> None:
    if role == "gw-client":
        await _gw_client_transfer(certs, size, direction)
    else:
        await _gw_server_transfer(certs, size, direction)


@pytest.mark.parametrize("direction", ["upload", "download"])
@pytest.mark.parametrize("role", ROLES)
async def test_transfer_5mb(certs: Certs, role: str, direction: str) -> None:
    with trio.fail_after(60):
        await _transfer(certs, role, direction, SMALL_TRANSFER)


@pytest.mark.slow
@pytest.mark.parametrize("direction", ["upload", "download"])
@pytest.mark.parametrize("role", ROLES)
async def test_transfer_50mb(certs: Certs, role: str, direction: str) -> None:
    with trio.fail_after(300):
        await _transfer(certs, role, direction, BIG_TRANSFER)


# -- QUIC transport: RESET_STREAM and STOP_SENDING, both ways -----------------------------------


RESET_CODE = 0x1234
STOP_CODE = 0x55


async def test_gw_client_reset_seen_by_aioquic(peer: PeerLoop, certs: Certs) -> None:
    with trio.fail_after(20):
        async with aq_server(peer, aq_server_config(certs)) as server:
            async with connect(HOST, server.port, gw_client_config(certs)) as conn:
                stream = await conn.open_stream()
                await stream.send_all(b"sink\n" + b"x" * 5000)
                stream.reset(RESET_CODE)
                event = await peer.run(
                    server.wait_for(_stream_event(aq_events.StreamReset, stream.stream_id))
                )
    assert event.error_code == RESET_CODE


async def _ask_for_reset(protocol: PeerProtocol, code: int) -> tuple[int, int]:
    stream = protocol.open_stream()
    stream.write(f"reset {code}\n".encode())
    event = await protocol.log.wait_for(_stream_event(aq_events.StreamReset, stream.stream_id))
    try:
        await stream.read()
    except PeerStreamReset as exc:
        return event.error_code, exc.error_code
    raise AssertionError("read() did not raise")


async def test_gw_server_reset_seen_by_aioquic(peer: PeerLoop, certs: Certs) -> None:
    with trio.fail_after(20):
        async with gw_server(gw_server_config(certs)) as server:
            async with aq_client(peer, server.port, aq_client_config(certs)) as client:
                codes = await peer.run(_ask_for_reset(client.protocol, RESET_CODE))
    assert codes == (RESET_CODE, RESET_CODE)


async def test_aioquic_server_reset_seen_by_gw_client(peer: PeerLoop, certs: Certs) -> None:
    with trio.fail_after(20):
        async with aq_server(peer, aq_server_config(certs)) as server:
            async with connect(HOST, server.port, gw_client_config(certs)) as conn:
                stream = await conn.open_stream()
                await stream.send_all(f"reset {RESET_CODE}\n".encode())
                with pytest.raises(StreamReset) as info:
                    await stream.receive_some()
                # our sending direction is unaffected: aioquic still reads it
                await stream.send_all(b"more")
                await stream.send_eof()
    assert type(info.value) is StreamReset
    assert info.value.error_code == RESET_CODE


async def _reset_after_data(protocol: PeerProtocol, code: int) -> int:
    stream = protocol.open_stream()
    stream.write(b"sink\n" + b"y" * 5000)
    stream.reset(code)
    return stream.stream_id


async def test_aioquic_client_reset_seen_by_gw_server(peer: PeerLoop, certs: Certs) -> None:
    with trio.fail_after(20):
        async with gw_server(gw_server_config(certs)) as server:
            async with aq_client(peer, server.port, aq_client_config(certs)) as client:
                stream_id = await peer.run(_reset_after_data(client.protocol, RESET_CODE))
                assert await server.next("reset") == ("reset", stream_id, RESET_CODE)


async def test_gw_client_stop_sending_seen_by_aioquic(peer: PeerLoop, certs: Certs) -> None:
    with trio.fail_after(20):
        async with aq_server(peer, aq_server_config(certs)) as server:
            async with connect(HOST, server.port, gw_client_config(certs)) as conn:
                stream = await conn.open_stream()
                # (no FIN from us: aioquic keeps the stream, so its send state can be checked)
                await stream.send_all(b"source 20000000\n")
                assert await stream.receive_some()
                stream.stop_sending(STOP_CODE)
                event = await peer.run(
                    server.wait_for(_stream_event(aq_events.StopSendingReceived, stream.stream_id))
                )
                # we asked for no more data: reading now fails at once (no hang, no fake EOF)
                with pytest.raises(trio.ClosedResourceError):
                    await stream.receive_some()
                # aioquic reset its sending side with our code, as RFC 9000 §3.5 recommends
                sender_reset = await peer.run(_sender_reset_code(server, stream.stream_id))
    assert event.error_code == STOP_CODE
    assert sender_reset == STOP_CODE


async def _sender_reset_code(server: PeerServer, stream_id: int) -> int | None:
    [protocol] = server.connections
    stream = protocol._quic._streams.get(stream_id)
    return None if stream is None else stream.sender._reset_error_code


async def _ask_for_stop(protocol: PeerProtocol, code: int) -> tuple[int, bytes]:
    stream = protocol.open_stream()
    stream.write(f"stop {code}\n".encode())
    event = await protocol.log.wait_for(
        _stream_event(aq_events.StopSendingReceived, stream.stream_id)
    )
    return event.error_code, await stream.read_all()


async def test_gw_server_stop_sending_seen_by_aioquic(peer: PeerLoop, certs: Certs) -> None:
    with trio.fail_after(20):
        async with gw_server(gw_server_config(certs)) as server:
            async with aq_client(peer, server.port, aq_client_config(certs)) as client:
                result = await peer.run(_ask_for_stop(client.protocol, STOP_CODE))
    assert result == (STOP_CODE, b"stopped\n")


async def test_aioquic_server_stop_sending_seen_by_gw_client(peer: PeerLoop, certs: Certs) -> None:
    with trio.fail_after(20):
        async with aq_server(peer, aq_server_config(certs)) as server:
            async with connect(HOST, server.port, gw_client_config(certs)) as conn:
                stream = await conn.open_stream()
                await stream.send_all(f"stop {STOP_CODE}\n".encode())
                assert await read_all(stream) == b"stopped\n"
                with pytest.raises(StreamStopped) as info:
                    while True:
                        await stream.send_all(b"z" * 4096)
    assert info.value.error_code == STOP_CODE


async def _stop_download(protocol: PeerProtocol, code: int) -> int:
    stream = protocol.open_stream()
    stream.write(b"source 20000000\n", end_stream=True)
    assert await stream.read()
    stream.stop(code)
    return stream.stream_id


async def test_aioquic_client_stop_sending_seen_by_gw_server(peer: PeerLoop, certs: Certs) -> None:
    with trio.fail_after(20):
        async with gw_server(gw_server_config(certs)) as server:
            async with aq_client(peer, server.port, aq_client_config(certs)) as client:
                stream_id = await peer.run(_stop_download(client.protocol, STOP_CODE))
                assert await server.next("stopped") == ("stopped", stream_id, STOP_CODE)


# -- beyond the basics: Retry, QUIC v2, key updates, CIDs, limits, certificates ------------------


async def _echo_check(protocol: PeerProtocol, payload: bytes = b"hello" * 1000) -> bool:
    return await _echo_once(protocol, payload) == payload


async def _gw_echo(conn: Connection, payload: bytes = b"hello" * 1000) -> None:
    stream = await conn.open_stream()
    await stream.send_all(b"echo\n" + payload)
    await stream.send_eof()
    assert await read_all(stream) == payload


async def test_retry_gw_client(peer: PeerLoop, certs: Certs) -> None:
    """aioquic's server validates our address with Retry (RFC 9000 §8.1.2)."""
    with trio.fail_after(20):
        server = await peer.run(PeerServer.start(aq_server_config(certs), HOST, retry=True))
        try:
            async with connect(HOST, server.port, gw_client_config(certs)) as conn:
                await _gw_echo(conn)
        finally:
            await peer.run(server.stop())


async def test_retry_gw_server(peer: PeerLoop, certs: Certs) -> None:
    with trio.fail_after(20):
        async with gw_server(gw_server_config(certs, retry=True)) as server:
            async with aq_client(peer, server.port, aq_client_config(certs)) as client:
                assert await peer.run(_echo_check(client.protocol))
            assert server.server.statistics()["retries_sent"] == 1


async def test_quic_v2_gw_client(peer: PeerLoop, certs: Certs) -> None:
    """QUIC version 2 (RFC 9369): other salts, labels and packet type bits."""
    with trio.fail_after(20):
        async with aq_server(peer, aq_server_config(certs)) as server:
            config = gw_client_config(certs, versions=[QUIC_V2])
            async with connect(HOST, server.port, config) as conn:
                assert conn.version == QUIC_V2
                await _gw_echo(conn)
                [info] = await peer.run(server.describe())
                assert info["version"] == QUIC_V2


async def test_quic_v2_gw_server(peer: PeerLoop, certs: Certs) -> None:
    config = aq_client_config(certs, supported_versions=[QUIC_V2])
    with trio.fail_after(20):
        async with gw_server(gw_server_config(certs, versions=[QUIC_V1, QUIC_V2])) as server:
            async with aq_client(peer, server.port, config) as client:
                assert await peer.run(_echo_check(client.protocol))
                info = await peer.run(_describe(client.protocol))
                _, conn = await server.next("connection")
                assert conn.version == info["version"] == QUIC_V2


async def test_compatible_version_upgrade_gw_server(peer: PeerLoop, certs: Certs) -> None:
    """aioquic's client starts in v1 and offers v2 in version_information (RFC 9368):
    whichever version our server settles on, both sides must agree on it."""
    with trio.fail_after(20):
        async with gw_server(gw_server_config(certs, versions=[QUIC_V2, QUIC_V1])) as server:
            async with aq_client(peer, server.port, aq_client_config(certs)) as client:
                assert await peer.run(_echo_check(client.protocol))
                info = await peer.run(_describe(client.protocol))
                _, conn = await server.next("connection")
                assert conn.version == info["version"]


async def test_version_negotiation_gw_client(peer: PeerLoop, certs: Certs) -> None:
    """aioquic's server speaks only v1; our v2-only client gets Version Negotiation."""
    with trio.fail_after(20):
        config = aq_server_config(certs, supported_versions=[QUIC_V1])
        async with aq_server(peer, config) as server:
            with pytest.raises(HandshakeError, match="version negotiation"):
                async with connect(HOST, server.port, gw_client_config(certs, versions=[QUIC_V2])):
                    pass  # pragma: no cover


async def test_version_negotiation_gw_server(peer: PeerLoop, certs: Certs) -> None:
    config = aq_client_config(certs, supported_versions=[QUIC_V2])
    with trio.fail_after(20):
        async with gw_server(gw_server_config(certs)) as server:
            with pytest.raises(ConnectionError):
                await peer.run(PeerClient.connect(HOST, server.port, config))
            assert server.server.statistics()["version_negotiations_sent"] >= 1


async def _key_update_round(protocol: PeerProtocol) -> int:
    """Echo, update the keys, echo again; returns aioquic's send key phase."""
    assert await _echo_check(protocol)
    protocol.request_key_update()
    assert await _echo_check(protocol, b"after the update" * 500)
    return int(protocol._quic._cryptos[AqEpoch.ONE_RTT].key_phase)


async def test_key_update_by_aioquic_client(peer: PeerLoop, certs: Certs) -> None:
    """aioquic updates the 1-RTT keys (RFC 9001 §6); our server follows."""
    with trio.fail_after(20):
        async with gw_server(gw_server_config(certs)) as server:
            async with aq_client(peer, server.port, aq_client_config(certs)) as client:
                assert await peer.run(_key_update_round(client.protocol)) == 1
                _, conn = await server.next("connection")
                assert conn.core.key_phases.updates == 1
                assert conn.core.key_phases.send_phase == 1


async def test_key_update_by_gw_client(peer: PeerLoop, certs: Certs) -> None:
    with trio.fail_after(20):
        async with aq_server(peer, aq_server_config(certs)) as server:
            async with connect(HOST, server.port, gw_client_config(certs)) as conn:
                await _gw_echo(conn)
                conn.core.request_key_update()
                conn._flush()
                await _gw_echo(conn, b"after the update" * 500)
                assert conn.core.key_phases.send_phase == conn.core.key_phases.recv_phase == 1
                [protocol] = server.connections
                phase = await peer.run(_one_rtt_phase(protocol))
                assert phase == 1


async def _one_rtt_phase(protocol: PeerProtocol) -> int:
    return int(protocol._quic._cryptos[AqEpoch.ONE_RTT].key_phase)


async def _change_cid_and_echo(protocol: PeerProtocol) -> tuple[bytes, bytes]:
    assert await _echo_check(protocol)
    before = protocol._quic._peer_cid.cid
    protocol.change_connection_id()
    assert await _echo_check(protocol, b"on a new connection ID" * 300)
    return before, protocol._quic._peer_cid.cid


async def test_new_connection_id_used_by_aioquic_client(peer: PeerLoop, certs: Certs) -> None:
    """aioquic switches to a CID our server issued (NEW_CONNECTION_ID, RFC 9000 §5.1)."""
    with trio.fail_after(20):
        async with gw_server(gw_server_config(certs)) as server:
            async with aq_client(peer, server.port, aq_client_config(certs)) as client:
                before, after = await peer.run(_change_cid_and_echo(client.protocol))
                assert before != after


async def _many_streams(protocol: PeerProtocol, count: int) -> int:
    streams = [protocol.open_stream() for _ in range(count)]
    for index, stream in enumerate(streams):
        stream.write(b"echo\n" + index.to_bytes(4, "big") * 100, end_stream=True)
    replies = await asyncio.gather(*(s.read_all() for s in streams))
    return sum(reply == i.to_bytes(4, "big") * 100 for i, reply in enumerate(replies))


async def test_stream_limit_gw_server(peer: PeerLoop, certs: Certs) -> None:
    """aioquic opens 3x our MAX_STREAMS: it must wait for the credit we return."""
    with trio.fail_after(30):
        async with gw_server(gw_server_config(certs, max_streams_bidi=10)) as server:
            async with aq_client(peer, server.port, aq_client_config(certs)) as client:
                assert await peer.run(_many_streams(client.protocol, 30)) == 30


async def test_stream_limit_gw_client(peer: PeerLoop, certs: Certs) -> None:
    """We open 300 streams to aioquic (which allows 128 at a time)."""
    done = 0

    async def one(conn: Connection, index: int) -> None:
        nonlocal done
        stream = await conn.open_stream()
        payload = index.to_bytes(4, "big") * 100
        await stream.send_all(b"echo\n" + payload)
        await stream.send_eof()
        assert await read_all(stream) == payload
        done += 1

    with trio.fail_after(60):
        async with aq_server(peer, aq_server_config(certs)) as server:
            async with connect(HOST, server.port, gw_client_config(certs)) as conn:
                async with trio.open_nursery() as nursery:
                    for index in range(300):
                        nursery.start_soon(one, conn, index)
    assert done == 300


SMALL_WINDOWS = {
    "initial_max_data": 32 << 10,
    "initial_max_stream_data": 16 << 10,
    "max_connection_window": 64 << 10,
    "max_stream_window": 32 << 10,
}


async def test_small_flow_control_windows_gw_client(peer: PeerLoop, certs: Certs) -> None:
    """1 MB each way through 16-64 KB windows on both sides (MAX_DATA / MAX_STREAM_DATA)."""
    size = 1 << 20
    expected = f"{hashlib.sha256(pattern(size)).hexdigest()} {size}\n".encode()
    aq_config = aq_server_config(certs, max_data=32 << 10, max_stream_data=16 << 10)
    with trio.fail_after(60):
        async with aq_server(peer, aq_config) as server:
            async with connect(HOST, server.port, gw_client_config(certs, **SMALL_WINDOWS)) as conn:
                stream = await conn.open_stream()
                await stream.send_all(b"sink\n" + pattern(size))
                await stream.send_eof()
                assert await read_all(stream) == expected
                stream = await conn.open_stream()
                await stream.send_all(f"source {size}\n".encode())
                await stream.send_eof()
                assert await read_all(stream) == pattern(size)


async def _aq_upload(protocol: PeerProtocol, size: int) -> bytes:
    stream = protocol.open_stream()
    stream.write(b"sink\n")
    await stream.write_all(pattern(size), end_stream=True)
    return await stream.read_all()


async def _aq_download(protocol: PeerProtocol, size: int) -> tuple[str, int]:
    stream = protocol.open_stream()
    stream.write(f"source {size}\n".encode(), end_stream=True)
    return await stream.hash_all()


async def _small_window_round(protocol: PeerProtocol, size: int) -> tuple[bytes, str]:
    upload = await _aq_upload(protocol, size)
    download, _ = await _aq_download(protocol, size)
    return upload, download


async def test_small_flow_control_windows_gw_server(peer: PeerLoop, certs: Certs) -> None:
    size = 1 << 20
    digest = hashlib.sha256(pattern(size)).hexdigest()
    aq_config = aq_client_config(certs, max_data=32 << 10, max_stream_data=16 << 10)
    with trio.fail_after(60):
        async with gw_server(gw_server_config(certs, **SMALL_WINDOWS)) as server:
            async with aq_client(peer, server.port, aq_config) as client:
                upload, download = await peer.run(_small_window_round(client.protocol, size))
    assert upload == f"{digest} {size}\n".encode()
    assert download == digest


async def test_client_certificate_aioquic_client_gw_server(peer: PeerLoop, certs: Certs) -> None:
    """Mutual TLS: our server requires a client certificate; aioquic presents one."""
    identity = certs.ca.issue(["interop-client"], client=True)
    config = aq_client_config(certs)
    config.certificate = identity.certificate
    config.private_key = identity.private_key
    server_config = gw_server_config(certs, client_cafile=certs.ca_file, require_client_cert=True)
    with trio.fail_after(20):
        async with gw_server(server_config) as server:
            async with aq_client(peer, server.port, config) as client:
                assert await peer.run(_echo_check(client.protocol))
                _, conn = await server.next("connection")
                assert conn.peer_certificates[0] == identity.certificate
            # Without a certificate the handshake fails with certificate_required. The
            # client may already consider its handshake done (it sent Finished), so look
            # at how the connection ended rather than at connect().
            closed = await peer.run(_terminated_without_cert(server.port, aq_client_config(certs)))
            assert closed.error_code == 0x100 + 116  # CRYPTO_ERROR(certificate_required)


async def _terminated_without_cert(port: int, config: Any) -> aq_events.ConnectionTerminated:
    try:
        client = await PeerClient.connect(HOST, port, config)
    except ConnectionError:
        raise AssertionError("no ConnectionTerminated seen") from None
    try:
        event = await client.log.wait_for(_is_terminated)
    finally:
        await client.close()
    assert isinstance(event, aq_events.ConnectionTerminated)
    return event


@pytest.mark.parametrize("key_type", ["rsa", "ec384", "ed25519"])
async def test_certificate_key_types(
    peer: PeerLoop, certs: Certs, tmp_path: Path, key_type: str
) -> None:
    """Signature schemes both ways: RSA-PSS, ECDSA P-384, Ed25519 server certificates."""
    identity = certs.ca.issue(["localhost", HOST], key_type=key_type)  # type: ignore[arg-type]
    identity.write_pem(tmp_path / "cert.pem", tmp_path / "key.pem")
    files = {"certfile": str(tmp_path / "cert.pem"), "keyfile": str(tmp_path / "key.pem")}
    with trio.fail_after(20):
        async with aq_server(peer, aq_server_config(certs, **files)) as server:
            async with connect(HOST, server.port, gw_client_config(certs)) as conn:
                assert conn.peer_certificates[0] == identity.certificate
                await _gw_echo(conn)
        async with gw_server(gw_server_config(certs, **files)) as gw:
            async with aq_client(peer, gw.port, aq_client_config(certs)) as client:
                info = await peer.run(_describe(client.protocol))
                assert info["peer_certificate"] == identity.certificate


async def test_long_chain_and_amplification_limit(
    peer: PeerLoop, certs: Certs, tmp_path: Path
) -> None:
    """An RSA intermediate and a leaf with 150 names: the server's first flight
    exceeds 3x the client's Initial, so both servers must stop at the
    anti-amplification limit (RFC 9000 §8.1) and go on once the client's next
    packets arrive; both clients verify a chain with an intermediate."""
    intermediate = certs.ca.issue_intermediate("interop intermediate", key_type="rsa")
    names = ["localhost", HOST] + [f"name-{i}.interop.example" for i in range(150)]
    identity = intermediate.issue(names, key_type="rsa")
    assert len(identity.chain) == 2
    assert sum(len(c.public_bytes(Encoding.DER)) for c in identity.chain) > 3 * 1200
    identity.write_pem(tmp_path / "cert.pem", tmp_path / "key.pem")
    files = {"certfile": str(tmp_path / "cert.pem"), "keyfile": str(tmp_path / "key.pem")}
    with trio.fail_after(20):
        async with aq_server(peer, aq_server_config(certs, **files)) as server:
            async with connect(HOST, server.port, gw_client_config(certs)) as conn:
                assert conn.peer_certificates == identity.chain
                await _gw_echo(conn)
        async with gw_server(gw_server_config(certs, **files)) as gw:
            async with aq_client(peer, gw.port, aq_client_config(certs)) as client:
                assert await peer.run(_echo_check(client.protocol))


async def _aq_uni_to_peer(protocol: PeerProtocol, payload: bytes) -> None:
    stream_id = protocol._quic.get_next_available_stream_id(is_unidirectional=True)
    protocol._quic.send_stream_data(stream_id, payload, end_stream=True)
    protocol.transmit()


async def test_unidirectional_streams(peer: PeerLoop, certs: Certs) -> None:
    payload = b"one way" * 2000
    with trio.fail_after(20):
        async with aq_server(peer, aq_server_config(certs)) as server:
            async with connect(HOST, server.port, gw_client_config(certs)) as conn:
                stream = await conn.open_stream(bidirectional=False)
                await stream.send_all(payload)
                await stream.send_eof()
                [protocol] = server.connections
                await peer.run(
                    protocol.log.wait_for(
                        lambda e: (
                            isinstance(e, aq_events.StreamDataReceived)
                            and e.stream_id == stream.stream_id
                            and e.end_stream
                        )
                    )
                )
                received = await peer.run(_stream_bytes(protocol, stream.stream_id))
                assert received == payload
                # and aioquic -> us
                await peer.run(_aq_uni_to_peer(protocol, payload))
                incoming = await conn.accept_stream()
                assert incoming.stream_id & 0x3 == 0x3  # server-initiated, unidirectional
                assert await read_all(incoming) == payload  # type: ignore[arg-type]


async def _stream_bytes(protocol: PeerProtocol, stream_id: int) -> bytes:
    return await protocol.streams[stream_id].read_all()


async def test_application_close_codes(peer: PeerLoop, certs: Certs) -> None:
    """CONNECTION_CLOSE (application, 0x1d) carries code and reason both ways."""
    with trio.fail_after(20):
        async with aq_server(peer, aq_server_config(certs)) as server:
            async with connect(HOST, server.port, gw_client_config(certs)) as conn:
                await conn.aclose(0x42, "bye from ghostwire")
            closed = await peer.run(server.wait_for(_is_terminated))
            assert (closed.error_code, closed.reason_phrase) == (0x42, "bye from ghostwire")
            assert closed.frame_type is None  # an application close
        async with gw_server(gw_server_config(certs)) as gw:
            async with aq_client(peer, gw.port, aq_client_config(certs)) as client:
                await peer.run(_close(client.protocol, 0x43, "ciao from aioquic"))
                _, conn = await gw.next("connection")
                await conn.wait_closed()
                with pytest.raises(ConnectionClosed) as info:
                    await conn.open_stream()
    assert info.value.error_code == 0x43
    assert info.value.reason == "ciao from aioquic"
    assert info.value.by_peer and info.value.is_application


async def _close(protocol: PeerProtocol, code: int, reason: str) -> None:
    protocol.close(code, reason)
    await protocol.wait_closed()


async def test_larger_datagrams(peer: PeerLoop, certs: Certs) -> None:
    """max_datagram_size 1452 on both sides: 1-RTT packets above the 1200 minimum."""
    size = 1 << 20
    with trio.fail_after(30):
        config = aq_server_config(certs, max_datagram_size=1452)
        async with aq_server(peer, config) as server:
            client_config = gw_client_config(certs, max_datagram_size=1452)
            async with connect(HOST, server.port, client_config) as conn:
                stream = await conn.open_stream()
                await stream.send_all(f"source {size}\n".encode())
                await stream.send_eof()
                assert await read_all(stream) == pattern(size)
                await _gw_echo(conn, pattern(size))


async def test_path_mtu_discovery_with_aioquic_at_its_default_size(
    peer: PeerLoop, certs: Certs
) -> None:
    """aioquic sends 1200-byte datagrams and no max_udp_payload_size (65527,
    RFC 9000 §18.2): our PING+PADDING probes are acknowledged, we send it
    1452-byte datagrams, and data arrives intact both ways."""
    size = 1 << 20
    with trio.fail_after(30):
        async with aq_server(peer, aq_server_config(certs)) as server:
            async with connect(HOST, server.port, gw_client_config(certs)) as conn:
                stream = await conn.open_stream()
                await stream.send_all(f"source {size}\n".encode())
                await stream.send_eof()
                assert await read_all(stream) == pattern(size)
                await _gw_echo(conn, pattern(size))
                stats = conn.statistics()
                assert stats.max_datagram_size == 1452
                assert stats.pmtu_probes_sent >= 1 and stats.pmtu_probes_lost == 0
                assert stats.pmtu_black_holes == 0


# -- through a UDP relay: NAT rebinding and loss ---------------------------------------------


class UdpRelay:
    """Forwards datagrams between a client and ``target`` like a NAT would.

    ``rebind()`` replaces the socket facing the server, so the server sees
    the client come from a new port and answers to the old one go nowhere.
    ``drop_every`` drops every n-th datagram in each direction.
    """

    def __init__(self, target: tuple[str, int], drop_every: int = 0) -> None:
        self.target = target
        self.drop_every = drop_every
        self.front = trio.socket.socket(type=socket.SOCK_DGRAM)
        self.back: trio.socket.SocketType | None = None
        self.client: Any = None
        self.counts = [0, 0]
        self.dropped = [0, 0]
        self._nursery: trio.Nursery | None = None

    @property
    def port(self) -> int:
        return int(self.front.getsockname()[1])

    async def start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        await self.front.bind((HOST, 0))
        nursery.start_soon(self._from_client)
        await self.rebind()

    async def rebind(self) -> None:
        assert self._nursery is not None
        # The new socket is bound before _from_client may use it (a send
        # would bind it first); a send racing the swap is a lost datagram.
        back = trio.socket.socket(type=socket.SOCK_DGRAM)
        await back.bind((HOST, 0))
        old, self.back = self.back, back
        if old is not None:
            old.close()
        self._nursery.start_soon(self._from_server, back)

    def _drop(self, direction: int) -> bool:
        self.counts[direction] += 1
        if self.drop_every and self.counts[direction] % self.drop_every == 0:
            self.dropped[direction] += 1
            return True
        return False

    async def _from_client(self) -> None:
        while True:
            data, self.client = await self.front.recvfrom(65536)
            if not self._drop(0) and self.back is not None:
                with contextlib.suppress(OSError, trio.ClosedResourceError):
                    await self.back.sendto(data, self.target)

    async def _from_server(self, sock: trio.socket.SocketType) -> None:
        while True:
            try:
                data, _ = await sock.recvfrom(65536)
            except (OSError, trio.ClosedResourceError):
                return  # rebound: this socket is gone
            if not self._drop(1):
                await self.front.sendto(data, self.client)


@asynccontextmanager
async def relay_to(port: int, drop_every: int = 0) -> AsyncIterator[UdpRelay]:
    async with trio.open_nursery() as nursery:
        relay = UdpRelay((HOST, port), drop_every)
        await relay.start(nursery)
        try:
            yield relay
        finally:
            nursery.cancel_scope.cancel()
            relay.front.close()
            if relay.back is not None:
                relay.back.close()


async def test_nat_rebinding_aioquic_client_gw_server(peer: PeerLoop, certs: Certs) -> None:
    """Our server follows aioquic's client to its new port and validates it (RFC 9000 §9.3)."""
    with trio.fail_after(30):
        async with gw_server(gw_server_config(certs)) as server, relay_to(server.port) as relay:
            async with aq_client(peer, relay.port, aq_client_config(certs)) as client:
                assert await peer.run(_echo_check(client.protocol))
                _, conn = await server.next("connection")
                first = conn.peer_address
                for round_ in range(3):
                    await relay.rebind()
                    assert await peer.run(_echo_check(client.protocol, b"moved" * (round_ + 1)))
                # The last echo's reply can reach aioquic before its PATH_RESPONSE
                # reaches us: one more echo on the same path comes after it.
                assert await peer.run(_echo_check(client.protocol, b"settled"))
                assert conn.peer_address != first
                assert conn.core.path.migrations == 3
                assert conn.core.address_validated


async def test_nat_rebinding_gw_client_aioquic_server(peer: PeerLoop, certs: Certs) -> None:
    """aioquic's server validates our new port; we answer its PATH_CHALLENGE."""
    with trio.fail_after(30):
        async with aq_server(peer, aq_server_config(certs)) as server:
            async with relay_to(server.port) as relay:
                config = gw_client_config(certs, server_name="localhost")
                async with connect(HOST, relay.port, config) as conn:
                    await _gw_echo(conn)
                    for round_ in range(3):
                        await relay.rebind()
                        await _gw_echo(conn, b"moved" * (round_ + 1))
                    assert relay.back is not None
                    [protocol] = server.connections
                    peer_port = await peer.run(_aq_peer_port(protocol))
                    assert peer_port == relay.back.getsockname()[1]


async def _aq_peer_port(protocol: PeerProtocol) -> int:
    """The port aioquic now sends to (after validating it)."""
    path = protocol._quic._network_paths[0]
    assert path.is_validated
    return int(path.addr[1])


@pytest.mark.parametrize("role", ROLES)
async def test_transfer_with_loss(peer: PeerLoop, certs: Certs, role: str) -> None:
    """Every 7th datagram lost both ways, handshake included: 300 KB each way."""
    size = 300_000
    digest = hashlib.sha256(pattern(size)).hexdigest()
    with trio.fail_after(60):
        if role == "gw-client":
            async with aq_server(peer, aq_server_config(certs)) as server:
                async with relay_to(server.port, drop_every=7) as relay:
                    config = gw_client_config(certs, server_name="localhost")
                    async with connect(HOST, relay.port, config) as conn:
                        stream = await conn.open_stream()
                        await stream.send_all(b"sink\n" + pattern(size))
                        await stream.send_eof()
                        assert await read_all(stream) == f"{digest} {size}\n".encode()
                        stream = await conn.open_stream()
                        await stream.send_all(f"source {size}\n".encode())
                        await stream.send_eof()
                        assert await read_all(stream) == pattern(size)
                        assert conn.statistics().packets_lost > 0
        else:
            async with gw_server(gw_server_config(certs)) as server:
                async with relay_to(server.port, drop_every=7) as relay:
                    async with aq_client(peer, relay.port, aq_client_config(certs)) as client:
                        upload, download = await peer.run(
                            _small_window_round(client.protocol, size)
                        )
    assert relay.dropped[0] > 10 and relay.dropped[1] > 10
    if role == "gw-server":
        assert upload == f"{digest} {size}\n".encode()
        assert download == digest


# -- idle timeout and many connections --------------------------------------------------------


async def test_idle_timeout_negotiated_with_aioquic_server(peer: PeerLoop, certs: Certs) -> None:
    """aioquic's 0.5 s max_idle_timeout wins over our 30 s (RFC 9000 §10.1): both end."""
    with trio.fail_after(20):
        async with aq_server(peer, aq_server_config(certs, idle_timeout=0.5)) as server:
            async with connect(HOST, server.port, gw_client_config(certs)) as conn:
                await _gw_echo(conn)
                await conn.wait_closed()
                with pytest.raises(IdleTimeout):
                    await conn.open_stream()
            await peer.run(server.wait_for(_is_terminated))


async def _idle_until_terminated(port: int, config: Any) -> None:
    client = await PeerClient.connect(HOST, port, config)
    try:
        assert await _echo_check(client.protocol)
        await client.log.wait_for(_is_terminated)
    finally:
        await client.close()


async def test_idle_timeout_negotiated_with_aioquic_client(peer: PeerLoop, certs: Certs) -> None:
    with trio.fail_after(20):
        async with gw_server(gw_server_config(certs)) as server:
            config = aq_client_config(certs, idle_timeout=0.5)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(peer.run, _idle_until_terminated(server.port, config))
                _, conn = await server.next("connection")
                await conn.wait_closed()
                with pytest.raises(IdleTimeout):
                    await conn.open_stream()


async def test_many_aioquic_clients_at_once(peer: PeerLoop, certs: Certs) -> None:
    """20 aioquic connections to one ghostwire server at the same time (demultiplexing)."""

    async def one(port: int, index: int) -> bool:
        client = await PeerClient.connect(HOST, port, aq_client_config(certs))
        try:
            return await _echo_check(client.protocol, index.to_bytes(2, "big") * 3000)
        finally:
            await client.close()

    async def all_of_them(port: int) -> list[bool]:
        return list(await asyncio.gather(*(one(port, i) for i in range(20))))

    with trio.fail_after(60):
        async with gw_server(gw_server_config(certs)) as server:
            assert await peer.run(all_of_them(server.port)) == [True] * 20
            assert server.server.statistics()["connections_refused"] == 0


async def test_many_gw_clients_at_once(peer: PeerLoop, certs: Certs) -> None:
    ok = 0

    async def one(port: int, index: int) -> None:
        nonlocal ok
        async with connect(HOST, port, gw_client_config(certs)) as conn:
            await _gw_echo(conn, index.to_bytes(2, "big") * 3000)
            ok += 1

    with trio.fail_after(60):
        async with aq_server(peer, aq_server_config(certs)) as server:
            async with trio.open_nursery() as nursery:
                for index in range(20):
                    nursery.start_soon(one, server.port, index)
            assert len(server.connections) == 20
    assert ok == 20
