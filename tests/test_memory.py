"""What an idle connection keeps: handshake state released, no stray attributes.

The figures (KiB per idle connection) live in bench/ (``python -m bench.conns``);
these tests pin the behaviour behind them.
"""

from __future__ import annotations

import gc
import weakref

import pytest
import trio
from quic_pair import CLIENT_ADDR, client_config, handshake, make_pair
from test_quic_api import running_server

from ghostwire import quic
from ghostwire.quic.crypto_stream import RELEASED_CRYPTO_STREAM
from ghostwire.quic.events import ConnectionTerminated
from ghostwire.quic.suites import Epoch
from ghostwire.quic.tls.alerts import AlertDescription
from ghostwire.quic.tls.messages import HandshakeType


def test_server_releases_tls_state_once_confirmed() -> None:
    pair = handshake(make_pair())
    core = pair.server
    assert core is not None and core.handshake_confirmed
    tls = core.tls
    assert tls.handshake_state_discarded
    assert tls.settings is None
    assert list(tls._buffers) == [Epoch.ONE_RTT]
    # Only the results are left of the state machine (see the next test).
    assert type(tls._engine).__name__ == "_Concluded"
    # The results stay readable.
    assert core.alpn_protocol == "test"
    assert core.cipher_suite is not None
    assert tls.peer_certificates == []
    assert tls.server_name == "localhost"


def test_the_released_state_machine_is_freed() -> None:
    pair = make_pair()
    # Deliver the ClientHello only, and catch the server's engine mid-handshake.
    for datagram, _ in pair.client.datagrams_to_send(pair.now):
        pair._server_for(datagram).receive_datagram(datagram, CLIENT_ADDR, pair.now)
    assert pair.server is not None
    engine = weakref.ref(pair.server.tls._engine)
    assert type(engine()).__name__ == "ServerHandshake"
    pair.exchange()
    assert pair.server.handshake_confirmed
    gc.collect()
    assert engine() is None


def test_client_keeps_tls_state_for_session_tickets() -> None:
    pair = handshake(make_pair())
    assert pair.client.handshake_confirmed
    assert not pair.client.tls.handshake_state_discarded
    assert pair.client.tls.settings is not None


def test_a_handshake_message_after_the_release_is_still_unexpected() -> None:
    pair = handshake(make_pair())
    # RFC 9001 §6: a TLS KeyUpdate is a connection error of type unexpected_message.
    pair.client.crypto[Epoch.ONE_RTT].write(bytes([HandshakeType.KEY_UPDATE, 0, 0, 1, 0]))
    pair.exchange()
    closes = pair.events_of("server", ConnectionTerminated)
    assert closes and closes[0].error_code == 0x100 + AlertDescription.UNEXPECTED_MESSAGE


def test_connection_attributes_all_have_slots() -> None:
    # More than 30 attributes in an instance dict cost ~1.6 KB per connection on
    # CPython 3.11; QuicConnection lists them in __slots__. An attribute added
    # without its slot lands in the (otherwise empty) __dict__ and fails here.
    pair = handshake(make_pair())
    pair.advance(1.0)
    assert pair.server is not None
    for core in (pair.client, pair.server):
        assert core.__dict__ == {}


def _task_count(task: trio.lowlevel.Task) -> int:
    return 1 + sum(_task_count(t) for n in task.child_nurseries for t in n.child_tasks)


async def test_an_idle_server_connection_runs_one_task_and_its_handler() -> None:
    handler_tasks: list[trio.lowlevel.Task] = []
    parked = trio.Event()

    async def handler(conn: quic.Connection) -> None:
        handler_tasks.append(trio.lowlevel.current_task())
        parked.set()
        await trio.sleep_forever()

    async with running_server(handler) as server:
        async with quic.connect("127.0.0.1", server.port, client_config()):
            await parked.wait()
            handler_task = handler_tasks[0]
            assert handler_task.parent_nursery is not None
            connection_task = handler_task.parent_nursery.parent_task
            # The connection's task runs its timers itself; its nursery holds the handler.
            assert _task_count(connection_task) == 2


def test_discarded_levels_share_one_released_crypto_stream() -> None:
    pair = handshake(make_pair())
    assert pair.server is not None
    for core in (pair.client, pair.server):
        assert core.crypto[Epoch.INITIAL] is RELEASED_CRYPTO_STREAM
        assert core.crypto[Epoch.HANDSHAKE] is RELEASED_CRYPTO_STREAM
        assert core.crypto[Epoch.ONE_RTT] is not RELEASED_CRYPTO_STREAM
    # It holds nothing and takes nothing: a late frame at that level is a repeat.
    assert RELEASED_CRYPTO_STREAM.receive(0, b"late") == b""
    assert not RELEASED_CRYPTO_STREAM.has_pending()
    assert not RELEASED_CRYPTO_STREAM.has_unacked()
    with pytest.raises(RuntimeError):
        RELEASED_CRYPTO_STREAM.write(b"x")
    # Both sides go on: a stream round trip after the release.
    stream_id = pair.client.open_stream()
    pair.client.send_stream_data(stream_id, b"ping", end_stream=True)
    pair.exchange()
    assert pair.server.handshake_confirmed and not pair.server.is_closed
