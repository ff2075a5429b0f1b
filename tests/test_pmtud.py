"""Path MTU discovery (DPLPMTUD, RFC 8899 with RFC 9000 §14.3, §14.4).

The search logic alone, loss recovery's handling of lost probes, and whole
connections on the simulated network (tests/netsim.py) with a path MTU that
drops bigger datagrams, one that shrinks mid-transfer (a black hole), and a
peer whose max_udp_payload_size is below the configured maximum.
"""

from __future__ import annotations

import errno
import socket
import struct
import sys
from functools import partial
from typing import Any

import pytest
import trio
from netsim import BulkApp, LinkConfig, Simulation, make_payload, sha256
from quic_pair import SERVER_ADDR, client_config, handshake, make_pair, server_config

import ghostwire.quic as quic
from ghostwire.quic import transport_setup
from ghostwire.quic.congestion import create_congestion_controller
from ghostwire.quic.connection import ConnectionState, QuicConnection
from ghostwire.quic.demux import Demux
from ghostwire.quic.net import gso
from ghostwire.quic.net.endpoint import Endpoint, open_udp_socket
from ghostwire.quic.pmtud import (
    BASE_PLPMTU,
    BLACK_HOLE_BURSTS,
    BLACK_HOLE_PTOS,
    INF,
    PMTU_RAISE_TIMER,
    SEARCH_PRECISION,
    PathMtuDiscovery,
)
from ghostwire.quic.recovery import LossRecovery, SentPacket, Space

# -- the search (sans-IO, no connection) ------------------------------------------


def _search(path_mtu: int, cap: int, start: int = 1200) -> tuple[PathMtuDiscovery, list[int]]:
    """Run the search against a path carrying ``path_mtu``; returns the sizes probed."""
    applied: list[int] = []
    pmtud = PathMtuDiscovery(start, enabled=True, apply=applied.append)
    pmtud.start(start, cap)
    probed: list[int] = []
    for _ in range(100):
        size = pmtud.probe_size(0.0)
        if size is None:
            break
        probed.append(size)
        pmtud.on_probe_delivered(size <= path_mtu, size, pmtud.on_probe_sent())
    assert applied == sorted(applied) and (not applied or applied[-1] == pmtud.current)
    return pmtud, probed


@pytest.mark.parametrize("path_mtu", [1200, 1280, 1350, 1400, 1451, 1452, 9000])
def test_search_finds_the_path_mtu(path_mtu: int) -> None:
    pmtud, probed = _search(path_mtu, cap=1452)
    expected = min(path_mtu, 1452)
    assert expected - SEARCH_PRECISION <= pmtud.current <= expected
    assert probed[0] == 1452  # the cap first: it usually works
    assert len(probed) <= 30
    assert pmtud.probe_at == PMTU_RAISE_TIMER  # done: search again later (RFC 8899 §5.1.1)


def test_a_failed_size_is_probed_max_probes_times_and_a_random_loss_is_forgiven() -> None:
    pmtud = PathMtuDiscovery(1200, enabled=True, apply=lambda size: None)
    pmtud.start(1200, 1452)
    assert pmtud.probe_size(0.0) == 1452
    pmtud.on_probe_delivered(False, 1452, pmtud.on_probe_sent())  # the cap fails at once
    mid = pmtud.probe_size(0.0)
    assert mid == (1200 + 1452) // 2
    pmtud.on_probe_delivered(False, mid, pmtud.on_probe_sent())  # one loss: maybe random; again
    assert pmtud.probe_size(0.0) == mid
    pmtud.on_probe_delivered(True, mid, pmtud.on_probe_sent())
    assert pmtud.current == mid


def test_no_second_probe_while_one_is_in_flight_and_disabled_never_probes() -> None:
    pmtud = PathMtuDiscovery(1200, enabled=True, apply=lambda size: None)
    pmtud.start(1200, 1452)
    size = pmtud.probe_size(0.0)
    assert size is not None
    pmtud.on_probe_sent()
    assert pmtud.probe_size(0.0) is None
    off = PathMtuDiscovery(1200, enabled=False, apply=lambda size: None)
    assert off.probe_at == INF


def _packet(pn: int, size: int, *, probe: bool = False, sent: float = 0.0) -> SentPacket:
    return SentPacket(
        packet_number=pn,
        space=Space.APPLICATION,
        time_sent=sent,
        size=size,
        ack_eliciting=True,
        in_flight=True,
        pmtu_probe=probe,
    )


def test_black_hole_after_loss_bursts_of_big_packets_only() -> None:
    applied: list[int] = []
    pmtud = PathMtuDiscovery(1200, enabled=True, apply=applied.append)
    pmtud.start(1200, 1452)
    pmtud.on_probe_delivered(True, 1452, pmtud.on_probe_sent())
    assert pmtud.current == 1452
    for _ in range(BLACK_HOLE_BURSTS - 1):
        pmtud.on_packets_lost([_packet(1, 1452), _packet(2, 1452)])
    pmtud.on_big_packet_acked(3)  # the path still carries them: start again
    for _ in range(BLACK_HOLE_BURSTS - 1):
        pmtud.on_packets_lost([_packet(4, 1452)])
    pmtud.on_packets_lost([_packet(5, 1452), _packet(6, 60)])  # a small one too: congestion
    assert pmtud.current == 1452 and pmtud.black_holes == 0
    pmtud.on_packets_lost([_packet(7, 1452)])
    assert pmtud.current == BASE_PLPMTU and pmtud.black_holes == 1
    assert applied[-1] == BASE_PLPMTU
    # The search starts again below the size that failed.
    size = pmtud.probe_size(0.0)
    assert size is not None and BASE_PLPMTU < size < 1452


def test_losses_of_big_packets_followed_by_an_acknowledged_big_one_are_congestion() -> None:
    """Under congestion big packets go too, but later big ones arrive; in a
    black hole nothing big sent after the losses is ever acknowledged."""
    pmtud = PathMtuDiscovery(1200, enabled=True, apply=lambda size: None)
    pmtud.start(1200, 1452)
    pmtud.on_probe_delivered(True, 1452, pmtud.on_probe_sent())
    pn = 10
    for _ in range(3):
        pmtud.on_big_packet_acked(pn + BLACK_HOLE_BURSTS)  # a later one arrived
        for lost in range(pn, pn + BLACK_HOLE_BURSTS):  # then loss events only
            pmtud.on_packets_lost([_packet(lost, 1452)])
        pn += BLACK_HOLE_BURSTS + 1
    assert pmtud.current == 1452 and pmtud.black_holes == 0


def test_black_hole_after_consecutive_ptos() -> None:
    pmtud = PathMtuDiscovery(1400, enabled=True, apply=lambda size: None)
    pmtud.start(1400, 1452)
    for count in range(1, BLACK_HOLE_PTOS):
        pmtud.on_pto(count)
    assert pmtud.current == 1400
    pmtud.on_pto(BLACK_HOLE_PTOS)
    assert pmtud.current == BASE_PLPMTU and pmtud.black_holes == 1


# -- loss recovery: a lost probe is no congestion signal ------------------------------


@pytest.mark.parametrize("probe", [True, False])
def test_lost_probe_leaves_the_congestion_window_alone(probe: bool) -> None:
    """RFC 9000 §14.4 / RFC 8899 §4.1. (``probe=False`` is the control: the
    same loss of an ordinary packet does reduce the window.)"""
    recovery = LossRecovery(
        congestion=create_congestion_controller("cubic", max_datagram_size=1200),
        initial_rtt=0.1,
        is_client=True,
    )
    recovery.handshake_confirmed = True
    cwnd = recovery.congestion.congestion_window
    recovery.on_packet_sent(_packet(0, 1452, probe=probe, sent=0.0))
    for pn in range(1, 5):
        recovery.on_packet_sent(_packet(pn, 1200, sent=0.001 * pn))
    result = recovery.on_ack_received(Space.APPLICATION, ((1, 4),), 0.0, 0.05)
    assert [p.packet_number for p in result.lost] == [0]
    assert recovery.bytes_in_flight == 0
    if probe:
        assert recovery.congestion.congestion_window >= cwnd
        assert recovery.congestion.ssthresh is None  # no congestion event at all
    else:
        assert recovery.congestion.congestion_window < cwnd


# -- connections on the simulated network ----------------------------------------------


def _simulate(
    payload: bytes,
    *,
    mtu: int | None,
    cap: int = 1452,
    seed: int = 1,
    **link: Any,
) -> tuple[Simulation, BulkApp, BulkApp]:
    client_app = BulkApp([payload])
    server_app = BulkApp()
    sim = Simulation(
        uplink=LinkConfig(mtu=mtu, **link),
        downlink=LinkConfig(mtu=mtu, **link),
        client=client_config(pmtu_max_datagram_size=cap),
        server=server_config("ed25519", pmtu_max_datagram_size=cap),
        client_app=client_app,
        server_app=server_app,
        seed=seed,
    )
    return sim, client_app, server_app


def _assert_delivered(
    sim: Simulation, client_app: BulkApp, server_app: BulkApp, payload: bytes
) -> None:
    [stream_id] = client_app.opened
    got = server_app.received[stream_id]
    assert got.size == len(payload) and got.sha256 == sha256(payload)
    assert sim.client.state is ConnectionState.CONNECTED
    assert sim.server is not None and sim.server.state is ConnectionState.CONNECTED


def _done(client_app: BulkApp, server_app: BulkApp) -> bool:
    return client_app.all_written and server_app.finished(client_app.opened)


@pytest.mark.parametrize("path_mtu", [1300, 1400, 1500])
def test_probes_find_the_path_mtu_and_lost_probes_cost_no_window(path_mtu: int) -> None:
    payload = make_payload(1_000_000, 3)
    # No bottleneck queue and no random loss: only probes can be lost.
    sim, client_app, server_app = _simulate(
        payload, mtu=path_mtu, cap=1500 if path_mtu < 1500 else 1452, bandwidth=None
    )

    def searched(conn: QuicConnection | None) -> bool:
        return conn is not None and conn.pmtud.probe_at > sim.now  # waits for the raise timer

    sim.run(lambda: _done(client_app, server_app) and searched(sim.client) and searched(sim.server))
    _assert_delivered(sim, client_app, server_app, payload)
    assert sim.server is not None
    for conn in (sim.client, sim.server):
        stats = conn.get_statistics()
        expected = min(path_mtu, 1452 if path_mtu >= 1500 else 1500)
        assert expected - SEARCH_PRECISION <= stats.max_datagram_size <= expected
        assert stats.pmtu_probes_sent >= 1
        if path_mtu < 1500:
            assert stats.pmtu_probes_lost >= 1  # the cap was too big
            # Nothing else (a PTO may count a probe lost that is declared lost later).
            assert 0 < stats.packets_lost <= stats.pmtu_probes_lost
        # RFC 9000 §14.4: the lost probes caused no congestion response.
        assert conn.recovery.congestion.ssthresh is None
    # Only probes were ever too big for the path.
    assert sim.uplink.stats.too_big == sim.client.get_statistics().pmtu_probes_lost
    assert sim.uplink.stats.largest == sim.client.max_datagram_size or path_mtu >= 1500


@pytest.mark.parametrize("both_ways", [True, False])
def test_black_hole_mid_transfer_drops_to_the_base_size_and_data_survives(
    both_ways: bool,
) -> None:
    payload = make_payload(2_000_000, 4)
    sim, client_app, server_app = _simulate(payload, mtu=None)
    sim.run(lambda: sim.client.max_datagram_size == 1452)
    received_before = sum(r.size for r in server_app.received.values())
    assert received_before < len(payload)  # the transfer is still going
    # The path shrinks: nothing above 1250 bytes gets through any more (one
    # way only: the server's ACKs still arrive).
    sim.uplink.config.mtu = 1250
    if both_ways:
        sim.downlink.config.mtu = 1250
    sim.run(lambda: _done(client_app, server_app))
    _assert_delivered(sim, client_app, server_app, payload)
    stats = sim.client.get_statistics()
    assert stats.pmtu_black_holes >= 1
    assert BASE_PLPMTU <= stats.max_datagram_size <= 1250
    assert sim.uplink.stats.too_big > 0


def test_the_peer_max_udp_payload_size_caps_the_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """RFC 9000 §18.2: the server never sends the client more than it allows."""
    payload = make_payload(300_000, 5)
    with monkeypatch.context() as patch:
        # The client (made now; the server comes with its first datagram) says 1300.
        patch.setattr(transport_setup, "MAX_UDP_PAYLOAD", 1300)
        sim, client_app, server_app = _simulate(payload, mtu=None, cap=9000)
    assert sim.client.local_params.max_udp_payload_size == 1300
    client_app.reply = b""
    server_app.reply = make_payload(300_000, 6)  # the server sends too
    sim.run(lambda: _done(client_app, server_app) and client_app.finished(client_app.opened))
    _assert_delivered(sim, client_app, server_app, payload)
    assert sim.server is not None
    assert sim.server.max_datagram_size == 1300
    assert sim.downlink.stats.largest == 1300  # probes included
    assert sim.client.max_datagram_size == 9000  # the server allows 65527
    assert sim.uplink.stats.largest == 9000


def test_switched_off_nothing_is_probed() -> None:
    payload = make_payload(200_000, 7)
    client_app = BulkApp([payload])
    server_app = BulkApp()
    sim = Simulation(
        client=client_config(pmtu_discovery=False),
        server=server_config("ed25519", pmtu_discovery=False),
        client_app=client_app,
        server_app=server_app,
        seed=2,
    )
    sim.run(lambda: _done(client_app, server_app))
    assert sim.client.get_statistics().pmtu_probes_sent == 0
    assert sim.uplink.stats.largest == sim.downlink.stats.largest == 1200


# -- over loopback UDP ----------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="IP_MTU_DISCOVER is Linux's")
def test_sockets_send_with_dont_fragment() -> None:
    """IP_PMTUDISC_PROBE (3): DF set, and the kernel's cached PMTU not applied."""
    for family in (socket.AF_INET, socket.AF_INET6):
        sock = open_udp_socket(None, 0, family)
        with sock:
            assert sock.getsockopt(socket.IPPROTO_IP, 10) == 3  # IP_MTU_DISCOVER
            if family == socket.AF_INET6:
                assert sock.getsockopt(socket.IPPROTO_IPV6, 23) == 3  # IPV6_MTU_DISCOVER


async def test_loopback_finds_large_datagrams_and_reports_them() -> None:
    """Loopback carries 65,507-byte UDP payloads over IPv4: probes find a size
    near the configured maximum, and statistics() shows it on both sides."""
    seen: list[quic.Connection] = []

    async def echo(conn: quic.Connection) -> None:
        seen.append(conn)
        async for stream in conn:
            assert isinstance(stream, quic.QuicStream)
            async with stream:
                while data := await stream.receive_some():
                    await stream.send_all(data)

    payload = make_payload(2_000_000, 8)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(
                quic.serve,
                echo,
                0,
                server_config(pmtu_max_datagram_size=16384),
                host="127.0.0.1",
            )
        )
        config = client_config(pmtu_max_datagram_size=16384)
        async with quic.connect("127.0.0.1", server.port, config) as conn:
            stream = await conn.open_stream()
            received = bytearray()
            async with trio.open_nursery() as inner:

                async def send() -> None:
                    await stream.send_all(payload)
                    await stream.send_eof()

                inner.start_soon(send)
                while chunk := await stream.receive_some():
                    received += chunk
            assert sha256(bytes(received)) == sha256(payload)
            stats = conn.statistics()
            assert 16384 - SEARCH_PRECISION <= stats.max_datagram_size <= 16384
            assert stats.pmtu_probes_sent >= 1
            assert 16384 - SEARCH_PRECISION <= seen[0].statistics().max_datagram_size <= 16384
        nursery.cancel_scope.cancel()


def test_a_new_path_starts_again_at_the_base_size() -> None:
    """RFC 9000 §14.2.1 / §9.3: the peer moved; only 1200 bytes are known to work."""
    applied: list[int] = []
    pmtud = PathMtuDiscovery(1200, enabled=True, apply=applied.append)
    pmtud.start(1200, 1452)
    pmtud.on_probe_delivered(True, 1452, pmtud.on_probe_sent())
    pmtud.probe_size(10.0)  # the search is over: the raise timer is armed
    assert pmtud.probe_at == 10.0 + PMTU_RAISE_TIMER
    pmtud.on_new_path()
    assert pmtud.current == BASE_PLPMTU and applied == [1452, BASE_PLPMTU]
    assert pmtud.probe_size(11.0) == 1452  # searching again at once


# -- a probe too big for the path loses nothing else ----------------------------------


def test_a_probe_goes_out_after_the_data_it_was_built_with() -> None:
    """Last in its batch, a probe (larger than the rest) never leads a GSO run."""
    pair = handshake(make_pair(client_config(pmtu_max_datagram_size=1452)))
    client = pair.client
    pair.advance(1.0)
    assert client.pmtud.current == 1452  # the search is over
    client.pmtud.on_new_path()  # back to 1200 bytes, a probe due at once
    client.send_stream_data(client.open_stream(), bytes(5000))
    datagrams = [data for data, _ in client.datagrams_to_send(pair.now)]
    assert len(datagrams) >= 2 and client.pmtud.probes_sent == 2
    assert len(datagrams[-1]) == 1452  # the probe
    assert all(len(data) <= BASE_PLPMTU for data in datagrams[:-1])
    assert gso.run_length([(d, SERVER_ADDR) for d in datagrams], len(datagrams) - 1) == 1


class _SmallPathSocket:
    """A socket with DF set on a path that carries ``mtu`` bytes: bigger datagrams,
    alone or as GSO segments, fail with EMSGSIZE and nothing of the call is sent."""

    def __init__(self, mtu: int) -> None:
        self.mtu = mtu
        self.sent: list[bytes] = []

    def setsockopt(self, *args: object) -> None:
        raise OSError(errno.ENOPROTOOPT, "no GRO")

    def sendmsg(self, buffers: list[bytes], control: Any, flags: int, addr: object) -> int:
        [(_level, _kind, segment)] = control
        size = struct.unpack("=H", segment)[0]
        if size > self.mtu:
            raise OSError(errno.EMSGSIZE, "Message too long")
        data = b"".join(buffers)
        self.sent += [data[i : i + size] for i in range(0, len(data), size)]
        return len(data)

    def sendto(self, data: bytes, addr: object) -> int:
        if len(data) > self.mtu:
            raise OSError(errno.EMSGSIZE, "Message too long")
        self.sent.append(data)
        return len(data)


def test_a_run_failing_with_emsgsize_is_resent_one_datagram_at_a_time() -> None:
    sock = _SmallPathSocket(1300)
    endpoint = Endpoint(sock, Demux(None, cid_length=8), None)  # type: ignore[arg-type]
    endpoint._gso = True  # as on Linux, whatever this machine is
    probe, data = b"p" * 1400, b"d" * 1200
    assert gso.run_length([(probe, SERVER_ADDR), (data, SERVER_ADDR)], 0) == 2
    endpoint.send_datagrams([(probe, SERVER_ADDR), (data, SERVER_ADDR), (data, SERVER_ADDR)])
    assert sock.sent == [data, data]  # only the probe was lost
    endpoint.send_datagrams([(data, SERVER_ADDR)] * 3)
    assert sock.sent == [data] * 5 and endpoint._gso  # GSO still on for the next runs


class _EinvalPathSocket(_SmallPathSocket):
    """Linux's other answer to a GSO segment above the path MTU: EINVAL.
    With ``gso=False`` every GSO send fails with EINVAL (no support at all)."""

    def __init__(self, mtu: int, gso: bool = True) -> None:
        super().__init__(mtu)
        self.gso = gso

    def sendmsg(self, buffers: list[bytes], control: Any, flags: int, addr: object) -> int:
        [(_level, _kind, segment)] = control
        if not self.gso or struct.unpack("=H", segment)[0] > self.mtu:
            raise OSError(errno.EINVAL, "Invalid argument")
        return super().sendmsg(buffers, control, flags, addr)


def _gso_endpoint(sock: _SmallPathSocket) -> Endpoint:
    endpoint = Endpoint(sock, Demux(None, cid_length=8), None)  # type: ignore[arg-type]
    endpoint._gso = True  # as on Linux, whatever this machine is
    return endpoint


def test_einval_for_segments_above_the_path_mtu_keeps_gso_on() -> None:
    """A path that shrank under the PMTUD size: the run is resent singly (the
    datagrams that fit get through) and GSO stays on for the endpoint."""
    sock = _EinvalPathSocket(1300)
    endpoint = _gso_endpoint(sock)
    big, small = b"b" * 1400, b"s" * 1200
    endpoint.send_datagrams([(big, SERVER_ADDR)] * 2 + [(small, SERVER_ADDR)])
    assert sock.sent == [small] and endpoint._gso  # above 1200 bytes: not "no GSO"
    endpoint.send_datagrams([(small, SERVER_ADDR)] * 3)
    assert sock.sent == [small] * 4 and endpoint._gso and endpoint._gso_worked


def test_einval_after_gso_worked_keeps_gso_on_even_at_the_base_size() -> None:
    sock = _EinvalPathSocket(1300)
    endpoint = _gso_endpoint(sock)
    data = b"d" * 1200
    endpoint.send_datagrams([(data, SERVER_ADDR)] * 2)
    assert endpoint._gso_worked
    sock.mtu = 1100  # below the QUIC minimum: no datagram fits
    endpoint.send_datagrams([(data, SERVER_ADDR)] * 2)
    assert sock.sent == [data] * 2 and endpoint._gso


def test_einval_on_a_socket_where_gso_never_worked_turns_gso_off() -> None:
    sock = _EinvalPathSocket(1500, gso=False)
    endpoint = _gso_endpoint(sock)
    data = b"d" * 1200
    endpoint.send_datagrams([(data, SERVER_ADDR)] * 3)
    assert sock.sent == [data] * 3  # all went out with sendto
    assert not endpoint._gso and not endpoint._gso_worked


def test_a_new_path_at_the_base_size_forgets_the_old_paths_probe() -> None:
    """RFC 9000 §14.2.1: a late ACK of a probe sent on the old path is no
    evidence for the new one, even when the size was still the base size."""
    applied: list[int] = []
    pmtud = PathMtuDiscovery(1200, enabled=True, apply=applied.append)
    pmtud.start(1200, 1452)
    assert pmtud.probe_size(1.0) == 1452
    old_probe = pmtud.on_probe_sent()
    pmtud.on_new_path()
    assert applied == []  # still 1200: nothing to apply
    assert pmtud.probe_size(2.0) == 1452  # the search starts again, not blocked
    pmtud.on_probe_delivered(True, 1452, old_probe)  # the late ACK
    assert pmtud.current == BASE_PLPMTU and applied == []
    new_probe = pmtud.on_probe_sent()
    pmtud.on_probe_delivered(False, 1452, new_probe)  # the new path does not carry it
    assert pmtud.current == BASE_PLPMTU
    assert pmtud.probe_size(3.0) == (1200 + 1452) // 2  # searching below the failed cap
