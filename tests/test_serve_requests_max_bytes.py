"""``serve_requests`` refuses a ``max_bytes`` that is not a positive int at
once, with a clear TypeError or ValueError, instead of serving with a limit
that refuses every request (or none)."""

from __future__ import annotations

from functools import partial

import pytest
import trio
from quic_pair import client_config, server_config
from test_perf_task_steps import HOST

import ghostwire.quic as quic


async def _echo(request: bytes) -> bytes:
    return request


@pytest.mark.parametrize(
    ("max_bytes", "error", "message"),
    [
        (0, ValueError, "positive"),
        (-5, ValueError, "got -5"),
        (1.5, TypeError, "not float"),
        ("100", TypeError, "not str"),
        (None, TypeError, "not NoneType"),
        (True, TypeError, "not a bool"),
    ],
)
async def test_serve_requests_rejects_a_bad_max_bytes(
    max_bytes: object, error: type[Exception], message: str
) -> None:
    outcome: list[BaseException] = []
    served = trio.Event()

    async def conn_handler(conn: quic.Connection) -> None:
        try:
            await conn.serve_requests(_echo, max_bytes)  # type: ignore[arg-type]
        except Exception as exc:
            outcome.append(exc)
        served.set()
        await trio.sleep_forever()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(quic.serve, host=HOST), conn_handler, 0, server_config()
            )
            async with quic.connect(HOST, server.port, client_config()):
                await served.wait()
            nursery.cancel_scope.cancel()
    assert len(outcome) == 1
    assert isinstance(outcome[0], error)
    assert "max_bytes" in str(outcome[0])
    assert message in str(outcome[0])


async def test_serve_requests_takes_a_max_bytes_of_one() -> None:
    """The smallest valid limit serves (a one-byte request)."""

    async def conn_handler(conn: quic.Connection) -> None:
        await conn.serve_requests(_echo, 1)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(quic.serve, host=HOST), conn_handler, 0, server_config()
            )
            async with quic.connect(HOST, server.port, client_config()) as conn:
                assert await conn.request(b"x", 10) == b"x"
                with pytest.raises(quic.StreamReset):
                    await conn.request(b"xy", 10)
            nursery.cancel_scope.cancel()
