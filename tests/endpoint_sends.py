"""Watching what an endpoint sends (test helper)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

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
