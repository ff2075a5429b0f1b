"""The Client's per-request timeout on an open connection.

A bodiless request on an open connection is timed by the connection's
watchdog (one timer for every waiting request, in order of arrival) rather
than by a cancel scope of its own; a request whose deadline would come
before one already watched (the client's timeout was shortened) keeps a
scope. Either way it raises RequestTimeout and cancels its stream.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing
from h3_server import h3_server
from quic_pair import client_config

import ghostwire.http3 as h3

PROMPTLY = 10.0  # a guard against a hang, far above the timeouts used


async def handler(request: h3.Request) -> h3.Response:
    if request.path == "/never":
        await trio.sleep_forever()
    return h3.Response(200, content=b"ok")


def _waiting(client: h3.Client) -> int:
    (session,) = client._sessions.values()
    return len(session._deadlines)


async def test_a_request_on_an_open_connection_times_out_by_the_watchdog() -> None:
    with trio.fail_after(PROMPTLY):
        async with h3_server(handler) as server, h3.Client(client_config(alpn=["h3"])) as client:
            base = f"https://localhost:{server.port}"
            response = await client.get(f"{base}/")  # connects
            assert await response.read() == b"ok"
            client.timeout = 0.2
            with pytest.raises(h3.RequestTimeout) as info:
                await client.get(f"{base}/never")
            assert isinstance(info.value.__cause__, trio.TooSlowError)
            assert _waiting(client) == 0
            # The connection goes on; answered requests leave nothing watched.
            for _ in range(3):
                response = await client.get(f"{base}/")
                assert await response.read() == b"ok"
            assert _waiting(client) == 0


async def test_a_shortened_timeout_still_applies_while_longer_ones_wait() -> None:
    with trio.fail_after(PROMPTLY):
        async with h3_server(handler) as server, h3.Client(client_config(alpn=["h3"])) as client:
            base = f"https://localhost:{server.port}"
            response = await client.get(f"{base}/")
            assert await response.read() == b"ok"
            async with trio.open_nursery() as nursery:
                client.timeout = 60.0
                nursery.start_soon(client.get, f"{base}/never")  # watched, 60 s
                await trio.testing.wait_all_tasks_blocked()
                assert _waiting(client) == 1
                client.timeout = 0.2  # before the watched deadline: a scope of its own
                with pytest.raises(h3.RequestTimeout):
                    await client.get(f"{base}/never")
                nursery.cancel_scope.cancel()
            assert _waiting(client) == 0


async def test_no_timeout_watches_nothing() -> None:
    with trio.fail_after(PROMPTLY):
        async with h3_server(handler) as server:
            async with h3.Client(client_config(alpn=["h3"]), timeout=None) as client:
                base = f"https://localhost:{server.port}"
                for _ in range(3):
                    response = await client.get(f"{base}/")
                    assert await response.read() == b"ok"
                with trio.move_on_after(0.2) as scope:
                    await client.get(f"{base}/never")
                assert scope.cancelled_caught
                assert _waiting(client) == 0
