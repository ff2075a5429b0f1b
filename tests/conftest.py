"""Fixtures shared by the test modules."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def peer() -> Iterator[Any]:
    """An asyncio loop in a thread running aioquic (``aioquic_peer.PeerLoop``);
    skips the test where aioquic is not installed."""
    pytest.importorskip("aioquic")
    from aioquic_peer import PeerLoop

    # Both stacks share the GIL; a shorter switch interval makes the hand-over
    # after each sendto/recvfrom quicker (5 ms by default), which roughly
    # halves the run time of the chattier tests.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    loop = PeerLoop()
    try:
        yield loop
    finally:
        loop.close()
        sys.setswitchinterval(interval)
