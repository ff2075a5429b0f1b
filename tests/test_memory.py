"""What an idle connection keeps: handshake state released, no stray attributes.

The figures (KiB per idle connection) live in bench/ (``python -m bench.conns``);
these tests pin the behaviour behind them.
"""

from __future__ import annotations

import gc
import weakref

import pytest
import trio
import trio.testing
from quic_pair import CLIENT_ADDR, client_config, handshake, make_pair
from test_quic_api import running_server

from ghostwire import quic
from ghostwire.quic.crypto_stream import RELEASED_CRYPTO_STREAM, CryptoStream
from ghostwire.quic.events import ConnectionTerminated, StreamOpened, StreamReadable
from ghostwire.quic.loss_detection import DISCARDED_SPACE
from ghostwire.quic.packet_space import DISCARDED_PACKET_SPACES
from ghostwire.quic.rangeset import RELEASED_RANGES
from ghostwire.quic.recovery import Space
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
    assert [epoch for epoch, b in enumerate(tls._buffers) if b is not None] == [Epoch.ONE_RTT]
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


# CPython shares one table of attribute names among the instances of a class
# (PEP 412) while each instance sets the same names in the same order, and
# for at most 30 names; past that, or in another order, the instance gets a
# dict of its own: 1.3 KiB more per idle connection (bench.conns: 29.1 ->
# 30.5 KiB at 10,000, when a server connection's handler was first set in
# its task rather than in __init__).
MAX_SHARED_ATTRIBUTES = 30


class _Stand:
    """A hashable stand-in with the given attributes."""

    def __init__(self, **attributes: object) -> None:
        vars(self).update(attributes)


async def test_an_idle_connection_has_only_the_attributes_its_init_made() -> None:
    """Every attribute an idle connection holds, on either side, was made by
    ``Connection.__init__``, in its order; the rest are class defaults,
    written only when they change."""
    # What __init__ makes, on stand-ins for the core and the endpoint.
    core = _Stand(config=_Stand(stream_send_buffer=0), streams=_Stand())
    made = list(vars(quic.Connection(core, _Stand(connections={}))))  # type: ignore[arg-type]
    served: list[quic.Connection] = []
    parked = trio.Event()

    async def handler(conn: quic.Connection) -> None:
        served.append(conn)
        parked.set()
        await trio.sleep_forever()

    async with running_server(handler) as server:
        async with quic.connect("127.0.0.1", server.port, client_config()) as client_conn:
            await parked.wait()
            await client_conn.ping()
            await trio.testing.wait_all_tasks_blocked()
            (server_conn,) = served
            for conn in (server_conn, client_conn):
                assert list(vars(conn)) == made
    assert len(made) <= MAX_SHARED_ATTRIBUTES, made


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


# The modules whose per-connection objects must stay without an instance dict
# (a dict or its values array per object, and a risk of one materialising).
_SLOTTED_MODULES = {
    "ghostwire.quic.cid",
    "ghostwire.quic.congestion.base",
    "ghostwire.quic.congestion.cubic",
    "ghostwire.quic.congestion.newreno",
    "ghostwire.quic.congestion.pacer",
    "ghostwire.quic.crypto_stream",
    "ghostwire.quic.flow",
    "ghostwire.quic.packet_space",
    "ghostwire.quic.path",
    "ghostwire.quic.pmtud",
    "ghostwire.quic.rangeset",
    "ghostwire.quic.stream_credit",
    "ghostwire.quic.stream_ranges",
}
_CONTAINERS = (dict, list, tuple, set, frozenset)


def _reachable_core_objects(core: quic.QuicConnection) -> list[object]:
    """Objects reachable from ``core`` through its own parts and containers
    (not through configs, functions or classes)."""
    seen = {id(core)}
    found: list[object] = []
    todo: list[object] = [core]
    while todo:
        for ref in gc.get_referents(todo.pop()):
            if id(ref) in seen or isinstance(ref, type):
                continue
            module = type(ref).__module__ or ""
            if not (isinstance(ref, _CONTAINERS) or module.startswith("ghostwire.quic.")):
                continue
            if module == "ghostwire.quic.config":
                continue
            seen.add(id(ref))
            found.append(ref)
            todo.append(ref)
    return found


def test_per_connection_objects_have_no_instance_dict() -> None:
    pair = handshake(make_pair())
    pair.advance(1.0)
    assert pair.server is not None
    for core in (pair.client, pair.server):
        objects = _reachable_core_objects(core)
        owned = [o for o in objects if type(o).__module__ in _SLOTTED_MODULES]
        kinds = {type(o).__name__ for o in owned}
        # The walk does reach them (else this test would pass vacuously).
        assert {"LocalConnectionIds", "PeerConnectionIds", "PathManager", "Cubic"} <= kinds
        assert {"PacketNumberSpace", "CryptoStream", "PathMtuDiscovery", "SendCredit"} <= kinds
        with_dict = sorted({type(o).__qualname__ for o in owned if hasattr(o, "__dict__")})
        assert with_dict == []


def test_an_idle_connection_keeps_no_empty_containers() -> None:
    pair = handshake(make_pair())
    pair.advance(1.0)
    assert pair.server is not None
    for core in (pair.client, pair.server):
        # Discarded spaces share one empty range set (RFC 9001 §4.9).
        assert core.spaces[Space.INITIAL].received is RELEASED_RANGES
        assert core.spaces[Space.HANDSHAKE].received is RELEASED_RANGES
        assert core.spaces[Space.APPLICATION].received is not RELEASED_RANGES
        # ... as part of one shared, read-only discarded space per space.
        for space in (Space.INITIAL, Space.HANDSHAKE):
            assert core.spaces[space] is DISCARDED_PACKET_SPACES[space]
            assert core.spaces[space].space is space and core.spaces[space].discarded
        # The 1-RTT CRYPTO stream carried the session tickets; once they are
        # acknowledged and delivered it keeps offsets only.
        one_rtt = core.crypto[Epoch.ONE_RTT]
        assert one_rtt._send is None and one_rtt._recv_gaps is None
        assert not one_rtt.has_unacked() and not one_rtt.has_pending()
        # Nothing pending: an empty tuple (shared), no list or set of one's own.
        assert core.local_cids._to_announce == ()
        assert core.peer_cids._pending_retire == ()
        assert core.path._challenges == ()
        assert core.recovery.congestion._undo_lost is None
        assert core.streams.send_credit._blocked is None
        # A few connection IDs each way: short lists, not dicts.
        assert type(core.local_cids.active) is list
        assert type(core.peer_cids.available) is list
        # Events: a list (an empty deque is 760 B), emptied once read.
        assert type(core._events) is list and core._events == []
        # Discarded Initial and Handshake spaces share one empty recovery state.
        spaces = core.recovery._spaces
        assert spaces[Space.INITIAL] is DISCARDED_SPACE
        assert spaces[Space.HANDSHAKE] is DISCARDED_SPACE
        assert spaces[Space.APPLICATION] is not DISCARDED_SPACE
        # The rarer stream event sets are made on their first event only.
        streams = core.streams
        assert (streams._ev_reset, streams._ev_stop, streams._ev_writable) == (None, None, None)


def _waiting_ranges(stream: CryptoStream) -> list[tuple[int, int]] | None:
    gaps = stream._recv_gaps  # read afresh (no narrowing across calls)
    return None if gaps is None else list(gaps.ranges)


def test_released_containers_come_back_when_needed() -> None:
    # A CRYPTO stream with a gap, data to send, and its release once acknowledged.
    stream = CryptoStream()
    assert stream.receive(5, b"world") == b""
    assert _waiting_ranges(stream) == [(5, 10)]
    assert stream.receive(0, b"hello") == b"helloworld"
    assert _waiting_ranges(stream) is None
    stream.write(b"ticket")
    assert stream.next_frame(4) == (0, b"tick")
    assert stream.next_frame(100) == (4, b"et")
    stream.on_delivered(False, 4, 2)  # lost: sent again
    assert stream.next_frame(100) == (4, b"et")
    stream.on_delivered(True, 0, 4)
    assert stream.has_unacked()
    stream.on_delivered(True, 4, 2)
    assert stream._send is None and not stream.has_unacked()
    stream.on_delivered(True, 4, 2)  # a late repeat changes nothing
    stream.write(b"more")
    assert stream.next_frame(100) == (6, b"more")
    # The shared empty range set takes no packet numbers.
    RELEASED_RANGES.add(1, 2)
    assert not RELEASED_RANGES and 1 not in RELEASED_RANGES


def test_the_discarded_packet_spaces_refuse_writes() -> None:
    shared = DISCARDED_PACKET_SPACES[Space.HANDSHAKE]
    with pytest.raises(AttributeError):
        shared.next_pn = 5
    with pytest.raises(AttributeError):
        shared.on_ack_sent()
    assert shared.send_keys is None and shared.recv_keys is None
    assert not shared.ack_needed and shared.ack_timer() is None
    assert shared.is_duplicate(0) is False and not shared.received


def test_the_discarded_recovery_state_refuses_writes() -> None:
    with pytest.raises(AttributeError):
        DISCARDED_SPACE.largest_sent = 5
    with pytest.raises(TypeError):
        DISCARDED_SPACE.sent[0] = None  # type: ignore[assignment]
    assert not DISCARDED_SPACE.sent and not DISCARDED_SPACE.lost


def test_events_come_in_order_and_the_stream_event_sets_return() -> None:
    pair = handshake(make_pair())
    server = pair.server
    assert server is not None
    while server.next_event() is not None:
        pass
    stream_id = pair.client.open_stream()
    pair.client.send_stream_data(stream_id, b"ping", end_stream=True)
    pair.client.reset_stream(pair.client.open_stream(), 7)
    for datagram, _ in pair.client.datagrams_to_send(pair.now):
        server.receive_datagram(datagram, CLIENT_ADDR, pair.now)
    kinds = []
    while (event := server.next_event()) is not None:
        kinds.append(type(event).__name__)
        if len(kinds) == 1:
            # Read from the head: the rest stay queued in the same list.
            assert server._event_head == 1
    assert kinds[:2] == [StreamOpened.__name__, StreamOpened.__name__]
    assert StreamReadable.__name__ in kinds and "StreamResetReceived" in kinds
    assert server._events == [] and server._event_head == 0
    assert server.streams._ev_reset is None


def test_a_confirmed_server_keeps_its_transport_parameters_encoded() -> None:
    pair = make_pair()
    # The ClientHello only: the server's parameters are still the object.
    for datagram, _ in pair.client.datagrams_to_send(pair.now):
        pair._server_for(datagram).receive_datagram(datagram, CLIENT_ADDR, pair.now)
    server = pair.server
    assert server is not None
    params = server.local_params
    assert server.local_params is params  # the object itself while handshaking
    encoded = server.local_params_bytes
    sent = server.tls.transport_parameters  # what EncryptedExtensions carries
    assert sent == encoded
    pair.exchange()
    assert server.handshake_confirmed
    assert server._local_params is sent  # only the encoding is kept, not made again
    assert server.local_params == params  # read back as they were
    assert server.local_params_bytes == encoded
    # The client keeps the object (it reads nothing more either, but tests do).
    assert pair.client.local_params is pair.client.local_params


@pytest.mark.parametrize("ending", ["close", "idle timeout", "dropped while closing"])
def test_a_closed_connection_is_freed_by_reference_counting(ending: str) -> None:
    pair = handshake(make_pair())
    if ending == "idle timeout":
        pair.advance(120.0)
    else:
        pair.client.close(now=pair.now)
        pair.exchange()  # the server gets the CONNECTION_CLOSE: it drains
        if ending == "close":
            pair.advance(120.0)  # past the closing and draining periods
    assert pair.server is not None
    cores = [pair.client, pair.server]
    assert all(core.is_closed for core in cores)
    assert all(core.is_terminated for core in cores) == (ending != "dropped while closing")
    gc.collect()
    gc.disable()
    try:
        del pair, cores
        # Nothing left for the cyclic collector: no part points back at its connection.
        assert gc.collect() == 0
    finally:
        gc.enable()
