"""What a handler knows about its call: :class:`Context`.

The transport (QUIC or HTTP/3) builds one per call. ``deadline`` is in trio's
clock (``trio.current_time()``), already converted from the relative timeout
that travelled on the wire. The dispatcher runs the handler in a cancel scope
with that deadline; the transport calls :meth:`Context.cancel` when the caller
went away (stream reset) or the server shuts down, which cancels the handler
at once and makes the call end with the given status.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import trio

from .status import Status

Metadata = Mapping[str, "str | bytes"]


@dataclass(frozen=True, slots=True)
class Peer:
    """Who is calling: the network ``address`` and, under mutual TLS, the
    client's ``certificate`` (a ``cryptography`` x509 object; the whole chain
    is in ``certificate_chain``, leaf first)."""

    address: Any
    certificate_chain: tuple[Any, ...] = ()

    @property
    def certificate(self) -> Any:
        return self.certificate_chain[0] if self.certificate_chain else None


class Context:
    """One call as its handler sees it.

    ``method`` is the full name (``"zvm.get_balance"``), ``deadline`` a trio
    time or None, ``metadata`` what the caller sent with ``metadata=``,
    ``peer`` a :class:`Peer`, ``resume_after`` the cursor a subscriber saw last
    (None on a fresh subscription or for other calls).
    """

    __slots__ = (
        "_cancel_message",
        "_cancel_status",
        "_scope",
        "deadline",
        "metadata",
        "method",
        "peer",
        "resume_after",
    )

    def __init__(
        self,
        method: str,
        *,
        deadline: float | None = None,
        metadata: Metadata | None = None,
        peer: Peer | None = None,
        resume_after: Any = None,
    ) -> None:
        self.method = method
        self.deadline = deadline
        self.metadata: Metadata = metadata if metadata is not None else {}
        self.peer = peer if peer is not None else Peer(None)
        self.resume_after = resume_after
        self._scope: trio.CancelScope | None = None
        self._cancel_status: Status | None = None
        self._cancel_message = ""

    @classmethod
    def from_timeout(cls, method: str, timeout: float | None, **kwargs: Any) -> Context:
        """A context whose deadline is ``timeout`` seconds from now (None: no deadline)."""
        deadline = None if timeout is None else trio.current_time() + max(0.0, timeout)
        return cls(method, deadline=deadline, **kwargs)

    def time_remaining(self) -> float:
        """Seconds left before the deadline (``inf`` without one, never negative)."""
        if self.deadline is None:
            return math.inf
        return max(0.0, self.deadline - trio.current_time())

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancel_status is not None

    def cancel(self, status: Status = Status.CANCELLED, message: str = "") -> None:
        """End the call now with ``status``: its handler is cancelled at once.

        Transports call this when the caller resets the stream (CANCELLED, or
        DEADLINE_EXCEEDED once the deadline passed) or the server shuts down
        (UNAVAILABLE). Idempotent: the first status wins.
        """
        if self._cancel_status is None:
            self._cancel_status = status
            self._cancel_message = message
        if self._scope is not None:
            self._scope.cancel()

    def __repr__(self) -> str:
        return f"<Context {self.method} peer={self.peer.address!r} deadline={self.deadline!r}>"


__all__ = ["Context", "Metadata", "Peer"]
