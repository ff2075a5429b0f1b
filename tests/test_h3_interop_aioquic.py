"""HTTP/3 interoperability with aioquic over loopback UDP, in both directions.

``gw-client``: our :class:`ghostwire.http3.Client` against an aioquic HTTP/3
server (aioquic.h3 over aioquic.asyncio, tests/aioquic_h3_peer.py).
``gw-server``: an aioquic HTTP/3 client against :func:`ghostwire.http3.serve`
with a native handler (and, for some cases, an ASGI app).

Both servers answer the same routes (aioquic_h3_peer.route): generated
bodies with their sha256, a sha256-reporting POST sink that echoes request
trailers, response trailers, and echoed request headers. Certificates come
from a CA made at test time; both stacks verify them.

Cancellation: our client abandoning a response and an upload; aioquic's
client resetting requests mid-upload, more often than the stream limit, so
a stream our server leaves half-open stalls the connection.

QPACK: a large header set (50 long custom fields) sent repeatedly must go
through the dynamic table both ways. On our side :class:`QpackProbe` wraps
the pylsqpack encoder and decoder of the session's H3Connection and counts
field sections whose Required Insert Count is non-zero (they reference the
dynamic table, RFC 9204 §4.5.1) and encoder-stream bytes; on aioquic's side
its H3Connection counts the bytes on its encoder and decoder streams.

Throughput: the 20 MB transfers run in-process (both stacks share the GIL,
so timings are indicative) and again with aioquic in its own process
(``python tests/aioquic_h3_peer.py``); each prints its MB/s (pytest -s).

Everything is bounded: ``trio.fail_after`` here, ``asyncio.wait_for`` on the
aioquic loop (aioquic_peer.PeerLoop), threads joined at the end.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

pytest.importorskip("aioquic")
import pylsqpack
from aioquic.quic import events as aq_events
from aioquic_h3_peer import H3PeerClient, H3PeerServer, PeerResponse, route, sha256_hex
from aioquic_peer import PeerLoop, pattern, peer_configuration, peer_server_process
from quic_pair import client_config, server_config

from ghostwire.certs import CertificateAuthority, IssuedCertificate
from ghostwire.http3 import (
    Client,
    H3Config,
    H3Connection,
    H3ErrorCode,
    HttpStreamError,
    Request,
    Response,
)
from ghostwire.http3 import serve as h3_serve
from ghostwire.http3.net.session import H3Session
from ghostwire.quic import QuicServer
from ghostwire.quic.tls import TrustStore

pytestmark = pytest.mark.interop

HOST = "127.0.0.1"
ROLES = ["gw-client", "gw-server"]
SMALL = 1234
BIG = 20 << 20
MEDIUM = 2 << 20  # the ASGI upload
UPLOAD = 10 << 20
CONCURRENT = 100
HEADER_FIELDS = 50
HEADER_ROUNDS = 6


# -- certificates (a CA made at test time) -------------------------------------------------


@dataclass
class Certs:
    ca: CertificateAuthority
    ca_file: str
    gw: IssuedCertificate  # our server's identity
    aq_cert: str  # aioquic server's certificate and key files
    aq_key: str


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    path = tmp_path_factory.mktemp("h3-interop-certs")
    ca = CertificateAuthority.create("ghostwire HTTP/3 interop CA")
    ca.write_pem(path / "ca.pem")
    gw = ca.issue(["localhost", HOST])
    aq = ca.issue(["localhost", HOST])
    aq.write_pem(path / "aq.pem", path / "aq.key")
    return Certs(ca, str(path / "ca.pem"), gw, str(path / "aq.pem"), str(path / "aq.key"))


# -- observing QPACK on our side -----------------------------------------------------------


@dataclass
class QpackProbe:
    """Counts what our QPACK encoder and decoder do (wraps their pylsqpack objects).

    A field section's first byte is its encoded Required Insert Count
    (RFC 9204 §4.5.1.1): non-zero means it references the dynamic table.
    """

    encoded_sizes: list[int] = field(default_factory=list)
    encoded_dynamic: int = 0
    decoded_sizes: list[int] = field(default_factory=list)
    decoded_dynamic: int = 0
    decoded_blocked: int = 0  # sections that waited for encoder-stream data (§2.1.2)
    encoder_stream_sent: int = 0
    encoder_stream_received: int = 0
    decoder_stream_received: int = 0

    @classmethod
    def install(cls, h3: H3Connection) -> QpackProbe:
        probe = cls()
        h3.encoder._encoder = _ProbeEncoder(h3.encoder._encoder, probe)
        h3.decoder._decoder = _ProbeDecoder(h3.decoder._decoder, probe)
        return probe


class _ProbeEncoder:
    def __init__(self, inner: Any, probe: QpackProbe) -> None:
        self._inner, self._probe = inner, probe

    def apply_settings(self, *args: Any) -> bytes:
        return bytes(self._inner.apply_settings(*args))

    def encode(self, stream_id: int, headers: Any) -> tuple[bytes, bytes]:
        data, block = self._inner.encode(stream_id, headers)
        self._probe.encoded_sizes.append(len(block))
        self._probe.encoded_dynamic += block[0] != 0
        self._probe.encoder_stream_sent += len(data)
        return data, block

    def feed_decoder(self, data: bytes) -> None:
        self._probe.decoder_stream_received += len(data)
        self._inner.feed_decoder(data)


class _ProbeDecoder:
    def __init__(self, inner: Any, probe: QpackProbe) -> None:
        self._inner, self._probe = inner, probe

    def feed_header(self, stream_id: int, block: bytes) -> Any:
        self._probe.decoded_sizes.append(len(block))
        self._probe.decoded_dynamic += block[0] != 0
        try:
            return self._inner.feed_header(stream_id, block)
        except pylsqpack.StreamBlocked:
            self._probe.decoded_blocked += 1
            raise

    def feed_encoder(self, data: bytes) -> Any:
        self._probe.encoder_stream_received += len(data)
        return self._inner.feed_encoder(data)

    def resume_header(self, stream_id: int) -> Any:
        return self._inner.resume_header(stream_id)

    def cancel_stream(self, stream_id: int) -> Any:
        return self._inner.cancel_stream(stream_id)


# -- a uniform view of both directions -----------------------------------------------------


@dataclass
class Result:
    """A complete response, whichever stack received it."""

    status: int
    headers: list[tuple[str, str]]
    sha256: str
    length: int
    body: bytes | None
    trailers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @classmethod
    def of(cls, response: PeerResponse) -> Result:
        assert response.status is not None
        return cls(
            response.status,
            response.headers,
            response.sha256,
            response.length,
            response.body,
            response.trailers,
        )


class Driver:
    """Sends requests across the pair, whichever side is ours."""

    role: str
    peer: PeerLoop

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        content: bytes = b"",
        trailers: Sequence[tuple[str, str]] = (),
        keep_body: bool = True,
    ) -> Result:
        raise NotImplementedError

    def our_h3(self) -> H3Connection:
        raise NotImplementedError

    async def their_qpack(self) -> dict[str, int]:
        raise NotImplementedError

    def connections(self) -> tuple[int, int]:
        """(our connections, aioquic's connections) used so far."""
        raise NotImplementedError


class GwClientDriver(Driver):
    role = "gw-client"

    def __init__(self, peer: PeerLoop, client: Client, server: H3PeerServer) -> None:
        self.peer, self.client, self.server = peer, client, server
        self.base = f"https://{HOST}:{server.port}"
        self.sessions: list[H3Session] = []

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        content: bytes = b"",
        trailers: Sequence[tuple[str, str]] = (),
        keep_body: bool = True,
    ) -> Result:
        response = await self.client.request(
            method,
            self.base + path,
            headers=list(headers),
            content=content or None,
            trailers=list(trailers) or None,
        )
        for session in self.client._sessions.values():
            if session not in self.sessions:
                self.sessions.append(session)
        digest, length, body = hashlib.sha256(), 0, bytearray()
        async for chunk in response.iter_bytes():
            digest.update(chunk)
            length += len(chunk)
            if keep_body:
                body += chunk
        return Result(
            response.status,
            response.headers,
            digest.hexdigest(),
            length,
            bytes(body) if keep_body else None,
            response.trailers,
        )

    def our_h3(self) -> H3Connection:
        [session] = self.sessions
        return session.h3

    async def their_qpack(self) -> dict[str, int]:
        [stats] = await self.peer.run(self.server.qpack_stats())
        return stats

    def connections(self) -> tuple[int, int]:
        return len(self.sessions), len(self.server.connections)


class GwApp:
    """Our server's application: aioquic_h3_peer.route, as a native handler or ASGI app."""

    def __init__(self) -> None:
        self.sessions: list[H3Session] = []
        self.errors: list[BaseException] = []
        self.resets: list[HttpStreamError] = []  # requests the client reset
        self.requests = 0

    def _seen(self, session: H3Session) -> None:
        if session not in self.sessions:
            self.sessions.append(session)

    async def handle(self, request: Request) -> Response:
        """The native handler."""
        self._seen(request._channel.session)
        try:
            digest, length = hashlib.sha256(), 0
            async for chunk in request.iter_bytes():
                digest.update(chunk)
                length += len(chunk)
            reply = route(
                request.method,
                request.path,
                request.headers,
                digest.hexdigest(),
                length,
                request.trailers,
            )
            self.requests += 1
            return Response(reply.status, reply.headers, reply.body, reply.trailers)
        except HttpStreamError as exc:
            self.resets.append(exc)
            raise
        except BaseException as exc:
            self.errors.append(exc)
            raise

    async def asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The same routes as an ASGI 3 app (no request trailers in ASGI)."""
        try:
            digest, length = hashlib.sha256(), 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    self.resets.append(HttpStreamError("http.disconnect", error_code=0))
                    return
                body = message.get("body", b"")
                digest.update(body)
                length += len(body)
                if not message.get("more_body", False):
                    break
            headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in scope["headers"]]
            path = scope["raw_path"].decode("latin-1")
            reply = route(scope["method"], path, headers, digest.hexdigest(), length, [])
            head = [(n.encode(), v.encode()) for n, v in reply.headers]
            head.append((b"content-length", str(len(reply.body)).encode()))
            await send(
                {
                    "type": "http.response.start",
                    "status": reply.status,
                    "headers": head,
                    "trailers": bool(reply.trailers),
                }
            )
            await send({"type": "http.response.body", "body": reply.body})
            if reply.trailers:
                trailers = [(n.encode(), v.encode()) for n, v in reply.trailers]
                await send({"type": "http.response.trailers", "headers": trailers})
            self.requests += 1
        except BaseException as exc:
            self.errors.append(exc)
            raise


class GwServerDriver(Driver):
    role = "gw-server"

    def __init__(self, peer: PeerLoop, client: H3PeerClient, app: GwApp) -> None:
        self.peer, self.client, self.app = peer, client, app

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        content: bytes = b"",
        trailers: Sequence[tuple[str, str]] = (),
        keep_body: bool = True,
    ) -> Result:
        response = await self.peer.run(
            self.client.request(
                method,
                path,
                headers=list(headers),
                body=content,
                trailers=list(trailers),
                keep_body=keep_body,
            )
        )
        return Result.of(response)

    def our_h3(self) -> H3Connection:
        [session] = self.app.sessions
        return session.h3

    async def their_qpack(self) -> dict[str, int]:
        return await self.peer.run(self.client.qpack_stats())

    def connections(self) -> tuple[int, int]:
        return len(self.app.sessions), 1


def gw_client_config(certs: Certs) -> Any:
    return client_config(alpn=["h3"], trust_store=TrustStore([certs.ca.certificate]))


def gw_server_config(certs: Certs, **overrides: Any) -> Any:
    return server_config(
        alpn=["h3"],
        certificate_chain=certs.gw.chain,
        private_key=certs.gw.private_key,
        **overrides,
    )


@asynccontextmanager
async def gw_client_driver(
    peer: PeerLoop, certs: Certs, h3_config: H3Config | None = None
) -> AsyncIterator[Driver]:
    configuration = peer_configuration(
        is_client=False, alpn=["h3"], certfile=certs.aq_cert, keyfile=certs.aq_key
    )
    server = await peer.run(H3PeerServer.start(configuration, HOST))
    try:
        async with Client(gw_client_config(certs), h3_config=h3_config, timeout=60) as client:
            yield GwClientDriver(peer, client, server)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await peer.run(server.stop())
    assert not server.handler_errors, server.handler_errors


@asynccontextmanager
async def gw_server_driver(
    peer: PeerLoop,
    certs: Certs,
    h3_config: H3Config | None = None,
    asgi: bool = False,
    **server_options: Any,
) -> AsyncIterator[Driver]:
    app = GwApp()
    configuration = peer_configuration(
        is_client=True, alpn=["h3"], cafile=certs.ca_file, server_name="localhost"
    )
    async with trio.open_nursery() as nursery:
        server: QuicServer = await nursery.start(
            partial(
                h3_serve,
                app.asgi if asgi else app.handle,
                0,
                gw_server_config(certs, **server_options),
                host=HOST,
                h3_config=h3_config,
                shutdown_timeout=2.0,
            )
        )
        client = await peer.run(H3PeerClient.connect(HOST, server.port, configuration))
        try:
            yield GwServerDriver(peer, client, app)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await peer.run(client.close())
            nursery.cancel_scope.cancel()
    assert not app.errors, app.errors


def open_driver(role: str, peer: PeerLoop, certs: Certs, **kwargs: Any) -> Any:
    if role == "gw-client":
        return gw_client_driver(peer, certs, **kwargs)
    return gw_server_driver(peer, certs, **kwargs)


def _report(what: str, size: int, seconds: float) -> None:
    print(f"\n{what}: {size / 1e6:.1f} MB in {seconds:.2f} s = {size / 1e6 / seconds:.1f} MB/s")


def _direction(role: str, upload: bool) -> str:
    if role == "gw-client":
        client, server = "ghostwire client", "aioquic server"
    else:
        client, server = "aioquic client", "ghostwire server"
    return f"{client} -> {server}" if upload else f"{server} -> {client}"


# -- GET -----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
async def test_get_small(peer: PeerLoop, certs: Certs, role: str) -> None:
    with trio.fail_after(20):
        async with open_driver(role, peer, certs) as driver:
            result = await driver.request("GET", f"/bytes/{SMALL}")
            missing = await driver.request("GET", "/nothing-here")
            assert driver.connections() == (1, 1)
    assert result.status == 200
    assert result.body == pattern(SMALL)
    assert result.header("x-body-sha256") == sha256_hex(pattern(SMALL))
    assert result.header("content-length") == str(SMALL)
    assert result.header("content-type") == "application/octet-stream"
    assert result.trailers == []
    assert missing.status == 404
    assert missing.body == b"not found\n"


async def test_get_small_asgi(peer: PeerLoop, certs: Certs) -> None:
    with trio.fail_after(20):
        async with gw_server_driver(peer, certs, asgi=True) as driver:
            result = await driver.request("GET", f"/bytes/{SMALL}")
    assert result.status == 200
    assert result.body == pattern(SMALL)
    assert result.header("x-body-sha256") == sha256_hex(pattern(SMALL))


async def _get_big(peer: PeerLoop, certs: Certs, role: str, size: int) -> None:
    expected = sha256_hex(pattern(size))
    async with open_driver(role, peer, certs) as driver:
        await driver.request("GET", "/bytes/1")  # handshake and SETTINGS out of the timing
        started = time.perf_counter()
        result = await driver.request("GET", f"/bytes/{size}", keep_body=False)
        elapsed = time.perf_counter() - started
    assert result.status == 200
    assert (result.sha256, result.length) == (expected, size)
    assert result.header("x-body-sha256") == expected
    _report(f"GET {_direction(role, upload=False)}", size, elapsed)


@pytest.mark.parametrize("role", ROLES)
async def test_get_20mb(peer: PeerLoop, certs: Certs, role: str) -> None:
    with trio.fail_after(60):
        await _get_big(peer, certs, role, BIG)


# -- POST ----------------------------------------------------------------------------------


async def _post(driver: Driver, size: int) -> Result:
    started = time.perf_counter()
    result = await driver.request("POST", "/sha256", content=pattern(size))
    _report(f"POST {_direction(driver.role, upload=True)}", size, time.perf_counter() - started)
    return result


@pytest.mark.parametrize("role", ROLES)
async def test_post_10mb(peer: PeerLoop, certs: Certs, role: str) -> None:
    expected = sha256_hex(pattern(UPLOAD))
    with trio.fail_after(60):
        async with open_driver(role, peer, certs) as driver:
            result = await _post(driver, UPLOAD)
    assert result.status == 200
    assert result.header("x-request-sha256") == expected
    assert result.header("x-request-length") == str(UPLOAD)
    assert result.body == f"{expected} {UPLOAD}\n".encode()


async def test_post_asgi(peer: PeerLoop, certs: Certs) -> None:
    size = MEDIUM
    expected = sha256_hex(pattern(size))
    with trio.fail_after(30):
        async with gw_server_driver(peer, certs, asgi=True) as driver:
            result = await driver.request("POST", "/sha256", content=pattern(size))
    assert result.status == 200
    assert result.body == f"{expected} {size}\n".encode()


# -- many requests on one connection -------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
async def test_100_concurrent_requests(peer: PeerLoop, certs: Certs, role: str) -> None:
    results: dict[int, Result] = {}

    async def one(driver: Driver, index: int) -> None:
        size = 1000 + 97 * index
        results[index] = await driver.request("GET", f"/bytes/{size}", keep_body=False)

    with trio.fail_after(60):
        async with open_driver(role, peer, certs) as driver:
            async with trio.open_nursery() as nursery:
                for index in range(CONCURRENT):
                    nursery.start_soon(one, driver, index)
            # all on one connection
            assert driver.connections() == (1, 1)
    assert sorted(results) == list(range(CONCURRENT))
    for index, result in results.items():
        size = 1000 + 97 * index
        assert result.status == 200, index
        assert (result.sha256, result.length) == (sha256_hex(pattern(size)), size), index


# -- trailers ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
async def test_response_trailers(peer: PeerLoop, certs: Certs, role: str) -> None:
    size = 300_000
    with trio.fail_after(20):
        async with open_driver(role, peer, certs) as driver:
            result = await driver.request("GET", f"/trailers/{size}")
    assert result.status == 200
    assert result.body == pattern(size)
    assert result.header("x-body-sha256") is None  # it comes after the body
    assert result.trailers == [
        ("x-body-sha256", sha256_hex(pattern(size))),
        ("x-trailer-note", "sent after the body"),
    ]


async def test_response_trailers_asgi(peer: PeerLoop, certs: Certs) -> None:
    size = 100_000
    with trio.fail_after(20):
        async with gw_server_driver(peer, certs, asgi=True) as driver:
            result = await driver.request("GET", f"/trailers/{size}")
    assert result.body == pattern(size)
    assert ("x-body-sha256", sha256_hex(pattern(size))) in result.trailers


@pytest.mark.parametrize("role", ROLES)
async def test_request_trailers(peer: PeerLoop, certs: Certs, role: str) -> None:
    body = pattern(200_000)
    trailers = [("x-checksum", sha256_hex(body)), ("x-client-note", "request trailers")]
    with trio.fail_after(20):
        async with open_driver(role, peer, certs) as driver:
            result = await driver.request("POST", "/sha256", content=body, trailers=trailers)
            # and without a body: HEADERS, then the trailer section
            empty = await driver.request("POST", "/sha256", trailers=trailers[1:])
    assert result.status == 200
    assert result.header("x-request-sha256") == sha256_hex(body)
    assert result.header("x-echo-trailer-x-checksum") == sha256_hex(body)
    assert result.header("x-echo-trailer-x-client-note") == "request trailers"
    assert empty.header("x-request-length") == "0"
    assert empty.header("x-echo-trailer-x-client-note") == "request trailers"


# -- cancellation --------------------------------------------------------------------------


async def _stream_event(protocol: Any, kind: type, stream_id: int) -> Any:
    return await protocol.log.wait_for(lambda e: isinstance(e, kind) and e.stream_id == stream_id)


async def test_gw_client_cancels_requests(peer: PeerLoop, certs: Certs) -> None:
    """Our client drops a response mid-body and a request mid-upload; the connection lives on."""

    async def stalled_body() -> AsyncIterator[bytes]:
        yield pattern(100_000)
        await trio.sleep_forever()

    with trio.fail_after(30):
        async with gw_client_driver(peer, certs) as driver:
            client = driver.client
            response = await client.get(driver.base + f"/bytes/{BIG}")
            chunks = response.iter_bytes()
            assert await chunks.__anext__()
            await chunks.aclose()
            await response.aclose()  # RFC 9114 §4.1.1: STOP_SENDING + RESET_STREAM
            with trio.move_on_after(0.5) as upload:
                await client.post(driver.base + "/sha256", stalled_body())
            assert upload.cancelled_caught
            after = await driver.request("GET", f"/bytes/{SMALL}")
            assert after.body == pattern(SMALL)
            assert driver.connections() == (1, 1)
            [aq] = driver.server.connections
            # (the GET's request side had ended with its FIN: STOP_SENDING only)
            stop = await peer.run(_stream_event(aq, aq_events.StopSendingReceived, 0))
            upload_reset = await peer.run(_stream_event(aq, aq_events.StreamReset, 4))
            h3 = driver.our_h3()
            assert h3.open_stream_count == 0, h3.streams
    cancelled = H3ErrorCode.H3_REQUEST_CANCELLED
    assert stop.error_code == upload_reset.error_code == cancelled


@pytest.mark.parametrize("app_kind", ["native", "asgi"])
async def test_gw_server_aborts_requests_the_client_reset(
    peer: PeerLoop, certs: Certs, app_kind: str
) -> None:
    """aioquic resets requests mid-upload (its sending side only), twice as many times
    as the stream limit: our server must end its side too (RFC 9114 §4.1), or the
    streams never close and the client runs out of stream credit."""
    limit = 8
    with trio.fail_after(30):
        async with gw_server_driver(
            peer, certs, asgi=app_kind == "asgi", max_streams_bidi=limit
        ) as driver:
            assert isinstance(driver, GwServerDriver)
            client = driver.client
            codes = [
                await peer.run(
                    client.protocol.abandon_request(
                        client.authority,
                        "/sha256",
                        pattern(20_000),
                        H3ErrorCode.H3_REQUEST_CANCELLED,
                        at_once=bool(i % 2),
                    )
                )
                for i in range(2 * limit)
            ]
            after = await driver.request("GET", f"/bytes/{SMALL}")
            assert after.body == pattern(SMALL)
            if app_kind == "native":  # (an ASGI scope does not lead to the session)
                assert driver.our_h3().open_stream_count == 0
    print(f"\nour server's RESET_STREAM codes: {[hex(c) if c else c for c in codes]}")
    assert set(codes) <= {H3ErrorCode.H3_REQUEST_INCOMPLETE, H3ErrorCode.H3_REQUEST_REJECTED}


# -- QPACK: large header sets through the dynamic table ------------------------------------


def big_header_set(salt: str = "") -> list[tuple[str, str]]:
    """HEADER_FIELDS custom fields with long values (about 5 kB in all)."""
    return [
        (
            f"x-interop-field-{i:02d}",
            f"{salt}value-{i:02d}-" + sha256_hex(f"{salt}{i}".encode())[:56],
        )
        for i in range(HEADER_FIELDS)
    ]


def _echoed(result: Result) -> list[tuple[str, str]]:
    return [(n, v) for n, v in result.headers if n.startswith("x-")]


@pytest.mark.parametrize("role", ROLES)
async def test_qpack_dynamic_table_large_header_sets(
    peer: PeerLoop, certs: Certs, role: str
) -> None:
    # Our decoder offers a table big enough for the whole set; aioquic's
    # offers its default 4096 bytes, so our encoder has to evict as it goes.
    h3_config = H3Config(qpack_max_table_capacity=16384)
    fields = big_header_set()
    with trio.fail_after(60):
        async with open_driver(role, peer, certs, h3_config=h3_config) as driver:
            await driver.request("GET", "/echo-headers")  # both SETTINGS are known now
            h3 = driver.our_h3()
            probe = QpackProbe.install(h3)
            encoder_before = h3.encoder.encoder_bytes
            theirs_before = await driver.their_qpack()

            sequential = [
                await driver.request("GET", "/echo-headers", headers=[*fields, ("x-round", str(i))])
                for i in range(HEADER_ROUNDS)
            ]
            # the same set on many concurrent streams, and a changed set
            concurrent: dict[int, Result] = {}

            async def one(index: int) -> None:
                concurrent[index] = await driver.request(
                    "GET", "/echo-headers", headers=[*fields, ("x-round", f"c{index}")]
                )

            async with trio.open_nursery() as nursery:
                for index in range(20):
                    nursery.start_soon(one, index)
            changed = big_header_set("changed-")
            churned = await driver.request("GET", "/echo-headers", headers=changed)

            theirs = await driver.their_qpack()
            encoder_bytes = h3.encoder.encoder_bytes - encoder_before
            assert driver.connections() == (1, 1)

    # every header came back intact
    for i, result in enumerate(sequential):
        assert result.status == 200
        assert _echoed(result) == [*fields, ("x-round", str(i))]
    for index, result in concurrent.items():
        assert _echoed(result) == [*fields, ("x-round", f"c{index}")]
    assert _echoed(churned) == changed

    raw = sum(len(n) + len(v) for n, v in fields)
    print(
        f"\n{role}: raw field bytes {raw}; our sections {probe.encoded_sizes[:HEADER_ROUNDS]}"
        f" ({probe.encoded_dynamic}/{len(probe.encoded_sizes)} dynamic),"
        f" peer's sections {probe.decoded_sizes[:HEADER_ROUNDS]}"
        f" ({probe.decoded_dynamic}/{len(probe.decoded_sizes)} dynamic,"
        f" {probe.decoded_blocked} blocked); our encoder stream {encoder_bytes} B;"
        f" aioquic {theirs} (before {theirs_before})"
    )
    # Our encoder inserted into aioquic's table and referenced it ...
    assert encoder_bytes > 0 and probe.encoder_stream_sent == encoder_bytes
    assert probe.encoded_dynamic >= HEADER_ROUNDS
    # ... so repeated sections shrank (the first carries literals + inserts)
    assert min(probe.encoded_sizes[1:HEADER_ROUNDS]) < probe.encoded_sizes[0] / 2
    # ... aioquic received the inserts and acknowledged sections on its decoder stream
    grew = {k: theirs[k] - theirs_before[k] for k in theirs}
    assert grew["encoder_bytes_received"] == encoder_bytes
    assert grew["decoder_bytes_sent"] > 0
    assert probe.decoder_stream_received == grew["decoder_bytes_sent"]
    # aioquic's encoder did the same in the other direction, and we acknowledged
    assert grew["encoder_bytes_sent"] > 0
    assert probe.encoder_stream_received == grew["encoder_bytes_sent"]
    assert probe.decoded_dynamic >= HEADER_ROUNDS
    assert min(probe.decoded_sizes[1:HEADER_ROUNDS]) < raw / 4
    assert grew["decoder_bytes_received"] > 0


# -- 20 MB with aioquic in its own process (throughput without GIL sharing) ----------------
#
# In-process, the two stacks hand the GIL over on every sendto/recvfrom, so
# the timings above measure that as much as either stack. These run the
# aioquic side as ``python tests/aioquic_h3_peer.py ...``.

PEER_SCRIPT = str(Path(__file__).with_name("aioquic_h3_peer.py"))


@asynccontextmanager
async def aq_h3_server_process(certs: Certs) -> AsyncIterator[int]:
    """An aioquic HTTP/3 server in a subprocess; yields its port."""
    command = [
        sys.executable,
        PEER_SCRIPT,
        "serve",
        "--certfile",
        certs.aq_cert,
        "--keyfile",
        certs.aq_key,
        "--timeout",
        "120",
    ]
    async with peer_server_process(command) as port:
        yield port


async def _gw_client_process_transfer(certs: Certs, method: str, size: int) -> tuple[str, float]:
    async with aq_h3_server_process(certs) as port:
        async with Client(gw_client_config(certs), timeout=60) as client:
            base = f"https://{HOST}:{port}"
            await (await client.get(f"{base}/bytes/1")).read()
            started = time.perf_counter()
            if method == "GET":
                response = await client.get(f"{base}/bytes/{size}")
                digest, length = hashlib.sha256(), 0
                async for chunk in response.iter_bytes():
                    digest.update(chunk)
                    length += len(chunk)
                assert (response.status, length) == (200, size)
                reported = digest.hexdigest()
            else:
                response = await client.post(f"{base}/sha256", pattern(size))
                await response.read()
                assert response.header("x-request-length") == str(size)
                reported = response.header("x-request-sha256") or ""
            return reported, time.perf_counter() - started


async def _gw_server_process_transfer(certs: Certs, method: str, size: int) -> tuple[str, float]:
    app = GwApp()
    async with trio.open_nursery() as nursery:
        server: QuicServer = await nursery.start(
            partial(h3_serve, app.handle, 0, gw_server_config(certs), host=HOST)
        )
        command = [
            sys.executable,
            PEER_SCRIPT,
            method.lower(),
            "--port",
            str(server.port),
            "--cafile",
            certs.ca_file,
            "--path",
            f"/bytes/{size}",
            "--size",
            str(size),
            "--timeout",
            "60",
        ]
        result = await trio.run_process(command, capture_stdout=True, capture_stderr=True)
        nursery.cancel_scope.cancel()
    assert not app.errors, app.errors
    status, digest, length, seconds = result.stdout.decode().split()
    assert (status, int(length)) == ("200", size)
    return digest, float(seconds)


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("role", ROLES)
async def test_20mb_cross_process(certs: Certs, role: str, method: str) -> None:
    with trio.fail_after(90):
        if role == "gw-client":
            digest, seconds = await _gw_client_process_transfer(certs, method, BIG)
        else:
            digest, seconds = await _gw_server_process_transfer(certs, method, BIG)
    assert digest == sha256_hex(pattern(BIG))
    _report(
        f"{method} {_direction(role, upload=method == 'POST')} (separate process)", BIG, seconds
    )
