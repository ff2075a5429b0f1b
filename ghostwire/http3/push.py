"""Server push bookkeeping (RFC 9114 §4.6), both sides.

Push is off until the client sends MAX_PUSH_ID; push ids then run from 0
up to the latest MAX_PUSH_ID. The server promises a push with PUSH_PROMISE
on a request stream and sends the response on a push stream (a
unidirectional stream of type 0x01 starting with the push id). Either side
can cancel with CANCEL_PUSH. These classes hold the ids and check the peer
against them; the connection does the I/O.
"""

from __future__ import annotations

from .errors import H3ErrorCode, H3ProtocolError, H3UsageError, PushNotAllowed
from .events import Headers


def _id_error(reason: str) -> H3ProtocolError:
    return H3ProtocolError(H3ErrorCode.H3_ID_ERROR, reason)


class ServerPushes:
    """The server's side: which push ids it may use and which streams carry them."""

    def __init__(self) -> None:
        self.max_push_id: int | None = None  # from the client's MAX_PUSH_ID
        self.next_push_id = 0
        self.goaway_push_id: int | None = None  # the client's GOAWAY: no ids >= this
        self.streams: dict[int, int] = {}  # push id -> push stream id

    @property
    def available(self) -> bool:
        limit = self.max_push_id
        if limit is None or self.next_push_id > limit:
            return False
        return self.goaway_push_id is None or self.next_push_id < self.goaway_push_id

    def allocate(self) -> int:
        if not self.available:
            raise PushNotAllowed(
                "the client has not allowed another push"
                if self.goaway_push_id is None
                else "the client sent GOAWAY: no new pushes"
            )
        push_id = self.next_push_id
        self.next_push_id += 1
        return push_id

    def on_max_push_id(self, value: int) -> None:
        if self.max_push_id is not None and value < self.max_push_id:
            raise _id_error(f"MAX_PUSH_ID went down from {self.max_push_id} to {value}")
        self.max_push_id = value

    def on_goaway(self, push_id: int) -> None:
        if self.goaway_push_id is not None and push_id > self.goaway_push_id:
            raise _id_error(f"GOAWAY push id went up from {self.goaway_push_id} to {push_id}")
        self.goaway_push_id = push_id

    def on_cancel_push(self, push_id: int) -> int | None:
        """The client cancelled a push; returns its push stream to reset, if any."""
        if push_id >= self.next_push_id:
            raise _id_error(f"CANCEL_PUSH for push id {push_id}, never promised")
        return self.streams.pop(push_id, None)


class ClientPushes:
    """The client's side: the limit it granted and what the server promised."""

    def __init__(self) -> None:
        self.max_push_id: int | None = None  # what we sent in MAX_PUSH_ID
        self.promises: dict[int, Headers] = {}
        self.streams: dict[int, int] = {}  # push id -> push stream id
        self.cancelled: set[int] = set()

    def set_max_push_id(self, value: int) -> None:
        if self.max_push_id is not None and value < self.max_push_id:
            raise H3UsageError("MAX_PUSH_ID cannot go down (RFC 9114 §7.2.7)")
        self.max_push_id = value

    def check(self, push_id: int, what: str) -> None:
        """A push id from the server must be within the limit we granted."""
        if self.max_push_id is None or push_id > self.max_push_id:
            raise _id_error(
                f"{what} with push id {push_id}, beyond our MAX_PUSH_ID {self.max_push_id}"
            )

    def on_promise(self, push_id: int, headers: Headers) -> bool:
        """A PUSH_PROMISE; returns whether it is news (a repeat must match, §7.2.5)."""
        self.check(push_id, "PUSH_PROMISE")
        earlier = self.promises.get(push_id)
        if earlier is not None:
            if earlier != headers:
                raise H3ProtocolError(
                    H3ErrorCode.H3_GENERAL_PROTOCOL_ERROR,
                    f"push id {push_id} promised twice with different requests",
                )
            return False
        self.promises[push_id] = headers
        return push_id not in self.cancelled

    def on_push_stream(self, push_id: int, stream_id: int) -> None:
        self.check(push_id, "push stream")
        if push_id in self.streams:
            raise _id_error(f"a second push stream for push id {push_id}")
        self.streams[push_id] = stream_id

    def on_cancel_push(self, push_id: int) -> None:
        self.check(push_id, "CANCEL_PUSH")
        self.cancelled.add(push_id)

    def cancel(self, push_id: int) -> int | None:
        """We cancel a push; returns the push stream to stop reading, if open."""
        if self.max_push_id is None or push_id > self.max_push_id:
            raise H3UsageError(f"push id {push_id} was never allowed")
        self.cancelled.add(push_id)
        return self.streams.get(push_id)
