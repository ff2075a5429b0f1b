"""serve(..., workers=N): worker processes on one UDP port, routed by connection ID."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio
from quic_pair import client_config, server_config

import ghostwire.quic as quic
from ghostwire.quic.lb import QuicLbCidGenerator, QuicLbConfig
from ghostwire.quic.net.forwarding import Forwarder, decode, encode, open_inboxes
from ghostwire.quic.net.reuseport import attach_worker_program, open_reuseport_sockets
from ghostwire.quic.net.workers import ROUTING_ENV, QuicWorkers, worker_cid_plan

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="SO_REUSEPORT groups: Linux")
HOST = "127.0.0.1"


async def report_pid(conn: quic.Connection) -> None:
    """Each stream: read to EOF, answer with this worker's pid."""
    async for stream in conn:
        assert isinstance(stream, quic.QuicStream)
        while await stream.receive_some():
            pass
        await stream.send_all(str(os.getpid()).encode())
        await stream.send_eof()


async def ask_pid(conn: quic.Connection) -> int:
    stream = await conn.open_stream()
    await stream.send_all(b"which worker?")
    await stream.send_eof()
    answer = b""
    while chunk := await stream.receive_some():
        answer += chunk
    return int(answer)


@asynccontextmanager
async def workers_server(
    count: int = 2, config: quic.ServerConfig | None = None
) -> AsyncIterator[QuicWorkers]:
    config = config or server_config()
    async with trio.open_nursery() as nursery:
        info = await nursery.start(
            partial(quic.serve, report_pid, 0, config, host=HOST, workers=count)
        )
        yield info
        nursery.cancel_scope.cancel()


def worker_of(conn: quic.Connection) -> int:
    """The worker byte of the server's connection ID the client sends to."""
    return conn.core.peer_cids.current.cid[1]


async def test_bpf_program_routes_by_the_dcid_worker_byte() -> None:
    sockets = open_reuseport_sockets(HOST, 0, socket.AF_INET, 2, 1 << 16)
    try:
        assert attach_worker_program(sockets[0], cid_offset=1)
        port = sockets[0].getsockname()[1]
        receivers = [trio.socket.from_stdlib_socket(s) for s in sockets]
        with trio.fail_after(10):
            for _ in range(6):  # several 4-tuples: the hash would spread them
                client = trio.socket.socket(type=socket.SOCK_DGRAM)
                await client.bind((HOST, 0))
                for worker in (0, 1):
                    short = bytes([0x40, 0x00, worker]) + b"s" * 40
                    long_ = bytes([0xC0, 0, 0, 0, 1, 8, 0x00, worker]) + b"l" * 40
                    for packet in (short, long_):
                        await client.sendto(packet, (HOST, port))
                        data, _ = await receivers[worker].recvfrom(100)
                        assert data == packet
                client.close()
    finally:
        for sock in sockets:
            sock.close()


async def _one_connection(port: int, seen: list[tuple[int, int]]) -> None:
    async with quic.connect(HOST, port, client_config()) as conn:
        seen.append((worker_of(conn), await ask_pid(conn)))


async def test_connections_spread_over_two_workers() -> None:
    with trio.fail_after(120):
        async with workers_server(2) as info:
            assert info.cid_routing
            seen: list[tuple[int, int]] = []
            limit = trio.CapacityLimiter(8)

            async def bounded() -> None:
                async with limit:
                    await _one_connection(info.port, seen)

            async with trio.open_nursery() as nursery:
                for _ in range(100):
                    nursery.start_soon(bounded)
            assert len(seen) == 100
            pid_of_worker = dict(seen)
            assert set(pid_of_worker) == {0, 1}  # both workers served some
            assert sorted(pid_of_worker.values()) == sorted(info.pids)
            # The CID's worker byte names the process that answered, every time.
            assert all(pid_of_worker[worker] == pid for worker, pid in seen)


async def test_workers_behind_a_quic_lb_balancer_keep_its_server_id() -> None:
    """With a plaintext QUIC-LB generator the server ID stays and the worker
    byte is the first nonce byte; the kernel routes by it."""
    lb = QuicLbConfig(config_id=2, server_id_length=2, nonce_length=8)
    config = server_config(cid_generator=QuicLbCidGenerator(lb, b"\x0a\x0b"))
    with trio.fail_after(60):
        async with workers_server(2, config) as info:
            assert info.cid_routing
            pid_of_worker: dict[int, int] = {}
            for _ in range(20):
                async with quic.connect(HOST, info.port, client_config()) as conn:
                    cid = conn.core.peer_cids.current.cid
                    assert len(cid) == lb.cid_length and cid[1:3] == b"\x0a\x0b"
                    pid = await ask_pid(conn)
                    assert pid_of_worker.setdefault(cid[3], pid) == pid
            assert set(pid_of_worker) <= {0, 1}
            assert set(pid_of_worker.values()) <= set(info.pids)


class Relay:
    """A NAT in front of the server: ``rebind`` gives the client a new source port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.front = trio.socket.socket(type=socket.SOCK_DGRAM)
        self.back: Any = None
        self.client: Any = None
        self.nursery: trio.Nursery | None = None

    async def start(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        await self.front.bind((HOST, 0))
        nursery.start_soon(self._from_client)
        await self.rebind()

    async def rebind(self) -> None:
        assert self.nursery is not None
        # The new socket is bound before _from_client may use it (a send would
        # bind it, and the explicit bind fail), and the old one is closed only
        # once it is out of use.
        back = trio.socket.socket(type=socket.SOCK_DGRAM)
        await back.bind((HOST, 0))
        old, self.back = self.back, back
        if old is not None:
            old.close()
        self.nursery.start_soon(self._from_server, back)

    async def _from_client(self) -> None:
        while True:
            data, self.client = await self.front.recvfrom(65536)
            await self.back.sendto(data, self.target)

    async def _from_server(self, sock: Any) -> None:
        while True:
            try:
                data, _ = await sock.recvfrom(65536)
            except (OSError, trio.ClosedResourceError):
                return
            await self.front.sendto(data, self.client)


@pytest.mark.parametrize("routing", ["auto", "forward"])
async def test_rebinding_client_keeps_its_worker_and_connection(
    routing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By the kernel's BPF program, or without it by forwarding between workers."""
    monkeypatch.setenv(ROUTING_ENV, routing)
    with trio.fail_after(60):
        async with workers_server(2) as info, trio.open_nursery() as nursery:
            assert info.cid_routing == (routing == "auto")
            assert info.forwarding == (routing == "forward")
            relay = Relay((HOST, info.port))
            await relay.start(nursery)
            async with quic.connect(HOST, relay.front.getsockname()[1], client_config()) as conn:
                first = await ask_pid(conn)
                ports = set()
                for _ in range(6):  # a 4-tuple hash would move it with probability 1 - 2**-6
                    await relay.rebind()
                    ports.add(relay.back.getsockname()[1])
                    assert await ask_pid(conn) == first
                assert len(ports) == 6
            nursery.cancel_scope.cancel()


async def test_workers_stop_when_serve_is_cancelled() -> None:
    with trio.fail_after(60):
        async with workers_server(2) as info:
            pids = list(info.pids)
            async with quic.connect(HOST, info.port, client_config()) as conn:
                assert await ask_pid(conn) in pids
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # reaped: gone, not a zombie


async def test_handler_must_be_importable() -> None:
    async def local(conn: quic.Connection) -> None:
        pass

    with pytest.raises(TypeError, match="importable"):
        await quic.serve(local, 0, server_config(), host=HOST, workers=2)


def test_worker_ids_keep_a_load_balancer_server_id() -> None:
    """Behind a QUIC-LB balancer: the server ID stays, the worker is the first nonce byte."""
    lb = QuicLbConfig(config_id=1, server_id_length=2, nonce_length=6)
    config = server_config(cid_generator=QuicLbCidGenerator(lb, b"\x0a\x0b"))
    plan_lb, plan, offset = worker_cid_plan(config, 3)
    assert plan_lb == lb and offset == 3
    for index, (server_id, prefix) in enumerate(plan):
        cid = QuicLbCidGenerator(lb, server_id, nonce_prefix=prefix)()
        assert cid[1:3] == b"\x0a\x0b" and cid[offset] == index
    _, default_plan, default_offset = worker_cid_plan(server_config(), 2)
    assert default_offset == 1 and [sid for sid, _ in default_plan] == [b"\x00", b"\x01"]
    keyed = QuicLbConfig(config_id=1, server_id_length=2, nonce_length=6, key=bytes(16))
    with pytest.raises(ValueError, match="plaintext"):
        worker_cid_plan(server_config(cid_generator=QuicLbCidGenerator(keyed, b"ab")), 2)


# -- forwarding between workers, where the kernel does not route by CID ---------------


def test_forwarded_message_keeps_the_source_address() -> None:
    for addr in [("127.0.0.1", 4433), ("fe80::1%lo", 443, 7, 1), ("::1", 65535, 0, 0)]:
        assert decode(encode(b"\x40payload", addr)) == (b"\x40payload", addr)
    for bad in [b"", b"\x03\x00" + bytes(10), encode(b"x", ("a", 1))[:12]]:
        with pytest.raises(ValueError):
            decode(bad)


def test_forwarder_sends_only_other_workers_short_headers() -> None:
    pairs = open_inboxes(3)
    try:
        forwarder = Forwarder(0, 1, pairs[0][0], [sender for _, sender in pairs])
        client = ("127.0.0.1", 5000)
        for worker in (1, 2):
            packet = bytes([0x40, 0x00, worker]) + b"s" * 30
            assert forwarder.misrouted(packet, client)
            assert decode(pairs[worker][0].recv(2048)) == (packet, client)
        kept = [
            bytes([0x40, 0x00, 0]) + b"s" * 30,  # its own: a connection it forgot
            bytes([0x40, 0x00, 3]) + b"s" * 30,  # no such worker
            bytes([0xC0, 0, 0, 0, 1, 8, 0x00, 1]) + b"l" * 30,  # long header
            b"\x40\x00",  # too short for a worker byte
            bytes([0x00, 0x00, 1]) + b"s" * 30,  # fixed bit clear: not QUIC (RFC 9000 §17.3.1)
            bytes([0x3F, 0x00, 2]) + b"s" * 30,  # the same, with every other bit set
            bytes([0x40, 0x00, 1]) + b"s" * 19,  # too short to hold a header protection sample
        ]
        assert not any(forwarder.misrouted(packet, client) for packet in kept)
        assert forwarder.forwarded == 2 and forwarder.dropped == 0
        for inbox, _ in pairs:
            with pytest.raises(BlockingIOError):
                inbox.recv(2048)
    finally:
        for inbox, sender in pairs:
            inbox.close()
            sender.close()


async def _rebinding_connection(port: int, seen: list[tuple[int, int, int]]) -> None:
    """Connect through a NAT, ask, rebind, ask again: (worker byte, pid, pid)."""
    async with trio.open_nursery() as nursery:
        relay = Relay((HOST, port))
        await relay.start(nursery)
        async with quic.connect(HOST, relay.front.getsockname()[1], client_config()) as conn:
            first = await ask_pid(conn)
            await relay.rebind()
            seen.append((worker_of(conn), first, await ask_pid(conn)))
        nursery.cancel_scope.cancel()


async def test_forwarding_workers_serve_100_rebinding_connections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No BPF program: the 4-tuple hash picks the worker, and after a rebinding
    about half the clients reach the other one, which must forward (a stateless
    reset would end the connection)."""
    monkeypatch.setenv(ROUTING_ENV, "forward")
    with trio.fail_after(180):
        async with workers_server(2) as info:
            assert not info.cid_routing and info.forwarding
            seen: list[tuple[int, int, int]] = []
            limit = trio.CapacityLimiter(8)

            async def bounded() -> None:
                async with limit:
                    await _rebinding_connection(info.port, seen)

            async with trio.open_nursery() as nursery:
                for _ in range(100):
                    nursery.start_soon(bounded)
            assert len(seen) == 100
            assert all(before == after for _, before, after in seen)
            pid_of_worker = {worker: pid for worker, pid, _ in seen}
            assert set(pid_of_worker) == {0, 1}  # the hash spread them over both
            assert sorted(pid_of_worker.values()) == sorted(info.pids)
            assert all(pid_of_worker[worker] == pid for worker, pid, _ in seen)
