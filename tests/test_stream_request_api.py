"""The one-call forms for a request and its reply: ``send_all(data,
end_stream=True)``, ``receive_all(max_bytes)``, ``Connection.serve_streams``,
``Connection.serve_requests`` and ``Connection.request``, and the trio
contract they keep (a schedule point each, cancellation, errors)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing
from quic_pair import client_config, server_config
from test_perf_task_steps import HOST, PAYLOAD, connected, request, serve_request

import ghostwire.quic as quic
from ghostwire.quic.net.connection import Connection
from ghostwire.quic.net.exceptions import StreamTooLarge


@asynccontextmanager
async def serving(
    conn_handler: Callable[[Connection], Awaitable[object]],
) -> AsyncIterator[Connection]:
    """A server on HOST running ``conn_handler`` for each connection, and a
    client connection to it; the server stops on exit (10 s for it all)."""
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(quic.serve, host=HOST), conn_handler, 0, server_config()
            )
            async with quic.connect(HOST, server.port, client_config()) as conn:
                yield conn
            nursery.cancel_scope.cancel()


class Held:
    """A server whose stream handler, once ``holding``, hands each stream to
    the test (before, it answers the warm-up requests)."""

    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[Any](10)
        self.holding = False

    async def handler(self, stream: Any) -> None:
        if not self.holding:
            await serve_request(stream)
            return
        await self.send.send(stream)
        await trio.sleep_forever()


async def test_receive_all_refuses_a_longer_stream_and_loses_nothing() -> None:
    held = Held()
    async with connected(held.handler) as conn:
        held.holding = True
        stream = await conn.open_stream()
        await stream.send_all(b"x" * 300, end_stream=True)
        server_stream = await held.receive.receive()
        with pytest.raises(StreamTooLarge) as info:
            await server_stream.receive_all(100)
        assert info.value.limit == 100
        assert isinstance(info.value, ValueError)
        # What it read stays on the stream.
        data = b""
        while chunk := await server_stream.receive_some(64):
            data += chunk
        assert data == b"x" * 300
        await stream.aclose()


async def test_a_cancelled_receive_all_keeps_what_it_read() -> None:
    held = Held()
    async with connected(held.handler) as conn:
        held.holding = True
        stream = await conn.open_stream()
        await stream.send_all(b"first ")
        server_stream = await held.receive.receive()
        # "first " came with the frame that opened the stream: receive_all
        # takes it in its first step, then waits for the FIN.
        scope = trio.CancelScope()

        async def read() -> None:
            with scope:
                await server_stream.receive_all(100)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()
        assert scope.cancelled_caught
        assert server_stream._unread == b"first "
        await stream.send_all(b"second", end_stream=True)
        assert await server_stream.receive_all(100) == b"first second"
        assert await server_stream.receive_some() == b""


async def test_receive_all_is_a_checkpoint_and_raises_a_reset() -> None:
    held = Held()
    async with connected(held.handler) as conn:
        held.holding = True
        stream = await conn.open_stream()
        await stream.send_all(b"abc")
        server_stream = await held.receive.receive()
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await server_stream.receive_all(100)
        stream.reset(7)
        with pytest.raises(quic.StreamReset) as info:
            await server_stream.receive_all(100)
        assert info.value.error_code == 7
        with pytest.raises(ValueError):
            await server_stream.receive_all(-1)


async def test_send_all_with_end_stream_finishes_the_side() -> None:
    async with connected() as conn:
        stream = await conn.open_stream()
        await stream.send_all(PAYLOAD, end_stream=True)
        with pytest.raises(trio.ClosedResourceError):
            await stream.send_all(b"more")
        await stream.send_eof()  # idempotent, as after send_eof
        assert await stream.receive_all(1000) == PAYLOAD
        await stream.aclose()


async def test_a_cancelled_send_all_with_end_stream_sends_nothing() -> None:
    async with connected() as conn:
        stream = await conn.open_stream()
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await stream.send_all(b"never", end_stream=True)
        # Nothing was written: the stream can still send its request.
        await stream.send_all(PAYLOAD, end_stream=True)
        assert await stream.receive_all(1000) == PAYLOAD


async def test_send_all_with_end_stream_waits_for_room_then_ends() -> None:
    """More than the send buffer: written as acknowledgements make room, the
    FIN with the last piece (a bytearray: copied, not kept)."""
    big = bytearray(range(256)) * 1000  # 256 KB over a 64 KiB send buffer
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(quic.serve, host=HOST),
            partial(_serve, _echo),
            0,
            server_config(stream_send_buffer=64 << 10),
        )
        config = client_config(stream_send_buffer=64 << 10)
        async with quic.connect(HOST, server.port, config) as conn:
            stream = await conn.open_stream()
            async with trio.open_nursery() as inner:
                inner.start_soon(partial(stream.send_all, big, end_stream=True))
                reply = await stream.receive_all(len(big))
            assert reply == bytes(big)
        nursery.cancel_scope.cancel()


async def _serve(handler: Any, conn: Connection) -> None:
    await conn.serve_streams(handler)


async def _echo(stream: Any) -> None:
    async with stream:
        data = b""
        while chunk := await stream.receive_some():
            data += chunk
        await stream.send_all(data, end_stream=True)


async def test_serve_streams_raises_a_handlers_error_as_itself() -> None:
    seen: list[BaseException] = []

    async def failing(stream: Any) -> None:
        await stream.receive_all(1000)
        raise KeyError("boom")

    async def conn_handler(conn: Connection) -> None:
        try:
            await conn.serve_streams(failing)
        except BaseException as exc:
            seen.append(exc)
            raise

    async with serving(conn_handler) as conn:
        with pytest.raises(quic.ConnectionClosed) as info:
            await request(conn)
        assert info.value.error_code == Connection.handler_error_code
    assert len(seen) == 1 and isinstance(seen[0], KeyError)


async def test_serve_streams_inline_hook_answers_hands_over_and_raises() -> None:
    """``inline(stream)`` answers a stream itself (None), or names the task's
    function; an error it raises is raised by ``serve_streams`` as itself."""
    seen: list[Any] = []

    def inline(stream: Any) -> Callable[[], Awaitable[None]] | None:
        request = stream._receive_all_nowait(1000)
        if request == b"boom":
            raise KeyError("boom")
        if request is not None and request.startswith(b"now"):
            assert stream._finish_nowait(b"inline " + request)
            stream._close_now()
            return None
        seen.append(request)

        async def answer() -> None:  # with what inline read, if it was all here
            data = request if request is not None else await stream.receive_all(1000)
            await stream.send_all(b"task " + data, end_stream=True)
            await stream.aclose()

        return answer

    async def conn_handler(conn: Connection) -> None:
        with pytest.raises(TypeError):  # a handler or inline=, one of them
            await conn.serve_streams(_echo, inline=inline)
        try:
            await conn.serve_streams(inline=inline)
        except BaseException as exc:
            seen.append(exc)
            raise

    async with serving(conn_handler) as conn:
        assert await conn.request(b"now 1", 100) == b"inline now 1"
        assert await conn.request(b"later", 100) == b"task later"
        with pytest.raises(quic.ConnectionClosed):
            await conn.request(b"boom", 100)
    assert len(seen) == 2 and isinstance(seen[1], KeyError)


async def test_serve_streams_is_one_at_a_time_and_ends_with_the_connection() -> None:
    results: list[str] = []
    ended = trio.Event()

    async def probe(stream: Any) -> None:
        with pytest.raises(trio.BusyResourceError):
            await stream.connection.serve_streams(_echo)
        results.append("busy")
        await _echo(stream)

    async def conn_handler(conn: Connection) -> None:
        await conn.serve_streams(probe)
        results.append("ended")  # returned when the connection closed
        ended.set()

    async with serving(conn_handler) as conn:
        assert await request(conn) == PAYLOAD
        await conn.aclose()
        await ended.wait()
    assert results == ["busy", "ended"]


async def test_receive_all_after_an_oversized_one_still_refuses() -> None:
    held = Held()
    async with connected(held.handler) as conn:
        held.holding = True
        stream = await conn.open_stream()
        await stream.send_all(b"z" * 300, end_stream=True)
        server_stream = await held.receive.receive()
        for _ in range(2):  # the kept bytes alone are over the limit the second time
            with pytest.raises(StreamTooLarge):
                await server_stream.receive_all(100)
        assert await server_stream.receive_all(1000) == b"z" * 300


@asynccontextmanager
async def request_server(
    handler: Callable[[bytes], Awaitable[bytes]], **options: Any
) -> AsyncIterator[tuple[Connection, list[BaseException]]]:
    """A server answering with serve_requests(handler, 100, **options); the
    exception its connection handler ended with, if any, is recorded."""
    errors: list[BaseException] = []

    async def conn_handler(conn: Connection) -> None:
        try:
            await conn.serve_requests(handler, 100, **options)
        except BaseException as exc:
            errors.append(exc)
            raise

    async with serving(conn_handler) as conn:
        yield conn, errors


async def _upper(request: bytes) -> bytes:
    return request.upper()


RequestHandler = Callable[[bytes], Awaitable[bytes]]


def _may_wait(handler: RequestHandler, waits: bool) -> RequestHandler:
    """``handler``, or (``waits``) the same in a handler that may suspend:
    serve_requests answers the first kind inline, the second in a task."""
    if not waits:
        return handler

    async def waiting(request: bytes) -> bytes:
        if len(request) > 1 << 30:  # never: the await alone makes it one that may wait
            await trio.lowlevel.checkpoint()
        return await handler(request)

    return waiting


@pytest.mark.parametrize("waits", [False, True], ids=["inline", "task"])
async def test_request_and_serve_requests_answer_each_stream(waits: bool) -> None:
    async with request_server(_may_wait(_upper, waits)) as (conn, errors):
        assert await conn.request(b"abc", 100) == b"ABC"
        assert await conn.request(b"", 100) == b""
        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(conn.request, b"x%d" % i, 100)
        # The stream API talks to it too.
        assert await _classic_call(conn, b"def") == b"DEF"
    assert errors == []


async def _classic_call(conn: Connection, data: bytes) -> bytes:
    stream = await conn.open_stream()
    async with stream:
        await stream.send_all(data)
        await stream.send_eof()
        return await stream.receive_all(100)


async def test_an_oversized_request_is_reset_or_goes_to_large() -> None:
    async with request_server(_upper) as (conn, errors):
        with pytest.raises(quic.StreamReset) as info:
            await conn.request(b"y" * 101, 100)
        assert info.value.error_code == Connection.handler_error_code
        assert await conn.request(b"ok", 100) == b"OK"  # the others go on
    assert errors == []

    async def count(stream: Any) -> None:
        async with stream:
            size = 0
            while chunk := await stream.receive_some():
                size += len(chunk)
            await stream.send_all(b"%d" % size, end_stream=True)

    async with request_server(_upper, large=count) as (conn, errors):
        assert await conn.request(b"y" * 5000, 100) == b"5000"  # nothing lost
        assert await conn.request(b"ok", 100) == b"OK"
    assert errors == []


@pytest.mark.parametrize("waits", [False, True], ids=["inline", "task"])
async def test_a_reply_that_is_not_bytes_is_sent_too(waits: bool) -> None:
    async def upper_bytearray(request: bytes) -> bytes:
        return bytearray(request.upper())  # type: ignore[return-value]

    async with request_server(_may_wait(upper_bytearray, waits)) as (conn, errors):
        assert await conn.request(b"abc", 100) == b"ABC"
        assert await conn.request(b"def", 100) == b"DEF"
    assert errors == []


@pytest.mark.parametrize("waits", [False, True], ids=["inline", "task"])
async def test_a_failing_handler_resets_its_stream(waits: bool) -> None:
    async def quic_failure(request: bytes) -> bytes:
        raise quic.StreamReset("gave up", error_code=5)

    async with request_server(_may_wait(quic_failure, waits)) as (conn, errors):
        for _ in range(2):  # a QuicError fails that request alone
            with pytest.raises(quic.StreamReset):
                await conn.request(b"a", 100)
    assert errors == []

    async def bug(request: bytes) -> bytes:
        raise KeyError("bug")

    async with request_server(_may_wait(bug, waits)) as (conn, errors):
        with pytest.raises((quic.StreamReset, quic.ConnectionClosed)):
            await conn.request(b"a", 100)
        await conn.wait_closed()  # the handler's error closed the connection
    assert len(errors) == 1 and isinstance(errors[0], KeyError)


async def test_a_cancelled_request_stops_the_reply() -> None:
    release = trio.Event()

    async def slow(request: bytes) -> bytes:
        await release.wait()
        return request

    async with request_server(slow) as (conn, _):
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await conn.request(b"never sent", 100)
        scope = trio.CancelScope()

        async def abandoned() -> None:
            with scope:
                await conn.request(b"abandoned", 100)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(abandoned)
            await trio.testing.wait_all_tasks_blocked()  # it waits for the reply
            scope.cancel()
        assert scope.cancelled_caught
        assert not conn.core.streams.has_stream_data()
        assert len(conn._streams) == 0  # closed: the reply will be refused (STOP_SENDING)
        release.set()
        assert await conn.request(b"next", 100) == b"next"
