"""What a server's handshakes cost the scheduler (issue 13, server CPU per handshake).

A server connection's handler task is started when the handshake completes,
not with the connection: no task parked on an event until then (a step, a
parking and a wake-up per connection), and none at all for a handshake that
fails. Counted with a trio instrument, on the autojump clock (the closing
and draining periods pass without waiting).
"""

from __future__ import annotations

from functools import partial

import pytest
import trio
import trio.testing
from quic_pair import client_config, server_config
from test_perf_task_steps import HOST, _Steps

import ghostwire.quic as quic
from ghostwire.quic.connection import QuicConnection
from ghostwire.quic.net.connection import Connection

CONNECTS = 5


async def _answer(request: bytes) -> bytes:
    return request


async def _handler(conn: Connection) -> None:
    await conn.serve_requests(_answer, 100)


async def _connects(
    config: quic.ClientConfig, *, fail: bool, request: bool = False
) -> tuple[_Steps, int]:
    """CONNECTS connects (each closed at once) to a server, counted from the
    first until the server has forgotten the last; also how many times the
    server's handler was entered."""
    steps = _Steps()
    entered = 0

    async def handler(conn: Connection) -> None:
        nonlocal entered
        entered += 1
        await _handler(conn)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(quic.serve, host=HOST), handler, 0, server_config())
        trio.lowlevel.add_instrument(steps)
        try:
            for _ in range(CONNECTS):
                if fail:
                    with pytest.raises(quic.HandshakeError):
                        async with quic.connect(HOST, server.port, config):
                            pass
                else:
                    async with quic.connect(HOST, server.port, config) as conn:
                        if request:
                            assert await conn.request(b"ping", 100) == b"ping"
            await trio.sleep(60)  # autojump clock: the draining periods (3 PTOs) end
            assert server.connection_count == 0
        finally:
            trio.lowlevel.remove_instrument(steps)
        nursery.cancel_scope.cancel()
    return steps, entered


async def test_a_handshake_that_fails_starts_no_handler_task(
    autojump_clock: trio.testing.MockClock,
) -> None:
    steps, entered = await _connects(client_config(alpn=["not-served"]), fail=True)
    assert entered == 0
    assert steps.spawned["_run"] == 2 * CONNECTS  # the connections' tasks, both sides
    assert steps.spawned["_run_handler"] == 0, steps.spawned


async def test_a_servers_handler_task_starts_with_the_completed_handshake(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Three steps per connection: the handler runs to its wait for the
    connection's end, wakes when it ends, and its nursery closes; no step
    parking on the handshake before (four steps in all, before)."""
    steps, entered = await _connects(client_config(), fail=False)
    assert entered == CONNECTS
    assert steps.spawned["_run_handler"] == CONNECTS
    assert steps.steps["_run_handler"] == 3 * CONNECTS, steps.steps


async def test_a_closed_connection_wakes_its_timer_task_once(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that closes after a request: the server's connection,
    draining (RFC 9000 §10.2.2), runs its timers once, at the end of the
    period, not first at the loss or ACK deadline its timer scope held."""
    closed_timers = 0
    handle_timer = QuicConnection.handle_timer

    def counting(self: QuicConnection, now: float) -> None:
        nonlocal closed_timers
        if not self.is_client and self.is_closed:
            closed_timers += 1
        handle_timer(self, now)

    monkeypatch.setattr(QuicConnection, "handle_timer", counting)
    await _connects(client_config(), fail=False, request=True)
    assert closed_timers == CONNECTS
