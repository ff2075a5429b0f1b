"""Congestion control (RFC 9002 §7, RFC 9438) and pacing, behind one interface.

:func:`create_congestion_controller` picks an algorithm by name;
:class:`Pacer` spreads the window over the round trip.
"""

from __future__ import annotations

from .base import CongestionController, initial_window, minimum_window
from .cubic import Cubic
from .newreno import NewReno
from .pacer import Pacer

__all__ = [
    "ALGORITHMS",
    "CongestionController",
    "Cubic",
    "NewReno",
    "Pacer",
    "create_congestion_controller",
    "initial_window",
    "minimum_window",
]

ALGORITHMS: dict[str, type[CongestionController]] = {"cubic": Cubic, "newreno": NewReno}


def create_congestion_controller(
    name: str = "cubic", *, max_datagram_size: int = 1200
) -> CongestionController:
    """A new controller: ``"cubic"`` (RFC 9438) or ``"newreno"`` (RFC 9002)."""
    try:
        cls = ALGORITHMS[name]
    except KeyError:
        choices = ", ".join(repr(n) for n in ALGORITHMS)
        raise ValueError(f"unknown congestion control {name!r}; choose one of {choices}") from None
    return cls(max_datagram_size=max_datagram_size)
