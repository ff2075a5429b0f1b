"""The resume point of a subscription: no gap, no duplicate, across reconnects."""

from __future__ import annotations

from typing import Any

from ghostwire.rpc.resilience.resume import Reconnected, ResumeTracker, cursors_ordered


def _deliver(tracker: ResumeTracker, cursors: list[Any]) -> list[Any]:
    """What the subscriber's ``async for`` sees from a batch of arrivals."""
    seen = []
    for cursor in cursors:
        if tracker.is_duplicate(cursor):
            continue
        tracker.delivered(cursor)
        seen.append(cursor)
    return seen


def test_a_restart_that_replays_from_a_checkpoint_shows_no_duplicate() -> None:
    tracker = ResumeTracker()
    seen = _deliver(tracker, [1, 2, 3, 4, 5])
    marker = tracker.reconnecting()
    assert marker == Reconnected(after=5, reconnects=1)
    # The restarted server resumes from its last checkpoint (3), not after 5.
    seen += _deliver(tracker, [3, 4, 5, 6, 7])
    assert seen == [1, 2, 3, 4, 5, 6, 7]
    assert tracker.resume_after == 7


def test_compound_cursors_compare_as_tuples() -> None:
    tracker = ResumeTracker(after=(7, 2))  # resumed: block 7, log index 2
    assert _deliver(tracker, [(7, 1), (7, 2), (7, 3), [8, 0]]) == [(7, 3), [8, 0]]
    assert tracker.resume_after == [8, 0]


def test_opaque_cursors_are_trusted_to_the_server() -> None:
    tracker = ResumeTracker()
    # Hashes do not come in order: a lexically "smaller" one is a new event.
    assert _deliver(tracker, ["0xff", "0x01", b"\x00"]) == ["0xff", "0x01", b"\x00"]
    assert not cursors_ordered(True, 1)  # bools are not counters
    assert not cursors_ordered((1, 2), (1, 2, 3))


def test_events_without_cursors_are_at_most_once() -> None:
    tracker = ResumeTracker()
    assert _deliver(tracker, [None, None]) == [None, None]
    assert [tracker.resume_after] == [None]  # nothing to resume after: from the start
    _deliver(tracker, [4, None])
    assert tracker.resume_after == 4  # a cursorless event does not move the cursor
    assert tracker.reconnecting().after == 4
    assert tracker.reconnecting().reconnects == 2
