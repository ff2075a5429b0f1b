"""No leaks: a stream both sides finished is forgotten, ``aclose()`` or not.

Many sequential small request/response streams go through one connection;
neither side ever calls ``aclose()`` on a stream. Afterwards the streams
still known to either side (shell objects and core state) are a handful, not
one per request. The default suite runs a few thousand; ``-m slow`` runs the
full 100,000 and prints the resident set size.
"""

from __future__ import annotations

import gc
import resource
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing
from quic_pair import client_config, server_config

import ghostwire.quic as quic

HOST = "127.0.0.1"
# Streams whose last acknowledgement may still be in flight when we count.
IN_FLIGHT_BOUND = 64


async def _answer(stream: Any) -> None:
    request = b""
    while chunk := await stream.receive_some():
        request += chunk
    await stream.send_all(b"re:" + request)
    await stream.send_eof()  # no aclose(): finishing both sides must be enough


async def _server(conn: quic.Connection, record: list[quic.Connection]) -> None:
    record.append(conn)
    async with trio.open_nursery() as nursery:
        async for stream in conn:
            nursery.start_soon(_answer, stream)


def _live_stream_objects() -> int:
    gc.collect()
    kinds = (quic.QuicStream, quic.QuicSendStream, quic.QuicReceiveStream)
    return sum(1 for obj in gc.get_objects() if isinstance(obj, kinds))


async def _run(count: int) -> tuple[int, int]:
    servers_side: list[quic.Connection] = []
    config = server_config(max_streams_bidi=100)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(quic.serve, partial(_server, record=servers_side), 0, config, host=HOST)
        )
        async with quic.connect(HOST, server.port, client_config()) as conn:
            for index in range(count):
                stream = await conn.open_stream()
                await stream.send_all(b"%d" % index)
                await stream.send_eof()
                reply = b""
                while chunk := await stream.receive_some():
                    reply += chunk
                assert reply == b"re:%d" % index
            del stream
            await trio.testing.wait_all_tasks_blocked()
            [served] = servers_side
            for side in (conn, served):
                assert len(side._streams) <= IN_FLIGHT_BOUND
                assert len(side.core.streams) <= IN_FLIGHT_BOUND
            live = _live_stream_objects()
        nursery.cancel_scope.cancel()
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return live, rss_kib


async def test_finished_streams_are_forgotten_without_aclose() -> None:
    with trio.fail_after(120):
        live, _ = await _run(3_000)
    assert live <= 2 * IN_FLIGHT_BOUND


@pytest.mark.slow
async def test_100k_streams_through_one_connection() -> None:
    with trio.fail_after(900):
        live, rss_kib = await _run(100_000)
    print(f"100,000 streams: {live} stream objects alive, max RSS {rss_kib / 1024:.1f} MiB")
    assert live <= 2 * IN_FLIGHT_BOUND


class _NoScanRoutes(dict[bytes, Any]):
    """A route table that fails the test if anyone walks all of it."""

    def items(self) -> Any:
        raise AssertionError("walked every route")

    def __iter__(self) -> Any:
        raise AssertionError("walked every route")

    def values(self) -> Any:
        raise AssertionError("walked every route")


class _FakeCids:
    def __init__(self, cids: list[bytes]) -> None:
        self._cids = cids

    def all_cids(self) -> list[bytes]:
        return list(self._cids)


class _FakeConnection:
    def __init__(self, index: int) -> None:
        self.local_cids = _FakeCids([b"%08d" % index])


def test_forgetting_a_connection_touches_only_its_routes() -> None:
    from ghostwire.quic.demux import Demux

    demux = Demux(None)
    demux.routes = _NoScanRoutes()
    connections = [_FakeConnection(i) for i in range(1000)]
    for conn in connections:
        demux.add_connection(conn)  # type: ignore[arg-type]
    victim = connections[500]
    demux.add_route(b"issued-1", victim)  # type: ignore[arg-type]
    demux.add_route(b"issued-2", victim)  # type: ignore[arg-type]
    demux.remove_route(b"issued-2")
    demux.forget(victim)  # type: ignore[arg-type]
    demux.forget(victim)  # type: ignore[arg-type]  # idempotent
    assert demux.connection_count == 999
    assert b"00000500" not in demux.routes and b"issued-1" not in demux.routes
    assert dict.__len__(demux.routes) == 999
