"""Where a resumable subscription stands: the cursor to resume after (sans-IO).

Theory of operation
-------------------
A subscription that outlives its connection resubscribes with
``after=<cursor of the last event the subscriber was given>`` (see
docs/rpc-client.md, "Resumable subscriptions"). :class:`ResumeTracker` keeps
that cursor and filters what arrives after a resubscription:

* :meth:`ResumeTracker.delivered` is called for each event *as it is handed
  to the subscriber* (not as it arrives), so an event still buffered when the
  connection broke is not skipped;
* :meth:`ResumeTracker.is_duplicate` drops an event the subscriber has
  already passed, when the cursors are *ordered*: numbers (not bools), or
  tuples / lists of numbers of the same length (``(block, log_index)``).
  Other cursors (strings, bytes, hashes) are opaque: their order means
  nothing to us, so the server's ``after`` handling is trusted with them;
* events without a cursor are never dropped and never move the cursor:
  such a channel is at-most-once across a reconnect;
* :meth:`ResumeTracker.reconnecting` counts a reconnect and returns the
  :class:`Reconnected` marker a subscriber may opt in to see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Reconnected", "ResumeTracker", "cursors_ordered"]


@dataclass(frozen=True, slots=True)
class Reconnected:
    """A marker in a subscription's stream: the connection broke here and the
    subscription resumed ``after`` this cursor (None: from the start, or a
    channel without cursors). ``reconnects`` counts them so far."""

    after: Any
    reconnects: int


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def cursors_ordered(a: object, b: object) -> bool:
    """Whether ``a`` and ``b`` are cursors whose order we may rely on."""
    if _number(a) and _number(b):
        return True
    if isinstance(a, tuple | list) and isinstance(b, tuple | list) and len(a) == len(b):
        return all(_number(x) and _number(y) for x, y in zip(a, b, strict=True))
    return False


class ResumeTracker:
    """The resume point of one subscription across its reconnects."""

    def __init__(self, after: Any = None) -> None:
        self._last: Any = after
        self._reconnects = 0

    @property
    def resume_after(self) -> Any:
        """The cursor to resubscribe ``after`` (None: nothing delivered had one)."""
        return self._last

    @property
    def reconnects(self) -> int:
        return self._reconnects

    def is_duplicate(self, cursor: Any) -> bool:
        """Whether an event with ``cursor`` was already passed to the subscriber."""
        if cursor is None or self._last is None:
            return False
        if not cursors_ordered(cursor, self._last):
            return False
        return bool(tuple_of(cursor) <= tuple_of(self._last))

    def delivered(self, cursor: Any) -> None:
        """An event with ``cursor`` was handed to the subscriber."""
        if cursor is not None:
            self._last = cursor

    def reconnecting(self) -> Reconnected:
        """The connection broke; the subscription resumes after :attr:`resume_after`."""
        self._reconnects += 1
        return Reconnected(self._last, self._reconnects)


def tuple_of(cursor: Any) -> tuple[Any, ...]:
    """A cursor as a tuple, so numbers and sequences compare alike."""
    return tuple(cursor) if isinstance(cursor, tuple | list) else (cursor,)
