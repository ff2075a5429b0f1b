"""1-RTT key updates (RFC 9001 §6) and the AEAD limits (RFC 9001 §6.6).

* On demand: ``Connection.update_keys()``; the peer follows each update.
* By themselves: with a (test-sized) confidentiality limit, a transfer goes
  through several updates, with aioquic as the peer in each role (20 MB).
* The integrity limit: past it, packets failing authentication close the
  connection with AEAD_LIMIT_REACHED.
"""

from __future__ import annotations

import hashlib
import sys
from typing import Any

import pytest
import trio
from quic_pair import client_config, make_pair, server_config

import ghostwire.quic as quic
from ghostwire.quic.crypto import confidentiality_limit, integrity_limit
from ghostwire.quic.errors import TransportErrorCode
from ghostwire.quic.events import ConnectionTerminated
from ghostwire.quic.key_update import AUTO_UPDATE_SHARE, KeyPhases
from ghostwire.quic.recovery import Space
from ghostwire.quic.suites import CipherSuite

pytest.importorskip("aioquic")
from aioquic_peer import PeerLoop, pattern
from test_interop_aioquic import (
    ALPN,
    HOST,
    PEER_SCRIPT,
    Certs,
    _gw_echo,
    _one_rtt_phase,
    aq_server,
    aq_server_config,
    aq_server_process,
    certs,
    gw_client_config,
    gw_server,
    gw_server_config,
    read_all,
)

__all__ = ["certs"]  # a fixture, used by name (peer is in conftest.py)

TRANSFER = 20 << 20
LIMIT = 3000  # packets per key: a 20 MB transfer (~17,000 packets) needs several updates


def test_rfc_9001_limits_per_suite() -> None:
    assert confidentiality_limit(CipherSuite.AES_128_GCM_SHA256) == 1 << 23
    assert confidentiality_limit(CipherSuite.AES_256_GCM_SHA384) == 1 << 23
    assert integrity_limit(CipherSuite.AES_128_GCM_SHA256) == 1 << 52
    assert integrity_limit(CipherSuite.CHACHA20_POLY1305_SHA256) == 1 << 36
    # ChaCha20-Poly1305's confidentiality limit exceeds the packet number space.
    assert confidentiality_limit(CipherSuite.CHACHA20_POLY1305_SHA256) >= 1 << 62
    pair = make_pair(client_config(cipher_suites=[CipherSuite.CHACHA20_POLY1305_SHA256]))
    pair.exchange()
    assert pair.client.key_phases.integrity_limit == 1 << 36
    assert pair.client.key_phases.confidentiality_limit >= 1 << 62
    configured = KeyPhases(confidentiality=100, integrity=7)
    assert (configured.confidentiality_limit, configured.integrity_limit) == (100, 7)


def test_requested_updates_wait_until_allowed_then_happen() -> None:
    pair = make_pair()
    pair.exchange()
    client, server = pair.client, pair.server
    assert server is not None
    stream_id = client.open_stream()
    for expected in (1, 2, 3):
        client.request_key_update()
        assert client.key_phases.initiated == expected  # allowed: at once
        client.send_stream_data(stream_id, b"under the new keys")
        pair.exchange()
        pair.advance(0.1)  # (past the peer's ACK delay)
        assert server.key_phases.updates == expected  # the peer followed
        assert client.key_phases.send_phase == server.key_phases.send_phase == expected % 2
    # Two requests in a row: the second waits for an acknowledgement of a packet
    # under the keys of the first (RFC 9001 §6.1), then runs by itself.
    client.request_key_update()
    client.request_key_update()
    assert client.key_phases.initiated == 4 and client.key_phases.update_requested
    client.send_stream_data(stream_id, b"ack me")
    pair.exchange()
    pair.advance(0.1)
    assert client.key_phases.initiated == 5 and not client.key_phases.update_requested
    client.send_stream_data(stream_id, b"and follow")  # type: ignore[unreachable]
    pair.exchange()
    pair.advance(0.1)
    assert server.key_phases.updates == 5


def test_updates_start_by_themselves_before_the_confidentiality_limit() -> None:
    limit = 200
    # 1200-byte datagrams (no path MTU discovery), so the packet count below holds.
    pair = make_pair(
        client_config(aead_confidentiality_limit=limit, pmtu_discovery=False),
        server_config(pmtu_discovery=False),
    )
    pair.exchange()
    client, server = pair.client, pair.server
    assert server is not None
    stream_id = client.open_stream()
    payload = pattern(1 << 20)  # ~900 packets: four times the limit
    client.send_stream_data(stream_id, payload, end_stream=True)
    received = b""
    for _ in range(200):
        pair.advance(0.01)
        received += server.read_stream(stream_id)
        if server.stream_at_eof(stream_id):
            break
    assert received == payload
    assert client.key_phases.initiated >= 3
    assert server.key_phases.updates == client.key_phases.initiated
    # Never more than the limit under one key (the update starts at 3/4 of it).
    next_pn = client.spaces[Space.APPLICATION].next_pn
    assert client.key_phases.packets_with_send_keys(next_pn) < limit
    assert not client.is_closed
    assert AUTO_UPDATE_SHARE < 1


def test_integrity_limit_closes_with_aead_limit_reached() -> None:
    failures_allowed = 5
    pair = make_pair(server=server_config(aead_integrity_limit=failures_allowed))
    pair.exchange()
    client, server = pair.client, pair.server
    assert server is not None
    stream_id = client.open_stream()
    client.send_stream_data(stream_id, b"x" * 100)
    [(datagram, _)] = client.datagrams_to_send(pair.now)
    forged = bytearray(datagram)
    forged[-1] ^= 0xFF  # in the AEAD tag: header protection still removes fine
    for _ in range(failures_allowed):
        server.receive_datagram(bytes(forged), ("127.0.0.1", 40000), pair.now)
    assert not server.is_closed
    assert server.key_phases.decryption_failures == failures_allowed
    server.receive_datagram(bytes(forged), ("127.0.0.1", 40000), pair.now)
    assert server.is_closed
    events = []  # type: ignore[unreachable]
    while (event := server.next_event()) is not None:
        events.append(event)
    [closed] = [e for e in events if isinstance(e, ConnectionTerminated)]
    assert closed.error_code == TransportErrorCode.AEAD_LIMIT_REACHED


# -- over loopback with the trio API --------------------------------------------


def assert_updates_followed(core: Any) -> None:
    """``core`` went through several key updates of its own, each before the
    limit, and the peer followed every one it could have seen.

    RFC 9001 §6.2: the peer switches its send keys before acknowledging a
    packet under new keys, so an update whose packets were acknowledged was
    followed. The last update may start in the final packets (an ACK, or a
    retransmission or probe under load) that the peer has not answered yet, or
    never reads as it is done and closing; then nothing under it is
    acknowledged, and whether the peer followed it is a matter of timing.
    """
    phases: KeyPhases = core.key_phases
    space = core.spaces[Space.APPLICATION]
    next_pn = space.next_pn
    assert phases.initiated >= 4
    # At most LIMIT packets under one key: the count follows the packet count.
    assert phases.packets_with_send_keys(next_pn) < LIMIT
    assert phases.initiated >= next_pn // LIMIT
    first_pn_of_phase = next_pn - phases.packets_with_send_keys(next_pn)
    largest_acked = space.largest_acked_by_peer
    if largest_acked is not None and largest_acked >= first_pn_of_phase:
        assert phases.updates == phases.initiated
    else:
        assert phases.initiated - 1 <= phases.updates <= phases.initiated


async def test_update_keys_on_demand_with_aioquic(peer: PeerLoop, certs: Certs) -> None:
    with trio.fail_after(30):
        async with aq_server(peer, aq_server_config(certs)) as server:
            async with quic.connect(HOST, server.port, gw_client_config(certs)) as conn:
                await _gw_echo(conn)
                for round_number in (1, 2, 3):
                    conn.update_keys()
                    await _gw_echo(conn, b"after update %d " % round_number * 300)
                    phases = conn.core.key_phases
                    assert phases.initiated == phases.updates == round_number
                    [protocol] = server.connections
                    assert await peer.run(_one_rtt_phase(protocol)) == round_number % 2


async def test_update_keys_on_a_closed_connection_raises(certs: Certs) -> None:
    with trio.fail_after(20):
        async with gw_server(gw_server_config(certs)) as server:
            async with quic.connect(HOST, server.port, gw_client_config(certs)) as conn:
                await conn.aclose()
                with pytest.raises(quic.ConnectionClosed):
                    conn.update_keys()


async def test_20mb_upload_to_aioquic_through_several_updates(certs: Certs) -> None:
    """ghostwire client -> aioquic server: our keys wear out every LIMIT packets."""
    size = TRANSFER
    expected = hashlib.sha256(pattern(size)).hexdigest()
    with trio.fail_after(180):
        async with aq_server_process(certs) as port:
            config = gw_client_config(certs, aead_confidentiality_limit=LIMIT)
            async with quic.connect(HOST, port, config) as conn:
                stream = await conn.open_stream()
                await stream.send_all(b"sink\n")
                await stream.send_all(pattern(size))
                await stream.send_eof()
                assert await read_all(stream) == f"{expected} {size}\n".encode()
                assert_updates_followed(conn.core)


async def test_20mb_download_from_gw_server_through_several_updates(certs: Certs) -> None:
    """aioquic client <- ghostwire server: the server's keys wear out."""
    size = TRANSFER
    expected = hashlib.sha256(pattern(size)).hexdigest()
    with trio.fail_after(180):
        config = gw_server_config(certs, aead_confidentiality_limit=LIMIT)
        async with gw_server(config) as server:
            command = [sys.executable, PEER_SCRIPT, "download", "--alpn", ALPN,
                       "--port", str(server.port), "--cafile", certs.ca_file,
                       "--size", str(size)]  # fmt: skip
            result = await trio.run_process(command, capture_stdout=True, capture_stderr=True)
            _, conn = await server.next("connection")
            # The client has exited: once its CONNECTION_CLOSE is processed, so
            # is every packet it sent before.
            await conn.wait_closed()
    digest, length, _seconds = result.stdout.decode().split()
    assert (digest, int(length)) == (expected, size)
    assert_updates_followed(conn.core)
