"""The HTTP/3 trio API over loopback: Client, serve, ASGI (Starlette), native handlers."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest
import trio
from h3_server import h3_server
from quic_pair import client_config, server_config
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse, StreamingResponse
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route

import ghostwire.http3 as h3


def h3_client(**kwargs: Any) -> h3.Client:
    return h3.Client(client_config(alpn=["h3"]), **kwargs)


async def echo_handler(request: h3.Request) -> h3.Response:
    body = await request.read()
    return h3.Response(
        200,
        [("content-type", "application/octet-stream"), ("x-method", request.method)],
        body,
        trailers=[("x-sha256", hashlib.sha256(body).hexdigest())],
    )


async def test_native_handler_round_trip_with_trailers() -> None:
    async with h3_server(echo_handler) as server, h3_client() as client:
        body = os.urandom(1_000_000)
        response = await client.post(f"https://localhost:{server.port}/echo", body)
        assert response.status == 200
        assert response.header("x-method") == "POST"
        assert await response.read() == body
        assert response.trailers == [("x-sha256", hashlib.sha256(body).hexdigest())]


async def test_request_trailers_and_streamed_request_body() -> None:
    seen: dict[str, Any] = {}

    async def handler(request: h3.Request) -> h3.Response:
        seen["body"] = await request.read()
        seen["trailers"] = request.trailers
        return h3.Response(204)

    async def body() -> AsyncIterator[bytes]:
        for i in range(10):
            yield f"part {i};".encode()

    async with h3_server(handler) as server, h3_client() as client:
        response = await client.request(
            "PUT", f"https://localhost:{server.port}/up", content=body(), trailers={"x-done": "yes"}
        )
        assert response.status == 204
        assert await response.read() == b""
    assert seen["body"] == b"".join(f"part {i};".encode() for i in range(10))
    assert seen["trailers"] == [("x-done", "yes")]


async def test_concurrent_requests_share_one_connection() -> None:
    async def handler(request: h3.Request) -> h3.Response:
        return h3.Response(200, content=request.path.encode())

    async with h3_server(handler) as server, h3_client() as client:
        results: dict[int, bytes] = {}

        async def one(i: int) -> None:
            response = await client.get(f"https://localhost:{server.port}/item/{i}")
            results[i] = await response.read()

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for i in range(150):  # more than the peer's 100 concurrent streams
                    nursery.start_soon(one, i)
        assert results == {i: f"/item/{i}".encode() for i in range(150)}
        assert server.connection_count == 1


async def test_slow_reader_gets_backpressure_not_buffering() -> None:
    size = 8 << 20

    async def handler(request: h3.Request) -> h3.Response:
        async def body() -> AsyncIterator[bytes]:
            chunk = b"z" * 65536
            for _ in range(size // len(chunk)):
                yield chunk

        return h3.Response(200, content=body())

    async with h3_server(handler) as server, h3_client() as client:
        response = await client.get(f"https://localhost:{server.port}/big")
        iterator = response.iter_bytes().__aiter__()
        first = await iterator.__anext__()
        await trio.testing.wait_all_tasks_blocked()
        # Without reading, the client holds at most its windows, not the body.
        assert first
        conn_stats = next(iter(server._endpoint.connections.values())).statistics()
        assert conn_stats.bytes_sent < size // 2
        total = len(first)
        async for chunk in iterator:
            total += len(chunk)
        assert total == size


async def test_handler_errors_become_500() -> None:
    async def broken(request: h3.Request) -> h3.Response:
        raise RuntimeError("boom")

    async with h3_server(broken) as server, h3_client() as client:
        response = await client.get(f"https://localhost:{server.port}/")
        assert response.status == 500
        assert b"internal server error" in await response.read()
        # The connection is still usable.
        again = await client.get(f"https://localhost:{server.port}/")
        assert again.status == 500


async def test_client_rejects_non_https_urls() -> None:
    async with h3_client() as client:
        with pytest.raises(ValueError, match="https"):
            await client.get("http://localhost/")


async def test_connection_failure_is_a_clear_error() -> None:
    from ghostwire.quic import CertificateError

    async with h3_server(echo_handler) as server:
        client = h3.Client(client_config(alpn=["h3"], server_name="wrong.example"))
        async with client:
            with pytest.raises(h3.HttpConnectionError, match=r"wrong\.example") as info:
                await client.get(f"https://localhost:{server.port}/")
            assert isinstance(info.value.__cause__, CertificateError)


# -- an existing ASGI framework --------------------------------------------------


async def _hello(request: StarletteRequest) -> JSONResponse:
    body = await request.body()
    return JSONResponse(
        {
            "path": request.url.path,
            "query": request.query_params.get("q"),
            "length": len(body),
            "http_version": request.scope["http_version"],
            "agent": request.headers.get("user-agent"),
        }
    )


async def _stream(request: StarletteRequest) -> StreamingResponse:
    async def numbers() -> AsyncIterator[bytes]:
        for i in range(100):
            yield f"{i}\n".encode()

    return StreamingResponse(numbers(), media_type="text/plain")


async def _trailers(scope: Any, receive: Any, send: Any) -> None:
    # A raw ASGI endpoint using the http.response.trailers extension.
    await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
    await send({"type": "http.response.body", "body": b"payload", "more_body": False})
    await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]})


def _starlette_app() -> Starlette:
    async def plain(request: StarletteRequest) -> StarletteResponse:
        return StarletteResponse("plain text", media_type="text/plain")

    return Starlette(
        routes=[
            Route("/hello", _hello, methods=["GET", "POST"]),
            Route("/stream", _stream),
            Route("/plain", plain),
        ]
    )


async def test_starlette_app_over_http3() -> None:
    app = _starlette_app()
    async with h3_server(app) as server, h3_client(headers={"user-agent": "gw-test"}) as client:
        base = f"https://localhost:{server.port}"
        response = await client.post(f"{base}/hello?q=42", b"x" * 300_000)
        assert response.status == 200
        assert response.header("content-type") == "application/json"
        assert (await response.read()) == (
            b'{"path":"/hello","query":"42","length":300000,"http_version":"3","agent":"gw-test"}'
        )
        response = await client.get(f"{base}/stream")
        assert await response.read() == b"".join(f"{i}\n".encode() for i in range(100))
        response = await client.get(f"{base}/missing")
        assert response.status == 404
        response = await client.get(f"{base}/plain")
        assert await response.read() == b"plain text"


async def test_asgi_trailers_extension() -> None:
    async with h3_server(_trailers) as server, h3_client() as client:
        response = await client.get(f"https://localhost:{server.port}/")
        assert await response.read() == b"payload"
        assert response.trailers == [("x-checksum", "abc")]


async def test_cancelled_response_reaches_the_server_handler() -> None:
    outcome: dict[str, Any] = {}
    handler_done = trio.Event()

    async def endless(request: h3.Request) -> h3.Response:
        async def body() -> AsyncIterator[bytes]:
            try:
                while True:
                    yield b"x" * 16384
            finally:
                handler_done.set()

        return h3.Response(200, content=body())

    async def app_with_outcome(request: h3.Request) -> h3.Response:
        try:
            return await endless(request)
        except BaseException as exc:  # pragma: no cover - recorded for the assertion
            outcome["error"] = exc
            raise

    async with h3_server(app_with_outcome) as server, h3_client() as client:
        response = await client.get(f"https://localhost:{server.port}/forever")
        iterator = response.iter_bytes().__aiter__()
        assert await iterator.__anext__()
        await response.aclose()  # RESET_STREAM + STOP_SENDING with H3_REQUEST_CANCELLED
        with trio.fail_after(5):
            await handler_done.wait()
        # The connection survives the cancelled request.
        again = await client.get(f"https://localhost:{server.port}/forever")
        assert again.status == 200
        await again.aclose()


async def test_stopping_the_server_lets_requests_in_progress_finish() -> None:
    release = trio.Event()
    started = trio.Event()

    async def slow(request: h3.Request) -> h3.Response:
        started.set()
        await release.wait()
        return h3.Response(200, content=b"finished")

    result: dict[str, bytes] = {}
    async with h3_client() as client, trio.open_nursery() as requests:
        async with trio.open_nursery() as serving:
            server = await serving.start(
                partial(h3.serve, slow, 0, server_config(alpn=["h3"]), host="127.0.0.1")
            )

            async def request() -> None:
                response = await client.get(f"https://localhost:{server.port}/")
                result["body"] = await response.read()

            requests.start_soon(request)
            with trio.fail_after(5):
                await started.wait()

            async def release_once_stopping() -> None:
                await trio.testing.wait_all_tasks_blocked()  # the stop is under way
                release.set()

            requests.start_soon(release_once_stopping)
            serving.cancel_scope.cancel()  # stop serving: GOAWAY, then a grace period
    assert result == {"body": b"finished"}


async def test_a_misbehaving_client_does_not_hurt_other_connections() -> None:
    import ghostwire.quic as quic

    async with h3_server(echo_handler) as server, h3_client() as client:
        url = f"https://localhost:{server.port}/"
        assert (await client.get(url)).status == 200
        # A raw QUIC client speaking broken HTTP/3: DATA before HEADERS on a
        # request stream is H3_FRAME_UNEXPECTED (RFC 9114 §4.1), a connection error.
        async with quic.connect("127.0.0.1", server.port, client_config(alpn=["h3"])) as raw:
            stream = await raw.open_stream()
            await stream.send_all(b"\x00\x03abc")
            with trio.fail_after(5):
                with pytest.raises(quic.ConnectionClosed) as info:
                    await stream.receive_some()
            assert info.value.error_code == h3.H3ErrorCode.H3_FRAME_UNEXPECTED
            assert info.value.by_peer
        response = await client.post(url, b"still served")
        assert await response.read() == b"still served"
