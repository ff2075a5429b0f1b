"""Native handlers that cannot suspend are answered without a task.

``serve`` runs such a handler (an ``async def`` with no ``await``, ``async
for`` or ``async with``) as the request's headers arrive, and sends a
response given whole at once. Whatever that cannot finish -- a streamed or
large body, trailers, a handler that raised -- goes on in the request's task,
as for any handler: these tests check each ends as it did there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import trio
from h3_server import h3_server
from quic_pair import client_config

import ghostwire.http3 as h3

BIG = bytes(range(256)) * 4096  # 1 MiB: more than the send buffer (256 KiB)


async def _get(handler: Callable[..., Any], path: str = "/") -> tuple[int, bytes, list[Any]]:
    with trio.fail_after(20):
        async with h3_server(handler) as server:
            async with h3.Client(client_config(alpn=["h3"])) as client:
                response = await client.get(f"https://localhost:{server.port}{path}")
                body = await response.read()
                return response.status, body, response.trailers


async def test_a_body_larger_than_the_send_buffer_is_sent_by_a_task() -> None:
    ends: list[h3.ResponseEnd] = []

    async def big(request: h3.Request) -> h3.Response:
        return h3.Response(200, content=BIG, on_end=ends.append)

    status, body, _ = await _get(big)
    assert (status, body) == (200, BIG)
    assert ends == [h3.ResponseEnd(complete=True, body_bytes=len(BIG))]


async def test_a_streamed_body_and_trailers_from_a_handler_that_cannot_suspend() -> None:
    async def parts() -> AsyncIterator[bytes]:
        yield b"one "
        yield b"two"

    async def streamed(request: h3.Request) -> h3.Response:
        return h3.Response(200, content=parts(), trailers=[("x-done", "yes")])

    async def with_trailers(request: h3.Request) -> h3.Response:
        return h3.Response(200, content=b"whole", trailers=[("x-done", "yes")])

    assert await _get(streamed) == (200, b"one two", [("x-done", "yes")])
    assert await _get(with_trailers) == (200, b"whole", [("x-done", "yes")])


async def test_a_response_given_whole_reports_its_end_once() -> None:
    ends: list[h3.ResponseEnd] = []

    async def small(request: h3.Request) -> h3.Response:
        return h3.Response(200, [("x-path", request.path)], b"hello", on_end=ends.append)

    status, body, _ = await _get(small, "/a?b=c")
    assert (status, body) == (200, b"hello")
    assert ends == [h3.ResponseEnd(complete=True, body_bytes=5)]


async def _get_or_reset(client: h3.Client, url: str) -> bytes | h3.StreamReset:
    try:
        response = await client.get(url)
        return await response.read()
    except h3.StreamReset as exc:
        return exc


async def test_invalid_response_headers_reset_the_stream() -> None:
    async def invalid(request: h3.Request) -> h3.Response:
        return h3.Response(200, [("bad name", "x")], b"body")

    with trio.fail_after(20):
        async with h3_server(invalid) as server:
            async with h3.Client(client_config(alpn=["h3"])) as client:
                outcome = await _get_or_reset(client, f"https://localhost:{server.port}/")
    assert isinstance(outcome, h3.StreamReset)
    assert outcome.error_code == h3.H3ErrorCode.H3_INTERNAL_ERROR


async def test_an_on_end_that_raises_is_logged_and_serving_goes_on() -> None:
    calls = 0

    def on_end(end: h3.ResponseEnd) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the access log failed")

    async def handler(request: h3.Request) -> h3.Response:
        return h3.Response(200, content=b"x", on_end=on_end)

    with trio.fail_after(20):
        async with h3_server(handler) as server:
            async with h3.Client(client_config(alpn=["h3"])) as client:
                url = f"https://localhost:{server.port}/"
                # The stream is reset after the fact (H3_INTERNAL_ERROR), as
                # when the handler's task fails: the response may arrive
                # whole first.
                first = await _get_or_reset(client, url)
                assert first == b"x" or isinstance(first, h3.StreamReset)
                assert await _get_or_reset(client, url) == b"x"
    assert calls == 2
