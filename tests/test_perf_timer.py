"""The connection's timer deadline only moves forward, and an inline reply
needs no second look (issue 13).

The trio shell sleeps its connection task in a cancel scope whose deadline
is the core's next timer. After most packets that timer moves later (a new
PTO, RFC 9002 §6.2; a new ACK deadline, RFC 9000 §13.2.1), and moving a
trio deadline costs about fifteen calls: twice per sequential request and
side. ``_update_timer`` now only brings the deadline forward; one that
passes early wakes the task once, which finds nothing due and sleeps until
the core's exact timer. What must hold: the deadline is never later than
the core's timer (no timer fires late), and it stays put between requests.
"""

from __future__ import annotations

import itertools
from functools import partial
from typing import Any

import trio
import trio.testing
from quic_pair import client_config, server_config

import ghostwire.quic as quic
from ghostwire.quic.connection import QuicConnection
from ghostwire.quic.net.connection import Connection

HOST = "127.0.0.1"
REQUESTS = 20


async def _echo(request: bytes) -> bytes:
    return request


async def _serve(conn: Connection) -> None:
    await conn.serve_requests(_echo, 1000)


def _deadline(conn: Connection) -> float:
    scope = conn._timer_scope
    assert scope is not None
    return scope.deadline


async def test_the_timer_deadline_never_trails_the_core_and_stays_put() -> None:
    seen: list[tuple[trio.CancelScope | None, float, float]] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(quic.serve, host=HOST), _serve, 0, server_config())
            async with quic.connect(HOST, server.port, client_config()) as conn:
                for _ in range(3):  # the handshake's stragglers settle
                    await conn.request(b"warm-up", 1000)
                await trio.testing.wait_all_tasks_blocked()
                for _ in range(REQUESTS):
                    assert await conn.request(b"ping", 1000) == b"ping"
                    timer = conn.core.get_timer()
                    assert timer is not None and _deadline(conn) <= timer  # never late
                    seen.append((conn._timer_scope, _deadline(conn), timer))
            nursery.cancel_scope.cancel()
    # Each request moved the core's timer later (its PTO, then the reply's
    # ACK deadline) ...
    timers = [timer for _, _, timer in seen]
    assert timers == sorted(timers) and len(set(timers)) == REQUESTS
    # ... and the deadline stayed put while the task slept in one scope (a
    # deadline that passed, on a slow machine, put it in a new scope).
    for (scope, deadline, _), (next_scope, next_deadline, _) in itertools.pairwise(seen):
        if next_scope is scope:
            assert next_deadline == deadline, seen
    assert len({scope for scope, _, _ in seen}) <= REQUESTS // 4, seen  # pairs were compared


async def test_an_inline_reply_saves_the_servers_second_look(monkeypatch: Any) -> None:
    """A reply answered inline (serve_requests with a handler that cannot
    suspend) is flushed while the request's datagram is processed; the
    server then neither asks the core whether anything is left to send
    nor re-arms its timer again: the flush did both. Credit still flows:
    300 sequential requests need MAX_STREAMS three times over (the
    default limit is 100), and the last reply is acknowledged."""
    asked = {True: 0, False: 0}  # by is_client
    original = QuicConnection.has_nothing_to_send

    def counting(self: QuicConnection, now: float) -> bool:
        asked[self.is_client] += 1
        return original(self, now)

    monkeypatch.setattr(QuicConnection, "has_nothing_to_send", counting)
    servers: list[Connection] = []

    async def serve(conn: Connection) -> None:
        servers.append(conn)
        await _serve(conn)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(quic.serve, host=HOST), serve, 0, server_config())
            async with quic.connect(HOST, server.port, client_config()) as conn:
                for _ in range(3):  # the handshake's stragglers settle
                    await conn.request(b"warm-up", 1000)
                await trio.testing.wait_all_tasks_blocked()
                asked.update({True: 0, False: 0})
                sent = servers[0].statistics().packets_sent
                for _ in range(300):
                    assert await conn.request(b"ping", 1000) == b"ping"
                assert asked == {True: 300, False: 0}  # the client: once per reply
                assert servers[0].statistics().packets_sent - sent == 300
                await servers[0].wait_delivered()
            nursery.cancel_scope.cancel()
