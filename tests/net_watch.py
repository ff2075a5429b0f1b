"""Watching what an endpoint sends and when a connection's own tasks run (test helpers)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import trio

from ghostwire.quic.net.endpoint import Endpoint


@contextmanager
def recording_sends(
    endpoint: Endpoint, note: Callable[[list[tuple[bytes, Any]]], object]
) -> Iterator[None]:
    """Call ``note(datagrams)`` before each of ``endpoint``'s sends, inside the block."""
    send_datagrams = endpoint.send_datagrams

    def recording(datagrams: list[tuple[bytes, Any]]) -> None:
        note(datagrams)
        send_datagrams(datagrams)

    endpoint.send_datagrams = recording  # type: ignore[method-assign]
    try:
        yield
    finally:
        endpoint.send_datagrams = send_datagrams  # type: ignore[method-assign]


@contextmanager
def connection_task_steps(conn: object) -> Iterator[list[str]]:
    """The names of the steps taken by ``conn``'s own tasks (its flusher and
    timer, methods of the connection object) inside the block."""
    steps: list[str] = []

    class Steps(trio.abc.Instrument):
        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            frame = getattr(task.coro, "cr_frame", None)
            if frame is not None and frame.f_locals.get("self") is conn:
                steps.append(task.name)

    instrument = Steps()
    trio.lowlevel.add_instrument(instrument)
    try:
        yield steps
    finally:
        trio.lowlevel.remove_instrument(instrument)
