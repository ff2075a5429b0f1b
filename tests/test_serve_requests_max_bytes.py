"""``serve_requests`` refuses a ``max_bytes`` that is not a positive int at
once, with a clear TypeError or ValueError, instead of serving with a limit
that refuses every request (or none)."""

from __future__ import annotations

import pytest
import trio
from test_stream_request_api import serving

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

    async with serving(conn_handler):
        await served.wait()
    assert len(outcome) == 1
    assert isinstance(outcome[0], error)
    assert "max_bytes" in str(outcome[0])
    assert message in str(outcome[0])


async def test_serve_requests_takes_a_max_bytes_of_one() -> None:
    """The smallest valid limit serves (a one-byte request)."""

    async def conn_handler(conn: quic.Connection) -> None:
        await conn.serve_requests(_echo, 1)

    async with serving(conn_handler) as conn:
        assert await conn.request(b"x", 10) == b"x"
        with pytest.raises(quic.StreamReset):
            await conn.request(b"xy", 10)
