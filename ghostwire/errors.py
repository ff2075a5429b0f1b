"""The root of every exception ghostwire raises on purpose.

Each layer keeps its own family under this one base, so a user catches
:class:`GhostwireError` for "anything ghostwire reported" and a narrower class
for one thing:

* ``ghostwire.quic``: :class:`~ghostwire.quic.QuicError` (``HandshakeError``,
  ``ConnectionClosed``, ``StreamReset``, ...)
* ``ghostwire.http3``: :class:`~ghostwire.http3.H3Error`
* ``ghostwire.rpc``: ``RpcError``

This module imports nothing, so every layer (the sans-IO cores included) can
build on it.
"""

from __future__ import annotations


class GhostwireError(Exception):
    """Base class of every exception ghostwire raises on purpose."""


__all__ = ["GhostwireError"]
