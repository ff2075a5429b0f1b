"""Status codes and the one exception the RPC layer raises: :class:`RpcError`.

The codes are gRPC's, numbered the same (0-16), so they read familiarly and
map one to one onto gRPC's (and onto the ``rpc-status`` HTTP/3 header).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from ..errors import GhostwireError


class Status(IntEnum):
    """The status of a finished call (gRPC's codes, same numbers)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


def status_from_code(code: object) -> Status:
    """The :class:`Status` for a code read off the wire; unknown codes are UNKNOWN."""
    if type(code) is int and 0 <= code <= 16:
        return Status(code)
    return Status.UNKNOWN


class RpcError(GhostwireError):
    """A call failed with ``status``; raised on both sides of a call.

    A handler raises it to send ``status``, ``message`` and ``details`` (any
    value the codec can carry) to the caller; the caller catches the same.
    """

    def __init__(self, status: Status | int, message: str = "", details: Any = None) -> None:
        self.status = status if isinstance(status, Status) else status_from_code(status)
        self.message = message
        self.details = details
        super().__init__(f"{self.status.name}: {message}" if message else self.status.name)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.status.name}, {self.message!r}, details={self.details!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.status, self.message, self.details))


__all__ = ["RpcError", "Status", "status_from_code"]
