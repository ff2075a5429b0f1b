"""The RPC transport's one-shot reads and writes (ghostwire/rpc/transport.py):
a whole request is read, and its reply queued, without a schedule point, and
every case the core cannot finish at once falls back to the stream's API."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing
from net_watch import connection_task_steps
from test_rpc_support import connected, rpc_server_config

import ghostwire.rpc as rpc
from ghostwire.rpc.framing import HEADERS, MESSAGE, encode_frame
from ghostwire.rpc.transport import FrameReader, send_nowait

svc = rpc.Service("t")


@svc.call
async def echo(ctx: rpc.Context, body: bytes) -> bytes:
    return body


@svc.call
async def echo_or_wait(ctx: rpc.Context, body: bytes, wait: bool = False) -> bytes:
    """May suspend (so it runs in a task), but does not unless asked."""
    if wait:
        await trio.lowlevel.checkpoint()
    return body


class _Steps(trio.abc.Instrument):
    """Counts the steps (resumptions) of the server's per-call tasks spawned
    and ended while it is installed (a task begun before would show only its
    last steps; one still running, such as the client's health watch, which
    may reach the server after the warm-up call, is not one of the calls)."""

    def __init__(self) -> None:
        self._running: dict[Any, int] = {}
        self.steps: dict[Any, int] = {}

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith("serve_call"):  # the task a call runs in
            self._running[task] = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task in self._running:
            self._running[task] += 1

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        if task in self._running:
            self.steps[task] = self._running.pop(task)


async def _count_call_tasks(method: str) -> _Steps:
    """The steps of the server's call tasks for five calls to ``method``."""
    steps = _Steps()
    async with connected([svc]) as (_, client):
        # The first call waits for the connection and the client's rpc.describe,
        # whose server task (on a connection just made) is not counted.
        assert await client.call(method, b"warm-up") == b"warm-up"
        trio.lowlevel.add_instrument(steps)
        try:
            for _ in range(5):
                assert await client.call(method, b"x" * 100) == b"x" * 100
        finally:
            trio.lowlevel.remove_instrument(steps)
    return steps


async def test_a_whole_request_costs_its_task_one_step() -> None:
    """Spawned, it reads the request, runs the handler and queues the reply
    and FIN in its first step, and closes the stream, both of whose
    directions ended, without ``aclose`` (it was two steps with ``aclose``,
    six before that: two reads, send_all, send_eof, aclose)."""
    steps = await _count_call_tasks("t.echo_or_wait")
    assert len(steps.steps) == 5
    assert set(steps.steps.values()) == {1}


async def test_a_whole_request_to_a_handler_that_cannot_wait_costs_no_task() -> None:
    """It is read, run and answered as its stream opens (Server._take_call)."""
    steps = await _count_call_tasks("t.echo")
    assert steps.steps == {}


async def test_a_call_answered_inline_does_not_wake_the_servers_flusher() -> None:
    """The reply is queued while the request's datagram is processed, and its
    flush is made as that processing ends, without waking the connection's
    flusher (its task): that would cost the server a scheduler pass and a
    task step per call."""
    async with connected([svc]) as (server, client):
        assert await client.call("t.echo", b"warm-up") == b"warm-up"
        await trio.testing.wait_all_tasks_blocked()  # the client's own calls too
        (server_conn,) = server._connections
        with connection_task_steps(server_conn) as steps:
            for _ in range(20):
                assert await client.call("t.echo", b"x" * 100) == b"x" * 100
    # A timer wake-up or two (an early deadline, a delayed ACK) may come; one
    # step per call made it 20.
    assert len(steps) <= 5, steps


class _TaskSteps(trio.abc.Instrument):
    """Counts the steps of one task."""

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.steps += 1


async def test_a_call_costs_the_calling_task_one_step() -> None:
    """The client opens the stream and queues request and FIN without a
    schedule point, wakes once when the reply is here, reads it whole and
    closes the stream without ``aclose`` (it was three steps: after
    ``open_stream``, the reply and ``aclose``)."""
    async with connected([svc]) as (_, client):
        assert await client.call("t.echo", b"warm-up") == b"warm-up"
        steps = _TaskSteps(trio.lowlevel.current_task())
        trio.lowlevel.add_instrument(steps)
        try:
            for _ in range(5):
                assert await client.call("t.echo", b"x" * 100) == b"x" * 100
        finally:
            trio.lowlevel.remove_instrument(steps)
    assert steps.steps == 5


async def test_a_call_at_the_stream_limit_waits_for_credit() -> None:
    """With the server's stream limit used up, a call waits in open_stream
    (the fallback when no stream can be opened at once) and runs when a
    stream is given back."""
    config = rpc_server_config(max_streams_bidi=2)
    async with connected([svc], config=config) as (_, client):
        assert await client.call("t.echo", b"warm-up") == b"warm-up"
        results: list[bytes] = []

        async def call(i: int) -> None:
            results.append(await client.call("t.echo", bytes([i]) * 10))

        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(call, i)
        assert sorted(results) == sorted(bytes([i]) * 10 for i in range(8))


async def test_a_reply_larger_than_the_send_buffer_goes_through_send_all() -> None:
    """send_nowait refuses what the stream's send buffer has no room for; the
    reply then waits for acknowledgements under flow control as before."""
    big = bytes(range(256)) * 1200  # 300 KiB, over a 64 KiB send buffer
    config = rpc_server_config(stream_send_buffer=64 << 10)
    async with connected([svc], config=config) as (_, client):
        assert await client.call("t.echo", big) == big
        assert await client.call("t.echo", b"small") == b"small"


async def test_frames_from_a_stream_that_is_not_quic() -> None:
    """The eager read falls back to receive_some on any trio stream, and
    send_nowait declines (the caller uses send_all)."""
    left, right = trio.testing.memory_stream_pair()
    reader = FrameReader(right, 1 << 20)
    data = encode_frame(HEADERS, b"h") + encode_frame(MESSAGE, b"m")
    assert not send_nowait(left, data)
    await left.send_all(data)
    await left.send_eof()
    assert await reader.receive_frame_eager() == (HEADERS, b"h")
    assert await reader.receive_frame_eager() == (MESSAGE, b"m")
    assert await reader.receive_frame_eager() is None
    assert reader.at_eof
