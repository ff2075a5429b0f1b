"""Flow control credit (RFC 9000 §4), sans-IO.

Theory of operation
-------------------
Flow control limits are absolute byte offsets that only ever grow
(RFC 9000 §4.1). Three small building blocks are shared by the stream and
connection levels:

* :class:`ReceiveWindow` -- the limit *we* advertise for one receive
  direction (one stream's MAX_STREAM_DATA, or the connection's MAX_DATA).
  The limit we enforce is the highest one we have ever decided to advertise,
  whether or not the frame carrying it arrived. Credit is returned as the
  application *consumes* data, which is how back-pressure reaches the peer:
  once the application has consumed at least half of the window beyond the
  last advertised limit, a new limit ``consumed + window`` is due.

  Window auto-tuning (the quic-go / quinn idea): at each update we look at
  how fast the previous window was consumed. If, at that rate, the whole
  window would be used up in less than ``AUTOTUNE_RTTS`` (= 4) round trips
  -- for the usual half-window trigger: the half window went by in under
  2 RTTs -- the window is too small for the bandwidth-delay product and is
  doubled, up to ``max_window``. The first update only starts the
  measurement epoch.

  A lost update is re-sent only if it still carries the latest limit
  (RFC 9000 §13.3: "containing the most recent value").

* :class:`BlockedSignal` -- DATA_BLOCKED / STREAM_DATA_BLOCKED /
  STREAMS_BLOCKED bookkeeping: signal once per limit value, and re-send a
  lost signal only while still blocked at that same limit (RFC 9000 §13.3).

* :class:`SendCredit` / :class:`ReceiveCredit` -- connection-level flow
  control (RFC 9000 §4.1, §19.9 MAX_DATA, §19.12 DATA_BLOCKED).
"""

from __future__ import annotations

from .errors import QuicProtocolError, TransportErrorCode

AUTOTUNE_RTTS = 4.0
"""A window consumed faster than this many RTTs (extrapolated) is doubled."""

DEFAULT_MAX_STREAM_WINDOW = 16 * 1024 * 1024
DEFAULT_MAX_CONNECTION_WINDOW = 24 * 1024 * 1024

FRAME_MAX_DATA = 0x10  # RFC 9000 §19.9
FRAME_DATA_BLOCKED = 0x14  # RFC 9000 §19.12


class ReceiveWindow:
    """The flow-control limit we advertise for one receive direction.

    ``limit`` is the limit we enforce (highest ever committed);
    ``consumed`` is how much of the data the application has consumed
    (read, or discarded on reset / STOP_SENDING).
    """

    __slots__ = (
        "_epoch_consumed",
        "_epoch_time",
        "_needs_send",
        "consumed",
        "limit",
        "max_window",
        "window",
    )

    def __init__(self, initial_limit: int, max_window: int) -> None:
        self.limit = initial_limit
        self.window = initial_limit
        # (per stream opened: a comparison, not a call to max())
        self.max_window = max_window if max_window > initial_limit else initial_limit
        self.consumed = 0
        self._epoch_time: float | None = None
        self._epoch_consumed = 0
        self._needs_send = False

    def wants_update(self) -> bool:
        """Cheap check: is a new limit (or a re-send of a lost one) due?"""
        if self._needs_send:
            return True
        window = self.window
        return window > 0 and self.limit - self.consumed <= window // 2

    def pending(self, now: float, rtt: float) -> int | None:
        """The limit to advertise now, or None.

        Committing happens here: from this call on, the new limit is
        enforced, and repeated calls return it until :meth:`on_sent`.
        """
        if self._needs_send:
            return self.limit
        if not self.wants_update():
            return None
        self._autotune(now, rtt)
        new_limit = self.consumed + self.window
        if new_limit <= self.limit:
            return None
        self.limit = new_limit
        self._needs_send = True
        self._epoch_time = now
        self._epoch_consumed = self.consumed
        return new_limit

    def _autotune(self, now: float, rtt: float) -> None:
        if self._epoch_time is None or rtt <= 0 or self.window >= self.max_window:
            return
        fraction = (self.consumed - self._epoch_consumed) / self.window
        if now - self._epoch_time < AUTOTUNE_RTTS * fraction * rtt:
            self.window = min(2 * self.window, self.max_window)

    def ensure_window(self, size: int) -> None:
        """Grow the window to at least ``size`` (capped at ``max_window``)."""
        self.window = max(self.window, min(size, self.max_window))

    def on_sent(self, limit: int) -> None:
        """A frame carrying ``limit`` was put in a packet."""
        if limit == self.limit:
            self._needs_send = False

    def on_delivered(self, limit: int, delivered: bool) -> None:
        """The packet carrying ``limit`` was acked (True) or lost (False)."""
        if not delivered and limit == self.limit:
            self._needs_send = True

    def cancel(self) -> None:
        """Stop advertising (the direction is finished)."""
        self._needs_send = False


class BlockedSignal:
    """A "blocked at limit L" signal, sent once per limit value (RFC 9000 §4.1, §13.3)."""

    __slots__ = ("_pending", "_signalled")

    def __init__(self) -> None:
        self._signalled: int | None = None
        self._pending = False

    def block(self, limit: int) -> bool:
        """We are blocked at ``limit``; returns True if a new signal is now due."""
        if self._signalled == limit:
            return False
        self._signalled = limit
        self._pending = True
        return True

    def unblock(self) -> None:
        """The limit was raised: a pending signal for the old limit is stale."""
        self._pending = False

    def pending(self) -> int | None:
        return self._signalled if self._pending else None

    def on_sent(self) -> None:
        self._pending = False

    def on_delivered(self, limit: int, delivered: bool, current_limit: int, blocked: bool) -> None:
        """Re-arm a lost signal while still blocked at that limit."""
        if not delivered and blocked and limit == current_limit == self._signalled:
            self._pending = True


class SendCredit:
    """Connection-level send credit: the peer's MAX_DATA (RFC 9000 §4.1, §19.9)."""

    __slots__ = ("_blocked", "limit", "used")

    def __init__(self, max_data: int = 0) -> None:
        self.limit = max_data
        self.used = 0
        self._blocked: BlockedSignal | None = None  # made the first time we are blocked

    def available(self) -> int:
        """Bytes of new stream data we may still send."""
        return self.limit - self.used

    def consume(self, n: int) -> None:
        """Charge ``n`` bytes of new (never sent before) stream data."""
        if n < 0 or n > self.limit - self.used:
            raise ValueError(f"cannot consume {n} bytes of {self.limit - self.used} available")
        self.used += n

    def on_max_data(self, maximum: int) -> bool:
        """A MAX_DATA frame (or transport parameter); returns True if the limit grew.

        Smaller values are ignored: limits never decrease (RFC 9000 §19.9).
        """
        if maximum <= self.limit:
            return False
        self.limit = maximum
        if self._blocked is not None:
            self._blocked.unblock()
        return True

    def note_blocked(self) -> None:
        """Someone had new data but no connection credit: DATA_BLOCKED is due once."""
        if self.used >= self.limit:
            if self._blocked is None:
                self._blocked = BlockedSignal()
            self._blocked.block(self.limit)

    def pending_data_blocked(self) -> int | None:
        """The limit to put in a DATA_BLOCKED frame (RFC 9000 §19.12), or None."""
        return self._blocked.pending() if self._blocked is not None else None

    def on_data_blocked_sent(self) -> None:
        if self._blocked is not None:
            self._blocked.on_sent()

    def on_data_blocked_delivered(self, limit: int, delivered: bool) -> None:
        if self._blocked is not None:
            self._blocked.on_delivered(limit, delivered, self.limit, self.used >= self.limit)


class ReceiveCredit:
    """Connection-level receive credit: the MAX_DATA we advertise (RFC 9000 §4.1).

    ``received`` is the sum over all streams of their highest received offset
    (what the peer has charged against our MAX_DATA, RFC 9000 §4.5).
    """

    __slots__ = ("received", "window")

    def __init__(self, initial_max_data: int, max_window: int = DEFAULT_MAX_CONNECTION_WINDOW):
        self.window = ReceiveWindow(initial_max_data, max_window)
        self.received = 0

    @property
    def limit(self) -> int:
        """The MAX_DATA limit we enforce (the highest we have advertised)."""
        return self.window.limit

    def on_data(self, n_new_bytes: int) -> None:
        """Charge growth of a stream's highest received offset.

        Raises FLOW_CONTROL_ERROR when the peer overruns our MAX_DATA
        (RFC 9000 §4.1).
        """
        received = self.received + n_new_bytes
        if received > self.window.limit:
            raise QuicProtocolError(
                TransportErrorCode.FLOW_CONTROL_ERROR,
                f"connection data {received} exceeds MAX_DATA {self.window.limit}",
            )
        self.received = received

    def on_consumed(self, n: int) -> None:
        """``n`` bytes were read by the application (or discarded by a reset)."""
        self.window.consumed += n

    def pending_max_data(self, now: float, rtt: float) -> int | None:
        """A new MAX_DATA limit to advertise, or None."""
        return self.window.pending(now, rtt)

    def on_max_data_sent(self, limit: int) -> None:
        self.window.on_sent(limit)

    def on_max_data_delivered(self, limit: int, delivered: bool) -> None:
        self.window.on_delivered(limit, delivered)
