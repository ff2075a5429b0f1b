"""A set of packet numbers or byte offsets kept as half-open ranges.

The ACK bookkeeping of a packet number space and the CRYPTO stream share the
stream layer's :class:`~ghostwire.quic.stream_ranges.RangeList`; this adds
membership tests and the bounds those users need.
"""

from __future__ import annotations

from bisect import bisect_right

from .stream_ranges import RangeList


class RangeSet(RangeList):
    """Sorted, disjoint ``[start, stop)`` ranges; iterating yields the pairs."""

    __slots__ = ()

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int):
            return False
        i = bisect_right(self.starts, value) - 1
        return i >= 0 and value < self.ends[i]

    def bounds(self) -> tuple[int, int]:
        """``(smallest, stop)`` of the whole set; ValueError when empty."""
        if not self.starts:
            raise ValueError("empty RangeSet")
        return self.starts[0], self.ends[-1]

    def shift(self) -> tuple[int, int]:
        """Remove and return the lowest range."""
        if not self.starts:
            raise ValueError("empty RangeSet")
        return self.starts.pop(0), self.ends.pop(0)


class _ReleasedRangeSet(RangeSet):
    """Always empty: what a discarded packet number space keeps of the packet
    numbers it received (RFC 9001 §4.9: nothing is acknowledged there any
    more). One instance stands in for every connection's, so nothing may
    change it: adding is a no-op (the packet whose frames discarded its own
    space is still recorded after them)."""

    __slots__ = ()

    def add(self, start: int, end: int) -> None:
        return None


# A range set costs ~160 bytes even when empty (the object and two lists).
RELEASED_RANGES: RangeSet = _ReleasedRangeSet()
