"""What a request costs the scheduler (issue 13, per-request cost).

A trio task step (a resumption: a reschedule, a pass through the run queue,
a coroutine send) costs a few microseconds; a request/reply exchange used to
cost the server's per-stream task six (two reads, ``send_all``, ``send_eof``,
``aclose``), plus a step of the acceptor task per stream and up to
``MAX_FLUSH_DEFERRALS`` steps of the flusher per datagram. With the one-call
stream forms and ``serve_streams`` it is four a side; with
``Connection.request`` and ``serve_requests``, one (none on the server when
its handler cannot suspend: answered inline). These tests count steps
with a trio instrument, so a regression fails. The counting tests run on
trio's MockClock, standing still: on a loaded machine, ACK and loss timers
would add steps of their own (one test once counted 190 "other" steps
against its bound of 160, at load 5); loopback needs no timer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio
import trio.testing
from quic_pair import client_config, server_config

import ghostwire.quic as quic
from ghostwire.quic.net.connection import Connection

HOST = "127.0.0.1"
PAYLOAD = bytes(range(100))
CONCURRENT = 64


class _Steps(trio.abc.Instrument):
    """Counts the steps of every task, by the name of its function, from
    the moment it is installed (a task begun before shows only its later
    steps), and the tasks spawned meanwhile."""

    def __init__(self) -> None:
        self.steps: Counter[str] = Counter()
        self.spawned: Counter[str] = Counter()

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.spawned[_short(task.name)] += 1

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps[_short(task.name)] += 1

    def total(self) -> int:
        return sum(self.steps.values())


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


async def serve_request(stream: quic.QuicStream | quic.QuicReceiveStream) -> None:
    """The request/reply pattern with the one-call forms."""
    assert isinstance(stream, quic.QuicStream)
    try:
        request = await stream.receive_all(1000)
        await stream.send_all(request, end_stream=True)
    finally:
        await stream.aclose()


async def serve_request_classic(stream: quic.QuicStream | quic.QuicReceiveStream) -> None:
    """The same with the trio stream API alone."""
    assert isinstance(stream, quic.QuicStream)
    try:
        request = b""
        while chunk := await stream.receive_some():
            request += chunk
        await stream.send_all(request)
        await stream.send_eof()
    finally:
        await stream.aclose()


async def request(conn: Connection, payload: bytes = PAYLOAD) -> bytes:
    stream = await conn.open_stream()
    try:
        await stream.send_all(payload, end_stream=True)
        return await stream.receive_all(1000)
    finally:
        await stream.aclose()


StreamHandler = Callable[[Any], Awaitable[None]]


async def _serve_with(handler: StreamHandler, accept_loop: bool, conn: Connection) -> None:
    if accept_loop:
        async with trio.open_nursery() as nursery:
            async for stream in conn:
                nursery.start_soon(handler, stream)
    else:
        await conn.serve_streams(handler)


@asynccontextmanager
async def connected(
    handler: StreamHandler = serve_request, *, accept_loop: bool = False
) -> AsyncIterator[Connection]:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(quic.serve, host=HOST),
                partial(_serve_with, handler, accept_loop),
                0,
                server_config(),
            )
            async with quic.connect(HOST, server.port, client_config()) as conn:
                for _ in range(3):  # the handshake's stragglers settle
                    assert await request(conn) == PAYLOAD
                await trio.testing.wait_all_tasks_blocked()
                yield conn
            nursery.cancel_scope.cancel()


async def _count(
    conn: Connection, requests: int, concurrency: int, call: Callable[[Connection], Any] = request
) -> _Steps:
    steps = _Steps()
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            assert await call(conn) == PAYLOAD

    trio.lowlevel.add_instrument(steps)
    try:
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
    finally:
        trio.lowlevel.remove_instrument(steps)
    return steps


async def test_a_request_costs_the_servers_stream_task_four_steps() -> None:
    """Spawned, it reads the request (data and FIN) in its first step, writes
    the reply and its FIN in the second, closes in the third and ends in the
    fourth; no acceptor task steps per stream."""
    async with connected() as conn:
        steps = await _count(conn, 10, 1)
    assert steps.spawned["serve_request"] == 10
    assert steps.steps["serve_request"] == 40
    assert steps.steps["_run_handler"] == 0  # serve_streams: no acceptor wakes up


async def test_the_trio_stream_api_alone_costs_six_steps_and_the_acceptor_one() -> None:
    """The classic form still works, at its known price (two reads, send_all,
    send_eof, aclose, the end; the acceptor's step per stream)."""
    async with connected(serve_request_classic, accept_loop=True) as conn:
        steps = await _count(conn, 10, 1)
    assert steps.steps["serve_request_classic"] == 60
    assert steps.steps["_run_handler"] == 10


async def test_a_sequential_request_costs_each_side_few_steps(
    mock_clock: trio.testing.MockClock,
) -> None:
    """One request at a time: the client's worker steps four times per
    request (open_stream, send_all, the reply's wake-up, aclose), the
    server's stream task four, and nothing else steps more than once a
    request (receive loops, timers)."""
    async with connected() as conn:
        steps = await _count(conn, 20, 1)
    assert steps.steps["worker"] == 20 * 4 + 1
    assert steps.steps["serve_request"] == 20 * 4
    # The two receive loops wake once per datagram; the flushes need no
    # timer task (a late ACK timer may add a step or two on a slow machine).
    assert steps.total() <= 20 * 4 * 2 + 20 * 2 + 10, steps.steps


async def test_concurrent_requests_cost_few_steps_each(mock_clock: trio.testing.MockClock) -> None:
    """64 in flight: per request, four steps of the client's worker, four of
    the server's stream task, and a fraction of one for the receive loops
    and the flushers together (a flusher step per pass it waits, a
    receive-loop step per batch of datagrams; they used to cost about one
    step per request on the server, waiting MAX_FLUSH_DEFERRALS passes)."""
    requests = 640
    async with connected() as conn:
        before = conn.statistics()
        steps = await _count(conn, requests, CONCURRENT)
        after = conn.statistics()
    # ... and the requests and the replies share packets (about 10 a packet).
    sent = after.packets_sent - before.packets_sent
    received = after.packets_received - before.packets_received
    assert sent <= requests // 5 and received <= requests // 5, (sent, received)
    assert steps.steps["worker"] == requests * 4 + CONCURRENT
    assert steps.steps["serve_request"] == requests * 4
    other = steps.total() - steps.steps["worker"] - steps.steps["serve_request"]
    print("OTHER", other, sent, received)
    assert other <= requests // 4, steps.steps  # about 100 here


async def _answer(request: bytes) -> bytes:
    return request


async def _answer_may_wait(request: bytes) -> bytes:
    if not request:  # never here; the await makes it a handler that may suspend
        await trio.lowlevel.checkpoint()
    return request


async def _serve_requests(conn: Connection, handler: Any = _answer_may_wait) -> None:
    await conn.serve_requests(handler, 1000)


async def _one_call(conn: Connection) -> bytes:
    return await conn.request(PAYLOAD, 1000)


async def test_request_and_serve_requests_cost_one_step_a_side(
    mock_clock: trio.testing.MockClock,
) -> None:
    """The whole exchange in one call on each side: the client's task steps
    once per request (the reply's wake-up), the server's per-stream task
    once (it reads, answers, writes and finishes in its first step)."""
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(quic.serve, host=HOST), _serve_requests, 0, server_config()
            )
            async with quic.connect(HOST, server.port, client_config()) as conn:
                for _ in range(3):
                    assert await _one_call(conn) == PAYLOAD
                await trio.testing.wait_all_tasks_blocked()
                sequential = await _count(conn, 20, 1, call=_one_call)
                concurrent = await _count(conn, 640, CONCURRENT, call=_one_call)
            nursery.cancel_scope.cancel()
    assert sequential.steps["worker"] == 20 + 1
    assert sequential.spawned["answer"] == 20
    assert sequential.steps["answer"] == 20
    assert concurrent.steps["worker"] == 640 + CONCURRENT
    assert concurrent.steps["answer"] == 640
    other = concurrent.total() - concurrent.steps["worker"] - concurrent.steps["answer"]
    assert other <= 640 // 4, concurrent.steps


async def _exchange_counts(handler: Any, requests: int, concurrency: int) -> tuple[_Steps, int]:
    """Task steps (both sides) and the server's datagrams sent for
    ``requests`` one-call requests, ``concurrency`` at a time."""
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(quic.serve, host=HOST),
                partial(_serve_requests, handler=handler),
                0,
                server_config(),
            )
            async with quic.connect(HOST, server.port, client_config()) as conn:
                for _ in range(3):
                    assert await _one_call(conn) == PAYLOAD
                await trio.testing.wait_all_tasks_blocked()
                before = conn.statistics().packets_received
                steps = await _count(conn, requests, concurrency, call=_one_call)
                replies = conn.statistics().packets_received - before
            nursery.cancel_scope.cancel()
    return steps, replies


async def test_serve_requests_answers_inline_when_the_handler_cannot_suspend(
    mock_clock: trio.testing.MockClock,
) -> None:
    """A handler with no await: each whole request is answered as its stream
    opens, in the server's processing of the datagram, with no task spawned
    and none woken for it; a lone reply leaves at once (one datagram a
    request, no flusher step), and 64 in flight still share datagrams."""
    sequential, replies = await _exchange_counts(_answer, 20, 1)
    assert sequential.spawned["answer"] == sequential.steps["answer"] == 0
    assert sequential.spawned["answer_now"] == 0
    assert sequential.steps["worker"] == 20 + 1
    assert replies == 20
    # Per request: the client's worker once, each receive loop once; the
    # timer tasks flush nothing (a late ACK timer may add a step or two).
    assert sequential.steps["_run"] <= 2, sequential.steps
    assert sequential.total() <= 20 * 3 + 1 + 2, sequential.steps
    concurrent, replies = await _exchange_counts(_answer, 640, CONCURRENT)
    assert concurrent.spawned["answer"] == concurrent.steps["answer"] == 0
    assert concurrent.steps["worker"] == 640 + CONCURRENT
    assert replies <= 640 // 5, replies
    other = concurrent.total() - concurrent.steps["worker"]
    assert other <= 640 // 4, concurrent.steps
