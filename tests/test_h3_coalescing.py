"""Concurrent HTTP/3 requests share datagrams, and so do their responses.

With 64 GETs in flight on one connection, the requests the client's tasks
write in one scheduler pass, and the responses the server's request tasks
write, must leave together: a request or response that ends its stream may
go at once only when it is the connection's only one. These tests count
datagrams (never time) on a loopback connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

import trio
import trio.testing
from net_watch import connection_task_steps, recording_sends
from quic_pair import client_config, server_config

import ghostwire.http3 as h3
import ghostwire.quic as quic
from ghostwire.http3.net.server import serve_h3_connection
from ghostwire.http3.net.session import H3Session
from ghostwire.quic.net.connection import Connection
from ghostwire.quic.net.scheduling import PIPELINE_EVENTS

REQUESTS = 64
BODY = bytes(range(100))
# 64 requests (~40 bytes each on the wire) or responses (~150 bytes) fit in
# a few datagrams of 1,200 bytes, ACKs included; a datagram each would be 64.
MAX_DATAGRAMS = 24


async def handler(request: h3.Request) -> h3.Response:
    return h3.Response(200, [("content-type", "application/octet-stream")], BODY)


@asynccontextmanager
async def h3_server(
    app: Callable[[h3.Request], Awaitable[h3.Response]] = handler,
) -> AsyncIterator[tuple[quic.QuicServer, list[Connection]]]:
    served: list[Connection] = []

    async def on_connection(conn: Connection) -> None:
        served.append(conn)
        await serve_h3_connection(conn, app)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(quic.serve, host="127.0.0.1"),
            on_connection,
            0,
            server_config(alpn=["h3"]),
        )
        yield server, served
        nursery.cancel_scope.cancel()


async def get(client: h3.Client, url: str) -> bytes:
    response = await client.get(url)
    assert response.status == 200
    return await response.read()


async def get_burst(client: h3.Client, url: str) -> list[bytes]:
    """The bodies of ``REQUESTS`` GETs whose tasks all wake, and write, in
    one scheduler pass."""
    go = trio.Event()
    bodies: list[bytes] = []

    async def one_request() -> None:
        await go.wait()
        bodies.append(await get(client, url))

    async with trio.open_nursery() as nursery:
        for _ in range(REQUESTS):
            nursery.start_soon(one_request)
        await trio.testing.wait_all_tasks_blocked()
        go.set()
    return bodies


async def test_concurrent_requests_and_their_responses_share_datagrams() -> None:
    with trio.fail_after(20):
        async with h3_server() as (server, served), h3.Client(client_config(alpn=["h3"])) as client:
            url = f"https://localhost:{server.port}/small"
            assert await get(client, url) == BODY  # connects
            await trio.testing.wait_all_tasks_blocked()
            (server_conn,) = served
            server_sent = server_conn.statistics().packets_sent
            server_received = server_conn.statistics().packets_received

            bodies = await get_burst(client, url)
            requests = server_conn.statistics().packets_received - server_received
            responses = server_conn.statistics().packets_sent - server_sent

    assert bodies == [BODY] * REQUESTS
    assert 1 <= requests <= MAX_DATAGRAMS, requests
    assert 1 <= responses <= MAX_DATAGRAMS, responses


async def test_responses_to_a_batch_leave_before_the_whole_batch_is_answered() -> None:
    """64 GETs fit in a few datagrams: the server, answering them inline as
    it reads them, sends what it answered every PIPELINE_EVENTS stream
    events, and the client starts on those responses while it answers the
    rest."""
    answered: list[str] = []

    async def counting(request: h3.Request) -> h3.Response:  # no await: answered inline
        answered.append(request.path)
        return h3.Response(200, [("content-type", "application/octet-stream")], BODY)

    with trio.fail_after(20):
        async with (
            h3_server(counting) as (server, served),
            h3.Client(client_config(alpn=["h3"])) as client,
        ):
            url = f"https://localhost:{server.port}/small"
            assert await get(client, url) == BODY  # connects
            await trio.testing.wait_all_tasks_blocked()
            (server_conn,) = served
            endpoint = server_conn._endpoint
            answered_at_send: list[int] = []
            # (the warm-up's answer excluded)
            with recording_sends(endpoint, lambda _: answered_at_send.append(len(answered) - 1)):
                bodies = await get_burst(client, url)

    assert bodies == [BODY] * REQUESTS
    # The first responses left with the batch partly answered.
    assert 0 < answered_at_send[0] <= PIPELINE_EVENTS, answered_at_send
    assert sum(1 for n in answered_at_send if n < REQUESTS) >= 2, answered_at_send


async def test_a_lone_response_is_one_datagram() -> None:
    """Sequential GETs: each response (headers, body, FIN) leaves whole in
    one datagram."""
    with trio.fail_after(20):
        async with h3_server() as (server, served), h3.Client(client_config(alpn=["h3"])) as client:
            url = f"https://localhost:{server.port}/small"
            assert await get(client, url) == BODY
            await trio.testing.wait_all_tasks_blocked()
            (server_conn,) = served
            before = server_conn.statistics().packets_sent
            for _ in range(10):
                assert await get(client, url) == BODY
            await trio.testing.wait_all_tasks_blocked()
            sent = server_conn.statistics().packets_sent - before
    # Ten responses, and ACKs of the client's acknowledgments (every second
    # ack-eliciting packet, RFC 9000 §13.2.2); a response split over two
    # datagrams would make it at least 20.
    assert 10 <= sent < 20, sent


async def test_a_sequential_get_costs_the_client_one_datagram() -> None:
    """The response's field section references the server's dynamic table
    (from the second GET on), so the client owes a Section Acknowledgment
    (RFC 9204 §4.4.1): it rides with the next request, which its task writes
    as soon as it has read the response, instead of leaving in a datagram of
    its own ahead of it (which the server must receive too)."""
    with trio.fail_after(20):
        async with h3_server() as (server, served), h3.Client(client_config(alpn=["h3"])) as client:
            url = f"https://localhost:{server.port}/small"
            for _ in range(3):  # connects; the dynamic table fills
                assert await get(client, url) == BODY
            await trio.testing.wait_all_tasks_blocked()
            (server_conn,) = served
            before = server_conn.statistics().packets_received
            for _ in range(20):
                assert await get(client, url) == BODY
            received = server_conn.statistics().packets_received - before
    # 20 requests (an ACK alone may leave if a GET takes longer than the ACK
    # delay); two datagrams per GET made it 40.
    assert 20 <= received <= 22, received


async def test_held_acknowledgments_leave_without_another_request() -> None:
    """A client that sends nothing after its last response still acknowledges
    the response's field section: with the ACK it owes for the response
    (within max_ack_delay), or at once when none is owed."""
    sessions: set[H3Session] = set()
    acknowledged = trio.Event()

    async def on_connection(conn: Connection) -> None:
        await serve_h3_connection(conn, handler, sessions=sessions)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(quic.serve, host="127.0.0.1"), on_connection, 0, server_config(alpn=["h3"])
            )
            async with h3.Client(client_config(alpn=["h3"])) as client:
                url = f"https://localhost:{server.port}/small"
                for _ in range(3):  # connects; the dynamic table fills
                    assert await get(client, url) == BODY
                await trio.testing.wait_all_tasks_blocked()
                (session,) = sessions
                encoder = session.h3.encoder
                feed_decoder = encoder.feed_decoder

                def recording(data: bytes) -> None:
                    feed_decoder(data)
                    acknowledged.set()

                encoder.feed_decoder = recording  # type: ignore[method-assign]
                assert await get(client, url) == BODY  # references the dynamic table
                # No further request: the ACK the client owes takes them.
                await acknowledged.wait()
            nursery.cancel_scope.cancel()


async def test_a_lone_response_answered_inline_leaves_from_the_receive_loop() -> None:
    """A handler that cannot suspend is answered while the request's datagram
    is processed; with no other request, its response is sent at the end of
    that drain, in the receive loop's step, not a scheduler pass later by the
    connection's flusher (which costs the server a pass before the reply)."""
    with trio.fail_after(20):
        async with h3_server() as (server, served), h3.Client(client_config(alpn=["h3"])) as client:
            url = f"https://localhost:{server.port}/small"
            assert await get(client, url) == BODY
            await trio.testing.wait_all_tasks_blocked()
            (server_conn,) = served
            endpoint = server_conn._endpoint
            senders: list[str] = []

            def note_sender(_: object) -> None:
                senders.append(trio.lowlevel.current_task().name.rsplit(".", 1)[-1])

            with recording_sends(endpoint, note_sender):
                for _ in range(10):
                    assert await get(client, url) == BODY
    # Ten responses; an ACK of the client's now and then may leave otherwise.
    assert senders.count("_receive_loop") >= 10, senders


async def test_a_lone_response_answered_inline_does_not_wake_the_flusher() -> None:
    """The response is written while the request's datagram is processed and
    sent when that processing ends (its ``flush_soon`` is settled then): the
    server's connection task (its flusher and timer) is not woken for it,
    which would cost the server a scheduler pass and a task step per GET."""
    with trio.fail_after(20):
        async with h3_server() as (server, served), h3.Client(client_config(alpn=["h3"])) as client:
            url = f"https://localhost:{server.port}/small"
            assert await get(client, url) == BODY
            await trio.testing.wait_all_tasks_blocked()
            (server_conn,) = served
            with connection_task_steps(server_conn) as steps:
                for _ in range(20):
                    assert await get(client, url) == BODY
    # A timer wake-up or two (an early deadline, a delayed ACK) may come; one
    # step per GET made it 20.
    assert len(steps) <= 5, steps
