"""The trio API over loopback UDP: handshakes, streams, typed errors, cleanup."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from quic_pair import client_config, server_config, test_ca

import ghostwire.quic as quic
from ghostwire.certs import CertificateAuthority
from ghostwire.quic.tls import AlertDescription, TrustStore

Handler = Callable[[quic.Connection], Awaitable[None]]


async def _echo(conn: quic.Connection) -> None:
    async with trio.open_nursery() as nursery:
        async for stream in conn:
            nursery.start_soon(_echo_stream, stream)


async def _echo_stream(stream: Any) -> None:
    async with stream:
        while data := await stream.receive_some():
            await stream.send_all(data)


@asynccontextmanager
async def running_server(
    handler: Handler = _echo, config: quic.ServerConfig | None = None
) -> AsyncIterator[quic.QuicServer]:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(quic.serve, handler, 0, config or server_config(), host="127.0.0.1")
        )
        yield server
        nursery.cancel_scope.cancel()


async def test_handshake_reports_negotiated_parameters() -> None:
    async with running_server() as server:
        async with quic.connect("127.0.0.1", server.port, client_config()) as conn:
            assert conn.alpn == "test"
            assert conn.version == quic.QUIC_V1
            assert conn.cipher_suite == "TLS_AES_128_GCM_SHA256"
            assert conn.peer_certificates[0].issuer == test_ca().certificate.subject


async def test_echo_and_half_close() -> None:
    async with running_server() as server:
        async with quic.connect("127.0.0.1", server.port, client_config()) as conn:
            stream = await conn.open_stream()
            payload = os.urandom(300_000)
            async with trio.open_nursery() as nursery:

                async def send() -> None:
                    await stream.send_all(payload)
                    await stream.send_eof()

                nursery.start_soon(send)
                received = bytearray()
                while chunk := await stream.receive_some():
                    received += chunk
            assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
            stats = conn.statistics()
            assert stats.bytes_sent > len(payload)
            assert stats.smoothed_rtt > 0


async def test_many_parallel_streams() -> None:
    async with running_server() as server:
        async with quic.connect("127.0.0.1", server.port, client_config()) as conn:

            async def one(i: int) -> None:
                stream = await conn.open_stream()
                message = f"stream {i} ".encode() * 50
                await stream.send_all(message)
                await stream.send_eof()
                got = bytearray()
                while chunk := await stream.receive_some():
                    got += chunk
                assert got == message

            with trio.fail_after(20):
                async with trio.open_nursery() as nursery:
                    for i in range(250):  # more than max_streams_bidi (100): MAX_STREAMS must flow
                        nursery.start_soon(one, i)


async def test_check_half_closeable_stream() -> None:
    async with AsyncExitStack() as stack:
        accepted: trio.MemorySendChannel[Any]
        accepted, incoming = trio.open_memory_channel[Any](100)

        async def handler(conn: quic.Connection) -> None:
            async for stream in conn:
                await accepted.send(stream)
            await trio.sleep_forever()

        server = await stack.enter_async_context(running_server(handler))
        conn = await stack.enter_async_context(
            quic.connect("127.0.0.1", server.port, client_config())
        )

        async def stream_maker() -> tuple[Any, Any]:
            client_side = await conn.open_stream()
            await client_side.send_all(b"!")  # a stream is visible to the peer once it carries data
            server_side = await incoming.receive()
            assert await server_side.receive_some(1) == b"!"
            return client_side, server_side

        await trio.testing.check_half_closeable_stream(stream_maker, None)


async def test_wrong_hostname_is_a_certificate_error() -> None:
    async with running_server() as server:
        config = client_config(server_name="not-the-server.example")
        with pytest.raises(quic.CertificateError) as info:
            async with quic.connect("127.0.0.1", server.port, config):
                pass  # pragma: no cover
        assert info.value.alert == AlertDescription.BAD_CERTIFICATE
        assert "not not-the-server.example" in str(info.value)


async def test_untrusted_ca_is_a_certificate_error() -> None:
    stranger = CertificateAuthority.create("not trusted by the client")
    config = client_config(trust_store=TrustStore([stranger.certificate]))
    async with running_server() as server:
        with pytest.raises(quic.CertificateError) as info:
            async with quic.connect("127.0.0.1", server.port, config):
                pass  # pragma: no cover
        assert info.value.alert == AlertDescription.UNKNOWN_CA


async def test_alpn_mismatch_names_the_alert() -> None:
    async with running_server(config=server_config(alpn=["h3"])) as server:
        with pytest.raises(quic.HandshakeError) as info:
            async with quic.connect("127.0.0.1", server.port, client_config(alpn=["echo"])):
                pass  # pragma: no cover
    error = info.value
    assert not isinstance(error, quic.CertificateError)
    assert error.alert_name == "no_application_protocol"
    assert error.error_code == 0x178
    assert error.by_peer
    assert "no_application_protocol" in str(error)


async def test_silent_peer_times_out(autojump_clock: trio.testing.MockClock) -> None:
    # A UDP socket that never answers: the handshake must fail, not hang.
    silent = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await silent.bind(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    try:
        start = trio.current_time()
        with pytest.raises(quic.HandshakeTimeout):
            async with quic.connect("127.0.0.1", port, client_config(handshake_timeout=5.0)):
                pass  # pragma: no cover
        assert 5.0 <= trio.current_time() - start < 6.0
    finally:
        silent.close()


async def test_closing_the_connection_reaches_the_peer() -> None:
    closed: list[quic.ConnectionClosed] = []
    done = trio.Event()

    async def handler(conn: quic.Connection) -> None:
        try:
            await conn.accept_stream()
        except quic.ConnectionClosed as exc:
            closed.append(exc)
            done.set()

    async with running_server(handler) as server:
        async with quic.connect("127.0.0.1", server.port, client_config()) as conn:
            await conn.aclose(error_code=42, reason="bye")
        with trio.fail_after(5):
            await done.wait()
    assert closed[0].error_code == 42
    assert closed[0].by_peer
    assert "bye" in str(closed[0])


async def test_reset_and_stop_sending_are_seen_by_the_peer() -> None:
    results: dict[str, int] = {}
    finished = trio.Event()

    async def handler(conn: quic.Connection) -> None:
        stream = await conn.accept_stream()
        with pytest.raises(quic.StreamReset) as info:
            while await stream.receive_some():
                pass
        results["reset"] = info.value.error_code
        stream.stop_sending(7)
        finished.set()
        await trio.sleep_forever()

    async with running_server(handler) as server:
        async with quic.connect("127.0.0.1", server.port, client_config()) as conn:
            stream = await conn.open_stream()
            await stream.send_all(b"data before the reset")
            await trio.testing.wait_all_tasks_blocked()
            with trio.fail_after(5):
                await stream.send_all(b"more")
                stream.reset(99)
                await finished.wait()
                second = await conn.open_stream()
                await second.send_all(b"x")
            assert results["reset"] == 99


async def test_leaving_serve_leaves_no_tasks() -> None:
    root = trio.lowlevel.current_root_task()
    assert root is not None
    before = len(root.child_nurseries)
    async with running_server() as server:
        async with quic.connect("127.0.0.1", server.port, client_config()) as conn:
            stream = await conn.open_stream()
            await stream.send_all(b"ping")
    task = trio.lowlevel.current_task()
    assert all(not n.child_tasks for n in task.child_nurseries)
    assert len(root.child_nurseries) == before


async def test_listener_form() -> None:
    async with quic.open_listener("127.0.0.1", 0, server_config()) as listener:
        assert isinstance(listener, trio.abc.Listener)
        async with trio.open_nursery() as nursery:

            async def client() -> None:
                async with quic.connect("127.0.0.1", listener.port, client_config()) as conn:
                    stream = await conn.open_stream()
                    await stream.send_all(b"via listener")
                    await stream.send_eof()
                    assert await stream.receive_some() == b"LISTENER"

            nursery.start_soon(client)
            conn = await listener.accept()
            stream = await conn.accept_stream()
            assert isinstance(stream, quic.QuicStream)  # bidirectional
            assert await stream.receive_some() == b"via listener"
            await stream.send_all(b"LISTENER")
            await stream.send_eof()


async def test_keylog_and_qlog_files(tmp_path: Path) -> None:
    keylog = tmp_path / "keys.log"
    qlog_dir = tmp_path / "qlog"
    async with running_server() as server:
        config = client_config(keylog_file=keylog, qlog_dir=qlog_dir)
        async with quic.connect("127.0.0.1", server.port, config) as conn:
            stream = await conn.open_stream()
            await stream.send_all(b"logged")
            await stream.send_eof()
            assert await stream.receive_some() == b"logged"
    labels = {line.split()[0] for line in keylog.read_text().splitlines()}
    # NSS key log format, as Wireshark reads it for QUIC.
    assert {
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_TRAFFIC_SECRET_0",
        "SERVER_TRAFFIC_SECRET_0",
    } <= labels
    [qlog_file] = list(qlog_dir.iterdir())
    records = [json.loads(r) for r in qlog_file.read_text().split("\x1e") if r.strip()]
    assert records[0]["qlog_format"] == "JSON-SEQ"
    names = {r.get("name") for r in records[1:]}
    assert {"transport:packet_sent", "transport:packet_received"} <= names


async def test_garbage_datagrams_do_not_disturb_the_server() -> None:
    async with running_server() as server:
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        with sock:
            # A long header with an unknown version gets Version Negotiation (RFC 9000 §6.1).
            probe = b"\xc0\x1a\x2a\x3a\x4a\x08" + b"d" * 8 + b"\x08" + b"s" * 8 + bytes(1200)
            await sock.sendto(probe, ("127.0.0.1", server.port))
            with trio.fail_after(5):
                reply, _ = await sock.recvfrom(2048)
            assert reply[1:5] == b"\x00\x00\x00\x00" and reply[6:14] == b"s" * 8
            for junk in (b"", b"\x00" * 1300, os.urandom(1300), b"\xc0\x00\x00\x00\x01" + b"\xff"):
                await sock.sendto(junk, ("127.0.0.1", server.port))
        async with quic.connect("127.0.0.1", server.port, client_config()) as conn:
            stream = await conn.open_stream()
            await stream.send_all(b"fine")
            await stream.send_eof()
            assert await stream.receive_some() == b"fine"


async def test_a_vanished_peer_ends_in_idle_timeout(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server that vanishes without a word (a cancelled one sends CONNECTION_CLOSE).
    monkeypatch.setattr(quic.Connection, "_close_abruptly", lambda self: None)
    server_scope = trio.CancelScope()

    async def run_server(*, task_status: trio.TaskStatus[quic.QuicServer]) -> None:
        with server_scope:
            await quic.serve(_echo, 0, server_config(), host="127.0.0.1", task_status=task_status)

    async with trio.open_nursery() as serving:
        server = await serving.start(run_server)
        config = client_config(idle_timeout=20.0)
        async with quic.connect("127.0.0.1", server.port, config) as conn:
            server_scope.cancel()
            start = trio.current_time()
            with pytest.raises(quic.IdleTimeout):
                await conn.accept_stream()
            assert 20.0 <= trio.current_time() - start < 25.0
            assert conn.statistics().bytes_received > 0


async def test_a_silent_address_gives_way_to_the_next(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "localhost" may resolve to ::1 and 127.0.0.1 with the server on only one.
    import ghostwire.quic.net.api as api

    silent = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await silent.bind(("127.0.0.1", 0))
    async with running_server() as server:
        addresses = [("127.0.0.1", silent.getsockname()[1]), ("127.0.0.1", server.port)]

        async def two_addresses(*args: Any, **kwargs: Any) -> list[Any]:
            return [(trio.socket.AF_INET, trio.socket.SOCK_DGRAM, 17, "", a) for a in addresses]

        # What each attempt was given and how it ended (events, not durations:
        # the clock is trio's autojumping MockClock, but a loaded machine may
        # still let it jump to a retransmission timer during a handshake).
        attempts: list[tuple[Any, float]] = []
        outcomes: list[str] = []
        connect_to = api._connect_to

        @asynccontextmanager
        async def recording(*args: Any) -> AsyncIterator[Any]:
            attempts.append((args[2], args[5]))  # the address, the handshake timeout
            try:
                async with connect_to(*args) as conn:
                    outcomes.append("connected")
                    yield conn
            except quic.HandshakeTimeout:
                outcomes.append("gave up")
                raise

        monkeypatch.setattr(trio.socket, "getaddrinfo", two_addresses)
        monkeypatch.setattr(api, "_connect_to", recording)
        config = client_config(handshake_timeout=60.0)
        start = trio.current_time()
        async with quic.connect("localhost", 4433, config) as conn:
            assert conn.peer_address == addresses[1]
            elapsed = trio.current_time() - start
        # The silent address had NEXT_ADDRESS_AFTER, not the full handshake
        # timeout; the last one the full timeout.
        assert attempts == [
            (addresses[0], api.NEXT_ADDRESS_AFTER),
            (addresses[1], config.handshake_timeout),
        ]
        assert outcomes == ["gave up", "connected"]
        assert api.NEXT_ADDRESS_AFTER <= elapsed < config.handshake_timeout
    silent.close()


async def test_alpn_may_be_left_to_a_protocol_layer_but_plain_quic_needs_one() -> None:
    # Configs without ALPN are valid (ghostwire.rpc and ghostwire.http3 fill in
    # their own); plain QUIC refuses them at once, before any packet is sent.
    client = client_config(alpn=[])
    server = server_config(alpn=[])
    with pytest.raises(ValueError, match="alpn must name at least one protocol"):
        async with quic.connect("127.0.0.1", 9, client):
            pass  # pragma: no cover
    with pytest.raises(ValueError, match="alpn must name at least one protocol"):
        await quic.serve(_never_called, 0, server, host="127.0.0.1")


async def _never_called(conn: quic.Connection) -> None:  # pragma: no cover
    raise AssertionError("no connection expected")


async def test_serve_on_socket_closes_the_socket_when_it_cannot_start(tmp_path: Path) -> None:
    """A key log it cannot create fails serve_on_socket, and the socket it was
    given (which it owns) is closed, not leaked."""
    import socket

    from ghostwire.quic.net.api import serve_on_socket

    async def handler(conn: quic.Connection) -> None:
        raise AssertionError("no connection expected")  # pragma: no cover

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    config = server_config(keylog_file=blocker / "keys.log")  # below a file: cannot open
    with trio.fail_after(10), pytest.raises(NotADirectoryError):
        await serve_on_socket(handler, sock, config)
    assert sock.fileno() == -1


async def test_connect_closes_its_socket_when_the_key_log_cannot_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ghostwire.quic.net.api as api

    opened: list[Any] = []
    real_open = api.open_udp_socket  # type: ignore[attr-defined]

    def open_udp_socket(*args: Any) -> Any:
        opened.append(real_open(*args))
        return opened[-1]

    monkeypatch.setattr(api, "open_udp_socket", open_udp_socket)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    config = client_config(keylog_file=blocker / "keys.log")
    with trio.fail_after(10), pytest.raises(NotADirectoryError):
        async with quic.connect("127.0.0.1", 9, config):
            raise AssertionError("no handshake expected")  # pragma: no cover
    assert len(opened) == 1 and opened[0].fileno() == -1
