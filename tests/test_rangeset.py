"""RangeSet: the packet-number / CRYPTO-offset set built on RangeList."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ghostwire.quic.rangeset import RangeSet


def make(*ranges: tuple[int, int]) -> RangeSet:
    rs = RangeSet()
    for start, stop in ranges:
        rs.add(start, stop)
    return rs


def members(rs: RangeSet) -> set[int]:
    return {n for start, stop in rs for n in range(start, stop)}


def test_empty() -> None:
    rs = RangeSet()
    assert not rs
    assert len(rs) == 0
    assert list(rs) == []
    assert 0 not in rs
    assert rs.total() == 0
    with pytest.raises(ValueError):
        rs.bounds()
    with pytest.raises(ValueError):
        rs.shift()


def test_add_merges_overlapping_and_adjacent_ranges() -> None:
    rs = make((10, 20), (30, 40))
    assert list(rs) == [(10, 20), (30, 40)]
    rs.add(20, 25)  # touches the first range
    assert list(rs) == [(10, 25), (30, 40)]
    rs.add(0, 5)  # before everything
    assert list(rs) == [(0, 5), (10, 25), (30, 40)]
    rs.add(4, 31)  # bridges all three
    assert list(rs) == [(0, 40)]
    rs.add(40, 41)  # appended at the end, adjacent
    assert list(rs) == [(0, 41)]
    rs.add(50, 50)  # empty: ignored
    rs.add(60, 55)
    assert list(rs) == [(0, 41)]


def test_add_inside_an_existing_range_changes_nothing() -> None:
    rs = make((0, 100))
    rs.add(10, 20)
    assert list(rs) == [(0, 100)]


def test_contains() -> None:
    rs = make((1, 3), (10, 11))
    assert [n for n in range(-1, 13) if n in rs] == [1, 2, 10]
    assert "1" not in rs
    assert 1.0 not in rs


def test_bounds_and_shift() -> None:
    rs = make((5, 7), (1, 2), (9, 12))
    assert rs.bounds() == (1, 12)
    assert rs.shift() == (1, 2)
    assert rs.bounds() == (5, 12)
    assert rs.shift() == (5, 7)
    assert rs.shift() == (9, 12)
    assert not rs


def test_subtract_splits_and_trims() -> None:
    rs = make((0, 10), (20, 30))
    rs.subtract(3, 5)
    assert list(rs) == [(0, 3), (5, 10), (20, 30)]
    rs.subtract(8, 25)
    assert list(rs) == [(0, 3), (5, 8), (25, 30)]
    rs.subtract(-5, 100)
    assert not rs


def test_covers_gaps_prefix_and_total() -> None:
    rs = make((0, 10), (20, 30))
    assert rs.covers(0, 10)
    assert rs.covers(5, 5)
    assert not rs.covers(5, 11)
    assert not rs.covers(10, 20)
    assert rs.gaps(0, 40) == [(10, 20), (30, 40)]
    assert rs.gaps(5, 25) == [(10, 20)]
    assert rs.gaps(21, 29) == []
    assert rs.prefix_end() == 10
    assert rs.prefix_end(25) == 30
    assert rs.prefix_end(15) == 15
    assert rs.total() == 20


def test_clear() -> None:
    rs = make((0, 10))
    rs.clear()
    assert not rs


_ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "subtract", "shift"]),
        st.integers(min_value=0, max_value=60),
        st.integers(min_value=0, max_value=20),
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(_ops, st.integers(min_value=0, max_value=80), st.integers(min_value=0, max_value=80))
def test_rangeset_matches_a_plain_set(ops: list[tuple[str, int, int]], lo: int, hi: int) -> None:
    rs = RangeSet()
    model: set[int] = set()
    for op, start, length in ops:
        stop = start + length
        if op == "add":
            rs.add(start, stop)
            model |= set(range(start, stop))
        elif op == "subtract":
            rs.subtract(start, stop)
            model -= set(range(start, stop))
        elif rs:
            first_start, first_stop = rs.shift()
            assert first_start == min(model)
            model -= set(range(first_start, first_stop))
        # Invariants: sorted, disjoint, non-adjacent, non-empty ranges.
        pairs = list(rs)
        for (_, end), (next_start, _) in itertools.pairwise(pairs):
            assert end < next_start
        assert all(s < e for s, e in pairs)
        assert members(rs) == model
    assert rs.total() == len(model)
    assert all((n in rs) == (n in model) for n in range(0, 82))
    if model:
        assert rs.bounds() == (min(model), max(model) + 1)
    assert rs.covers(lo, hi) == all(n in model for n in range(lo, hi))
    gap_members = {n for s, e in rs.gaps(lo, hi) for n in range(s, e)}
    assert gap_members == {n for n in range(lo, hi) if n not in model}
    end = rs.prefix_end(lo)
    assert end == (lo if lo not in model else min(n for n in range(lo, 83) if n not in model))
