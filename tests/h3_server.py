"""A ghostwire HTTP/3 server on loopback for the tests (``async with h3_server(app)``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio
from quic_pair import server_config

import ghostwire.http3 as h3
from ghostwire.quic import QuicServer


@asynccontextmanager
async def h3_server(app: Any) -> AsyncIterator[QuicServer]:
    """``h3.serve(app)`` on 127.0.0.1 and a free port, until the block ends."""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(h3.serve, app, 0, server_config(alpn=["h3"]), host="127.0.0.1")
        )
        yield server
        nursery.cancel_scope.cancel()
