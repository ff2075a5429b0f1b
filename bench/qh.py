"""The qh3 side of the bench: the aioquic workloads (bench.aq) run on qh3.

qh3 keeps aioquic's API (``QuicConnectionProtocol``, ``QuicConfiguration``,
``H3Connection``, the same events) over a Rust core, so the aioquic code of
the bench runs on it unchanged: :func:`load` makes the ``aioquic`` module
names point at qh3's modules, then imports :mod:`bench.aq`. Only a qh3
worker process calls it (each process imports one stack).
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

# aioquic module -> qh3 module, for every module bench.aq imports.
_MODULES = {
    "aioquic": "qh3",
    "aioquic.asyncio": "qh3.asyncio",
    "aioquic.asyncio.client": "qh3.asyncio.client",
    "aioquic.asyncio.protocol": "qh3.asyncio.protocol",
    "aioquic.asyncio.server": "qh3.asyncio.server",
    "aioquic.h3": "qh3.h3",
    "aioquic.h3.connection": "qh3.h3.connection",
    "aioquic.h3.events": "qh3.h3.events",
    "aioquic.quic": "qh3.quic",
    "aioquic.quic.configuration": "qh3.quic.configuration",
    "aioquic.quic.connection": "qh3.quic.connection",
    "aioquic.quic.events": "qh3.quic.events",
    "aioquic.tls": "qh3.tls",
}


def load() -> ModuleType:
    """bench.aq, running on qh3."""
    if "bench.aq" in sys.modules:
        raise RuntimeError("bench.aq is already imported (on aioquic)")
    for name, target in _MODULES.items():
        sys.modules[name] = importlib.import_module(target)
    return importlib.import_module("bench.aq")
