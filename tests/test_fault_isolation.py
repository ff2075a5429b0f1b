"""One connection's failure never reaches another.

A fault (a bug, not a protocol error) injected into one connection of a live
loopback server, in its receive path or its timer, must close that connection
alone with INTERNAL_ERROR, be logged once with its traceback, and leave the
endpoint serving everyone else: here another connection moves a megabyte
byte-exact meanwhile, and a new connection is accepted afterwards.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from quic_pair import client_config, server_config

import ghostwire.quic as quic
from ghostwire.quic.errors import TransportErrorCode

HOST = "127.0.0.1"
IDLE = 60.0
PAYLOAD = os.urandom(1_000_000)


class InjectedFault(Exception):
    """The bug we plant."""


async def _echo(stream: Any) -> None:
    async with stream:
        while data := await stream.receive_some():
            await stream.send_all(data)


@asynccontextmanager
async def echo_server(
    by_name: dict[bytes, quic.Connection],
) -> AsyncIterator[quic.QuicServer]:
    """An echo server that files each connection under the first bytes it receives."""

    async def handler(conn: quic.Connection) -> None:
        async with trio.open_nursery() as nursery:
            first = True
            async for stream in conn:
                if first:
                    name = await stream.receive_some(1)
                    by_name[name] = conn
                    first = False
                nursery.start_soon(_echo, stream)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: quic.serve(
                handler, 0, server_config(idle_timeout=IDLE), host=HOST, task_status=task_status
            )
        )
        yield server
        nursery.cancel_scope.cancel()


async def _open(conn: quic.Connection, name: bytes) -> quic.QuicStream:
    """A stream the server filed under ``name``, checked with one echo."""
    stream = await conn.open_stream()
    await stream.send_all(name)
    await stream.send_all(b"?")
    assert await stream.receive_some(1) == b"?"
    return stream


async def _transfer(stream: quic.QuicStream) -> bytes:
    received = bytearray()
    async with trio.open_nursery() as nursery:

        async def send() -> None:
            await stream.send_all(PAYLOAD)
            await stream.send_eof()

        nursery.start_soon(send)
        while chunk := await stream.receive_some():
            received += chunk
    return bytes(received)


def _plant(core: Any, where: str) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise InjectedFault(f"planted in {where}")

    setattr(core, "receive_datagram" if where == "receive" else "handle_timer", broken)
    if where == "timer":
        # A timer due at once: handle_timer runs when a timer is due (a flush
        # alone does not run it), and the next flush re-arms the timer task.
        core.keep_alive_deadline = 0.0


@pytest.mark.parametrize("where", ["receive", "timer"])
async def test_a_fault_closes_one_connection_and_spares_the_others(
    where: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="ghostwire.quic")
    servers_side: dict[bytes, quic.Connection] = {}
    config = client_config(idle_timeout=IDLE)
    with trio.fail_after(30):
        async with echo_server(servers_side) as server:
            async with (
                quic.connect(HOST, server.port, config) as victim,
                quic.connect(HOST, server.port, config) as bystander,
            ):
                doomed = await _open(victim, b"v")
                healthy = await _open(bystander, b"b")
                _plant(servers_side[b"v"].core, where)
                async with trio.open_nursery() as nursery:
                    result: dict[str, bytes] = {}

                    async def bystander_transfer() -> None:
                        result["echo"] = await _transfer(healthy)

                    nursery.start_soon(bystander_transfer)
                    # More input for the victim: its receive path (or its next
                    # acknowledgement timer) now raises.
                    with pytest.raises(quic.ConnectionClosed) as info:
                        for _ in range(1000):
                            await doomed.send_all(b"y" * 1000)
                        await doomed.receive_some()
                echo = result["echo"]
                assert hashlib.sha256(echo).digest() == hashlib.sha256(PAYLOAD).digest()
                assert len(echo) == len(PAYLOAD)
            # The endpoint still takes new connections.
            async with quic.connect(HOST, server.port, config) as late:
                await _open(late, b"l")
    closed = info.value
    assert closed.by_peer and not closed.is_application
    assert closed.error_code == TransportErrorCode.INTERNAL_ERROR
    faults = [r for r in caplog.records if r.exc_info and r.exc_info[0] is InjectedFault]
    assert len(faults) == 1, "logged once, with its traceback"


async def test_an_event_hook_fault_is_isolated_too() -> None:
    """A layer on top (like HTTP/3) whose event hook raises fails only its connection."""
    servers_side: dict[bytes, quic.Connection] = {}
    config = client_config(idle_timeout=IDLE)
    with trio.fail_after(30):
        async with echo_server(servers_side) as server:
            async with quic.connect(HOST, server.port, config) as victim:
                doomed = await _open(victim, b"v")

                armed = False

                def hook(event: object) -> None:
                    if armed:
                        raise InjectedFault("in a hook")

                servers_side[b"v"].divert_events(hook)
                armed = True
                with pytest.raises(quic.ConnectionClosed) as info:
                    await doomed.send_all(b"more")
                    await doomed.receive_some()
                assert info.value.error_code == TransportErrorCode.INTERNAL_ERROR
            async with quic.connect(HOST, server.port, config) as other:
                await _open(other, b"o")
