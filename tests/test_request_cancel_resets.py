"""A request() cancelled while its data is being sent resets the stream: the
server never handles a truncated request (a FIN after part of it)."""

from __future__ import annotations

from functools import partial

import trio
import trio.lowlevel
import trio.testing
from quic_pair import client_config, server_config
from test_perf_task_steps import HOST

import ghostwire.quic as quic


async def test_cancelled_request_midsend_is_not_delivered_truncated() -> None:
    seen: list[int] = []
    got = trio.Event()

    async def handler(request: bytes) -> bytes:
        seen.append(len(request))
        got.set()
        return b"ok"

    async def conn_handler(conn: quic.Connection) -> None:
        await conn.serve_requests(handler, 1 << 20)

    big = b"z" * (256 << 10)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(quic.serve, host=HOST), conn_handler, 0, server_config()
            )
            async with quic.connect(
                HOST, server.port, client_config(stream_send_buffer=16 << 10)
            ) as conn:
                scope = trio.CancelScope()

                async def call() -> None:
                    with scope:
                        await conn.request(big, 1 << 20)

                async with trio.open_nursery() as inner:
                    inner.start_soon(call)
                    while True:
                        await trio.lowlevel.checkpoint()
                        ids = list(conn._streams)
                        if ids and conn.core.streams.statistics(ids[0]).bytes_sent > 20000:
                            break
                    scope.cancel()
                with trio.move_on_after(2):
                    await got.wait()
                assert seen == [], (
                    f"server handled a truncated request of {seen} bytes (sent {len(big)})"
                )
            nursery.cancel_scope.cancel()
