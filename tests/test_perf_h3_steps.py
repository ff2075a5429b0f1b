"""What an HTTP/3 GET costs the scheduler, with 64 in flight on one connection.

The client's ``get`` sends a bodiless request without a schedule point of
its own (waiting for the response is its one) and ``read`` takes a body that
already arrived whole in one; the server's request task sends a response
given whole (bytes, no trailers) without one, and a handler that cannot
suspend has no task at all: it is answered as the request arrives. So a GET
costs the client's task two steps and the server one or none; it used to
cost six and three (a step per ``send_headers``, per ``send_data``, per body
chunk, one for the body's end and one to open the stream). Counted with a
trio instrument, so a regression fails whatever the machine's load.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial

import pytest
import trio
import trio.testing
from quic_pair import client_config, server_config

import ghostwire.http3 as h3
from ghostwire.quic.connection import QuicConnection
from ghostwire.quic.stream_types import stream_is_client_initiated, stream_is_unidirectional

GETS = 640
CONCURRENT = 64
BODY = bytes(range(100))


class _Steps(trio.abc.Instrument):
    def __init__(self) -> None:
        self.steps: Counter[str] = Counter()

        self.spawned: Counter[str] = Counter()

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.spawned[task.name.rsplit(".", 1)[-1]] += 1

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps[task.name.rsplit(".", 1)[-1]] += 1


async def inline_handler(request: h3.Request) -> h3.Response:
    # No await: it cannot suspend, so the server answers without a task.
    return h3.Response(200, [("content-type", "application/octet-stream")], BODY)


async def task_handler(request: h3.Request) -> h3.Response:
    if request.method == "DELETE":  # never here: an await that never runs
        await trio.lowlevel.checkpoint()
    return h3.Response(200, [("content-type", "application/octet-stream")], BODY)


@pytest.mark.parametrize(("handler", "server_steps"), [(inline_handler, 0), (task_handler, 1)])
async def test_a_get_costs_the_client_two_task_steps_and_the_server_one_or_none(
    handler: Callable[[h3.Request], Awaitable[h3.Response]], server_steps: int
) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(h3.serve, handler, 0, server_config(alpn=["h3"]), host="127.0.0.1")
            )
            async with h3.Client(client_config(alpn=["h3"])) as client:
                url = f"https://localhost:{server.port}/small"

                async def get() -> None:
                    response = await client.get(url)
                    assert response.status == 200
                    assert await response.read() == BODY

                await get()  # connects
                await trio.testing.wait_all_tasks_blocked()
                remaining = GETS

                async def worker() -> None:
                    nonlocal remaining
                    while remaining > 0:
                        remaining -= 1
                        await get()

                steps = _Steps()
                trio.lowlevel.add_instrument(steps)
                try:
                    async with trio.open_nursery() as workers:
                        for _ in range(CONCURRENT):
                            workers.start_soon(worker)
                finally:
                    trio.lowlevel.remove_instrument(steps)
            nursery.cancel_scope.cancel()
    # Each worker also steps once to start and once to end.
    assert steps.steps["worker"] <= 2 * GETS + 2 * CONCURRENT, steps.steps
    assert steps.steps["_handle_request"] == server_steps * GETS, steps.steps
    assert steps.spawned["_handle_request"] == server_steps * GETS, steps.spawned


async def test_a_small_message_is_read_from_quic_in_one_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A GET (HEADERS and FIN) and its response (HEADERS, DATA and FIN) each
    come out of QUIC's receive buffer in one read: between DATA payloads the
    HTTP/3 layer reads as far as its receive window allows, and a read that
    took less than it asked for needs no second one to find the end."""
    reads: Counter[bool] = Counter()
    read_stream = QuicConnection.read_stream

    def counting(self: QuicConnection, stream_id: int, max_bytes: int | None = None) -> bytes:
        if stream_is_client_initiated(stream_id) and not stream_is_unidirectional(stream_id):
            reads[self.is_client] += 1
        return read_stream(self, stream_id, max_bytes)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(h3.serve, inline_handler, 0, server_config(alpn=["h3"]), host="127.0.0.1")
            )
            async with h3.Client(client_config(alpn=["h3"])) as client:
                url = f"https://localhost:{server.port}/small"
                response = await client.get(url)  # connects
                await response.read()
                monkeypatch.setattr(QuicConnection, "read_stream", counting)
                for _ in range(10):
                    response = await client.get(url)
                    assert await response.read() == BODY
                monkeypatch.undo()
            nursery.cancel_scope.cancel()
    assert reads == {True: 10, False: 10}, reads
