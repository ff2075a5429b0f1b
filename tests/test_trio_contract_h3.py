"""Errors users can catch, across ghostwire.quic and ghostwire.http3.

One root (GhostwireError), one name for one thing (a reset stream is
``StreamReset`` in both layers, with its ``error_code``), one family for a
failed ``h3.Client`` request (``HttpError``), and no ExceptionGroup out of a
call that ran no user code.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import AsyncIterator

import pytest
import trio
from h3_server import h3_server
from quic_pair import client_config, server_config
from test_trio_contract import refusing_udp_port

import ghostwire.http3 as h3
import ghostwire.http3.events as h3_events
import ghostwire.quic as quic
from ghostwire.errors import GhostwireError
from ghostwire.http3.net.session import HttpStreamError

HOST = "127.0.0.1"
PROMPTLY = 5.0


def test_a_reset_stream_has_one_name_everywhere() -> None:
    assert h3.StreamReset is quic.StreamReset
    assert h3.StreamStopped is quic.StreamStopped
    assert issubclass(HttpStreamError, h3.StreamReset)
    assert issubclass(HttpStreamError, h3.HttpError)
    assert issubclass(HttpStreamError, trio.BrokenResourceError)
    for family in (h3.HttpError, h3.H3Error, quic.QuicError, quic.StreamReset):
        assert issubclass(family, GhostwireError)
    assert issubclass(h3.HttpConnectionError, ConnectionError)
    assert issubclass(h3.RequestTimeout, TimeoutError)
    # The sans-IO events have their own names; the old ones still import.
    assert h3_events.StreamReset is h3.StreamAborted
    assert h3_events.StreamStopped is h3.SendingStopped
    assert not issubclass(h3.StreamAborted, BaseException)


def _client(timeout: float | None = 30.0) -> h3.Client:
    return h3.Client(client_config(alpn=["h3"]), timeout=timeout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="IP_RECVERR is Linux's")
async def test_client_nothing_listening_is_a_connection_error_at_once() -> None:
    with refusing_udp_port(socket.AF_INET, HOST) as port:
        async with _client() as client:
            with trio.fail_after(PROMPTLY):
                with pytest.raises(h3.HttpConnectionError) as info:
                    await client.get(f"https://{HOST}:{port}/")
    assert isinstance(info.value.__cause__, quic.ConnectionRefused)
    assert isinstance(info.value, h3.HttpError)


async def test_client_timeout_is_request_timeout() -> None:
    async def never(request: h3.Request) -> h3.Response:
        await trio.sleep_forever()
        raise AssertionError  # pragma: no cover

    async with h3_server(never) as server, _client(timeout=0.3) as client:
        with pytest.raises(h3.RequestTimeout) as info:
            await client.get(f"https://localhost:{server.port}/")
    assert isinstance(info.value, TimeoutError)


async def test_client_reset_response_is_stream_reset_with_its_code() -> None:
    got_headers = trio.Event()

    async def broken_body() -> AsyncIterator[bytes]:
        yield b"first part"
        await got_headers.wait()
        raise RuntimeError("the handler failed half way")

    async def handler(request: h3.Request) -> h3.Response:
        return h3.Response(200, content=broken_body())

    async with h3_server(handler) as server, _client() as client:
        response = await client.get(f"https://localhost:{server.port}/")
        assert response.status == 200
        got_headers.set()
        with trio.fail_after(PROMPTLY):
            with pytest.raises(h3.StreamReset) as info:
                await response.read()
    assert isinstance(info.value, h3.HttpError)
    assert info.value.error_code == h3.H3ErrorCode.H3_INTERNAL_ERROR


async def test_client_block_lets_the_callers_exception_out_as_itself() -> None:
    with pytest.raises(KeyError):
        async with _client():
            raise KeyError("the caller's own")


async def test_a_connection_lost_mid_body_is_an_http_error() -> None:
    started = trio.Event()

    async def endless() -> AsyncIterator[bytes]:
        started.set()
        while True:
            yield b"x" * 1000
            await trio.sleep(0.01)

    async def handler(request: h3.Request) -> h3.Response:
        return h3.Response(200, content=endless())

    scope = trio.CancelScope()

    async def run(*, task_status: trio.TaskStatus[quic.QuicServer]) -> None:
        with scope:
            await h3.serve(
                handler,
                0,
                server_config(alpn=["h3"]),
                host=HOST,
                shutdown_timeout=0.0,
                task_status=task_status,
            )

    async with trio.open_nursery() as nursery, _client() as client:
        server = await nursery.start(run)
        response = await client.get(f"https://localhost:{server.port}/")
        await started.wait()
        scope.cancel()
        with trio.fail_after(PROMPTLY):
            with pytest.raises(h3.HttpError):
                await response.read()
