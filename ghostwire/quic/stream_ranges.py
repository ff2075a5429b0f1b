"""Sorted, disjoint half-open integer ranges for stream bookkeeping.

Theory of operation: a :class:`RangeList` keeps two parallel sorted lists,
``starts`` and ``ends``; range ``i`` is ``[starts[i], ends[i])``. Ranges never
overlap or touch (adjacent ranges are merged), so ``bisect`` finds the ranges
an operation affects in O(log n) and the list splice that follows is a single
C-level memmove. The common stream cases (appending at the end, extending the
last range, consuming the first range) take fast paths.

This is internal to the stream modules (acked / lost ranges on the send side,
received ranges on the receive side); it is deliberately tiny. :func:`write_at`
is the buffer half of reassembly, shared by STREAM and CRYPTO receivers.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator


class RangeList:
    """A set of integers stored as sorted, disjoint, non-adjacent ranges."""

    __slots__ = ("ends", "starts")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def __bool__(self) -> bool:
        return bool(self.starts)

    def __len__(self) -> int:
        """Number of disjoint ranges (not the number of integers)."""
        return len(self.starts)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return zip(self.starts, self.ends, strict=True)

    def __repr__(self) -> str:
        return f"RangeList({list(self)!r})"

    def add(self, start: int, end: int) -> None:
        """Add ``[start, end)``, merging with overlapping or adjacent ranges."""
        if start >= end:
            return
        starts, ends = self.starts, self.ends
        if not ends or start > ends[-1]:  # fast path: beyond the last range
            starts.append(start)
            ends.append(end)
            return
        if start >= starts[-1]:  # fast path: extends (or is inside) the last range
            if end > ends[-1]:
                ends[-1] = end
            return
        i = bisect_left(ends, start)  # first range that ends at or after start
        j = bisect_right(starts, end)  # ranges [i, j) overlap or touch
        if i == j:
            starts.insert(i, start)
            ends.insert(i, end)
            return
        new_start = min(start, starts[i])
        new_end = max(end, ends[j - 1])
        starts[i:j] = (new_start,)
        ends[i:j] = (new_end,)

    def subtract(self, start: int, end: int) -> None:
        """Remove ``[start, end)``."""
        if start >= end:
            return
        starts, ends = self.starts, self.ends
        i = bisect_right(ends, start)  # first range that ends after start
        j = bisect_left(starts, end)  # ranges [i, j) overlap
        if i >= j:
            return
        new_starts: list[int] = []
        new_ends: list[int] = []
        if starts[i] < start:
            new_starts.append(starts[i])
            new_ends.append(start)
        if ends[j - 1] > end:
            new_starts.append(end)
            new_ends.append(ends[j - 1])
        starts[i:j] = new_starts
        ends[i:j] = new_ends

    def covers(self, start: int, end: int) -> bool:
        """Whether every integer of ``[start, end)`` is in the set."""
        if start >= end:
            return True
        i = bisect_right(self.starts, start) - 1
        return i >= 0 and self.ends[i] >= end

    def gaps(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of ``[start, end)`` that are *not* in the set, in order."""
        out: list[tuple[int, int]] = []
        starts, ends = self.starts, self.ends
        i = bisect_right(ends, start)
        pos = start
        while i < len(starts) and starts[i] < end:
            if starts[i] > pos:
                out.append((pos, starts[i]))
            pos = max(pos, ends[i])
            i += 1
        if pos < end:
            out.append((pos, end))
        return out

    def prefix_end(self, origin: int = 0) -> int:
        """End of the range containing ``origin``, or ``origin`` if none does."""
        starts = self.starts
        if starts and starts[0] <= origin < self.ends[0]:
            return self.ends[0]
        i = bisect_right(starts, origin) - 1
        if i >= 0 and self.ends[i] > origin:
            return self.ends[i]
        return origin

    def total(self) -> int:
        """Number of integers in the set."""
        return sum(self.ends) - sum(self.starts)

    def clear(self) -> None:
        self.starts.clear()
        self.ends.clear()


def write_at(buf: bytearray, rel: int, data: bytes | memoryview) -> None:
    """Store ``data`` at ``buf[rel:]``: appended, after zeros filling a gap
    up to ``rel``, or over bytes already held (a repeat carries the same
    bytes, RFC 9000 §2.2)."""
    size = len(buf)
    if rel == size:
        buf += data
    elif rel > size:  # beyond a gap: zero-fill the gap
        buf += bytes(rel - size)
        buf += data
    else:
        buf[rel : rel + len(data)] = data
