"""QUIC v2 with compatible version negotiation (RFC 9368, RFC 9369).

A client whose first flight is v1 and which offers v2 is upgraded by a server
that prefers v2: the tests check the wire (the first flight really was v1,
everything after the server's first answer is v2), both sides' view, the
version_information checks that stop a downgrade, and interop with aioquic in
both roles. The RFC 9369 Appendix A packet protection vectors are in
tests/test_crypto_vectors.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
import trio
from quic_pair import SERVER_ADDR, client_config, make_pair, server_config

import ghostwire.quic as quic
from ghostwire.quic import QUIC_V1, QUIC_V2
from ghostwire.quic.connection import QuicConnection
from ghostwire.quic.errors import QuicProtocolError, TransportErrorCode
from ghostwire.quic.events import ConnectionTerminated
from ghostwire.quic.tls.client import ClientHandshake
from ghostwire.quic.transport_params import (
    TransportParameters,
    VersionInformation,
    encode_transport_parameters,
)
from ghostwire.quic.versions import (
    client_check_server_version,
    compatible,
    server_choose_version,
)

pytest.importorskip("aioquic")
from aioquic_peer import PeerLoop
from test_interop_aioquic import (
    HOST,
    Certs,
    UdpRelay,
    _describe,
    _echo_check,
    _gw_echo,
    aq_client,
    aq_client_config,
    aq_server,
    aq_server_config,
    certs,
    gw_client_config,
    gw_server,
    gw_server_config,
)

__all__ = ["certs"]  # a fixture, used by name (peer is in conftest.py)


def _recorder(into: list[bytes]) -> Callable[[bytes], bool]:
    """A drop filter that records every datagram and drops none."""

    def record(datagram: bytes) -> bool:
        into.append(datagram)
        return False

    return record


def _long_header_versions(datagrams: list[bytes]) -> list[int]:
    return [int.from_bytes(d[1:5], "big") for d in datagrams if d[0] & 0x80]


def test_v1_client_upgraded_by_a_server_preferring_v2() -> None:
    pair = make_pair(
        client_config(versions=[QUIC_V1, QUIC_V2]),
        server_config(versions=[QUIC_V2, QUIC_V1]),
    )
    to_server: list[bytes] = []
    to_client: list[bytes] = []
    pair.drop_to_server = _recorder(to_server)
    pair.drop_to_client = _recorder(to_client)
    pair.exchange()
    client, server = pair.client, pair.server
    assert server is not None
    assert client.handshake_complete and server.handshake_complete
    assert client.version == server.version == QUIC_V2
    client_versions = _long_header_versions(to_server)
    assert client_versions[0] == QUIC_V1  # the first flight was v1 ...
    assert set(_long_header_versions(to_client)) == {QUIC_V2}  # ... answered in v2
    first_v2 = client_versions.index(QUIC_V2)
    assert set(client_versions[first_v2:]) == {QUIC_V2}  # and the client followed
    # Each side names the negotiated version in its version_information.
    assert server.local_params.version_information == VersionInformation(
        QUIC_V2, (QUIC_V2, QUIC_V1)
    )
    assert client.peer_params is not None and client.peer_params.version_information
    assert client.peer_params.version_information.chosen_version == QUIC_V2
    # Data flows in v2.
    stream_id = client.open_stream()
    client.send_stream_data(stream_id, b"v2 data", end_stream=True)
    pair.exchange()
    assert server.read_stream(stream_id) == b"v2 data"


@pytest.mark.parametrize(
    ("client_versions", "server_versions", "expected"),
    [
        ([QUIC_V1], [QUIC_V2, QUIC_V1], QUIC_V1),  # the client offers no v2
        ([QUIC_V1, QUIC_V2], [QUIC_V1, QUIC_V2], QUIC_V1),  # the server prefers v1
        ([QUIC_V2, QUIC_V1], [QUIC_V1, QUIC_V2], QUIC_V1),  # converted to the server's choice
        ([QUIC_V2], [QUIC_V1, QUIC_V2], QUIC_V2),  # the only version the client speaks
        ([QUIC_V2], [QUIC_V2, QUIC_V1], QUIC_V2),
    ],
)
def test_negotiated_version(
    client_versions: list[int], server_versions: list[int], expected: int
) -> None:
    pair = make_pair(
        client_config(versions=client_versions), server_config(versions=server_versions)
    )
    pair.exchange()
    assert pair.server is not None and pair.client.handshake_complete
    assert pair.client.version == pair.server.version == expected


def test_original_version_sets_the_first_flight() -> None:
    pair = make_pair(client_config(versions=[QUIC_V2, QUIC_V1], original_version=QUIC_V1))
    [(first, _)] = pair.client.datagrams_to_send(0.0)
    assert _long_header_versions([first])[0] == QUIC_V1
    with pytest.raises(ValueError, match="original_version"):
        client_config(versions=[QUIC_V1], original_version=QUIC_V2)


def test_server_refuses_a_client_whose_version_information_lies() -> None:
    """A first flight in v1 whose (authenticated) version_information says v2:
    someone rewrote the packets, or the client is broken (RFC 9368 §4)."""
    pair = make_pair(server=server_config(versions=[QUIC_V2, QUIC_V1]))
    liar = QuicConnection(
        client_config(versions=[QUIC_V1, QUIC_V2]),
        peer_address=SERVER_ADDR,
        now=0.0,
        server_name="localhost",
    )
    forged = liar.local_params
    forged.version_information = VersionInformation(QUIC_V2, (QUIC_V2, QUIC_V1))
    engine = liar.tls._engine
    assert isinstance(engine, ClientHandshake)
    engine.transport_parameters = encode_transport_parameters(forged)
    liar.connect(0.0)
    pair.client = liar
    pair.exchange()
    closes = pair.events_of("server", ConnectionTerminated)
    assert closes and closes[0].error_code == TransportErrorCode.VERSION_NEGOTIATION_ERROR
    assert not liar.handshake_complete


def test_client_checks_the_servers_chosen_version() -> None:
    honest = TransportParameters(version_information=VersionInformation(QUIC_V2, (QUIC_V2,)))
    client_check_server_version(QUIC_V2, honest)
    with pytest.raises(QuicProtocolError) as info:
        client_check_server_version(QUIC_V1, honest)  # a downgrade to v1
    assert info.value.error_code == TransportErrorCode.VERSION_NEGOTIATION_ERROR
    with pytest.raises(QuicProtocolError):
        client_check_server_version(QUIC_V2, TransportParameters())  # v2 needs it
    client_check_server_version(QUIC_V1, TransportParameters())  # v1 servers may omit it


def test_server_choice_follows_its_preference_among_compatible_versions() -> None:
    offer = TransportParameters(version_information=VersionInformation(QUIC_V1, (QUIC_V1, QUIC_V2)))
    assert server_choose_version(QUIC_V1, [QUIC_V2, QUIC_V1], offer) == QUIC_V2
    assert server_choose_version(QUIC_V1, [QUIC_V1, QUIC_V2], offer) == QUIC_V1
    assert server_choose_version(QUIC_V1, [QUIC_V2], TransportParameters()) == QUIC_V1
    assert compatible(QUIC_V1, QUIC_V2) and compatible(QUIC_V2, QUIC_V1)
    assert not compatible(QUIC_V1, 0x0A0A0A0A)


# -- over loopback, against aioquic ------------------------------------------------


class RecordingRelay(UdpRelay):
    """A relay that notes the QUIC version of every long-header datagram."""

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__(target)
        self.versions: list[list[int]] = [[], []]  # from the client, from the server

    async def _from_client(self) -> None:
        while True:
            data, self.client = await self.front.recvfrom(65536)
            self.versions[0] += _long_header_versions([data])
            if self.back is not None:
                await self.back.sendto(data, self.target)

    async def _from_server(self, sock: trio.socket.SocketType) -> None:
        while True:
            try:
                data, _ = await sock.recvfrom(65536)
            except (OSError, trio.ClosedResourceError):
                return
            self.versions[1] += _long_header_versions([data])
            await self.front.sendto(data, self.client)


@contextlib.asynccontextmanager
async def recording_relay(port: int) -> AsyncIterator[RecordingRelay]:
    async with trio.open_nursery() as nursery:
        relay = RecordingRelay((HOST, port))
        await relay.start(nursery)
        try:
            yield relay
        finally:
            nursery.cancel_scope.cancel()
            relay.front.close()
            if relay.back is not None:
                relay.back.close()


def _assert_upgraded_on_the_wire(relay: RecordingRelay) -> None:
    from_client, from_server = relay.versions
    assert from_client[0] == QUIC_V1
    assert from_server and set(from_server) == {QUIC_V2}
    assert from_client[-1] == QUIC_V2


async def test_aioquic_v1_client_upgraded_by_gw_server(peer: PeerLoop, certs: Certs) -> None:
    """aioquic's client starts in v1 and offers v2; our server prefers v2."""
    with trio.fail_after(20):
        config = gw_server_config(certs, versions=[QUIC_V2, QUIC_V1])
        async with gw_server(config) as server, recording_relay(server.port) as relay:
            async with aq_client(peer, relay.port, aq_client_config(certs)) as client:
                assert await peer.run(_echo_check(client.protocol))
                info = await peer.run(_describe(client.protocol))
                _, conn = await server.next("connection")
                assert conn.version == info["version"] == QUIC_V2
    _assert_upgraded_on_the_wire(relay)


async def test_gw_v1_client_upgraded_by_aioquic_server(peer: PeerLoop, certs: Certs) -> None:
    """Our client starts in v1 and prefers v2; aioquic's server upgrades it."""
    with trio.fail_after(20):
        async with aq_server(peer, aq_server_config(certs)) as server:
            async with recording_relay(server.port) as relay:
                config = gw_client_config(
                    certs, versions=[QUIC_V2, QUIC_V1], original_version=QUIC_V1
                )
                async with quic.connect(HOST, relay.port, config) as conn:
                    assert conn.version == QUIC_V2
                    await _gw_echo(conn)
                    [info] = await peer.run(server.describe())
                    assert info["version"] == QUIC_V2
    _assert_upgraded_on_the_wire(relay)
