"""qlog event logging (qlog 0.3, JSON-SEQ, the QUIC event schema), readable by qvis.

Theory of operation: the trio shell makes one :class:`QlogSink` per
connection it might create, handing it ``open_trace``: a function that opens
the trace file for a name. The connection binds itself to the sink when it is
made (:meth:`QlogSink.bind`), which gives the trace its name: the original
destination connection ID and the vantage point. Nothing is opened until the
first packet the connection decrypts or sends (earlier events are dropped), so
a datagram that never became a connection leaves no file. The sink closes its
file when the connection ends. The core never opens files itself.

Events: ``transport:packet_sent`` / ``packet_received`` (header, length and
frames), ``recovery:metrics_updated`` (RTT, congestion window, bytes in
flight) and ``recovery:packet_lost``, ``transport:stream_state_updated``,
``connectivity:connection_state_updated`` and ``connectivity:connection_closed``.
Frames of received packets are decoded in full; those of sent packets are
named from what the packet carries for loss recovery (stream and crypto
ranges, ACKs, control frames).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .frames import Frame, FrameType, PaddingFrame, parse_frames
from .packet import PacketType
from .recovery import SentPacket

if TYPE_CHECKING:
    from .connection import QuicConnection

RECORD_SEPARATOR = "\x1e"
QLOG_SUFFIX = ".sqlog"

_PACKET_TYPE_NAMES = {
    PacketType.INITIAL: "initial",
    PacketType.HANDSHAKE: "handshake",
    PacketType.ZERO_RTT: "0RTT",
    PacketType.ONE_RTT: "1RTT",
    PacketType.RETRY: "retry",
    PacketType.VERSION_NEGOTIATION: "version_negotiation",
}
_SPACE_PACKET_TYPES = ("initial", "handshake", "1RTT")


def _sent_packet_type(packet: SentPacket) -> str:
    # A client's 0-RTT packets share the application space with 1-RTT ones.
    return "0RTT" if packet.zero_rtt else _SPACE_PACKET_TYPES[packet.space]


_FRAME_NAMES: dict[int, str] = {
    FrameType.ACK_ECN: "ack",
    FrameType.CONNECTION_CLOSE_APP: "connection_close",
    FrameType.DATAGRAM_LEN: "datagram",
}


class TraceFile(Protocol):
    """Where a trace goes (an open text file, or anything with these methods)."""

    def write(self, text: str, /) -> object: ...

    def close(self) -> object: ...


OpenTrace = Callable[[str], TraceFile]


def trace_name(odcid: bytes, vantage_point: str) -> str:
    """The trace's file name: the original destination connection ID, then the side."""
    return f"{odcid.hex()}_{vantage_point}{QLOG_SUFFIX}"


def _frame_name(frame_type: int) -> str:
    if frame_type in _FRAME_NAMES:
        return _FRAME_NAMES[frame_type]
    if FrameType.STREAM <= frame_type <= FrameType.STREAM + 7:
        return "stream"
    try:
        return FrameType(frame_type).name.lower()
    except ValueError:
        return "unknown"


def frame_to_qlog(frame: Frame) -> dict[str, Any]:
    """A parsed frame as a qlog ``QuicFrame`` (payload bytes as lengths)."""
    out: dict[str, Any] = {"frame_type": _frame_name(frame.frame_type)}
    for field in dataclasses.fields(frame):
        value = getattr(frame, field.name)
        if field.name == "data":
            out["length"] = len(value)
        elif field.name == "ranges":
            out["acked_ranges"] = [[low, high] for low, high in reversed(value)]
        elif isinstance(value, bytes):
            out[field.name] = value.hex()
        elif value is not None:
            out[field.name] = value
    if isinstance(frame, PaddingFrame):
        out["payload_length"] = frame.length
    return out


def _sent_frames(callback: Callable[..., None], args: tuple[Any, ...]) -> list[dict[str, Any]]:
    """What a recovery handler says about the frames it will acknowledge or resend."""
    if getattr(callback, "__name__", "") == "on_stream_frames_delivered":
        # One handler for every STREAM frame of the packet.
        return [
            {
                "frame_type": "stream",
                "stream_id": stream_id,
                "offset": offset,
                "length": length,
                "fin": fin,
            }
            for stream_id, offset, length, fin in args[0]
        ]
    frame = _sent_frame(callback, args)
    return [] if frame is None else [frame]


def _sent_frame(callback: Callable[..., None], args: tuple[Any, ...]) -> dict[str, Any] | None:
    name = getattr(callback, "__name__", "")
    if name == "on_delivered" and len(args) == 2:  # a crypto stream range
        return {"frame_type": "crypto", "offset": args[0], "length": args[1]}
    if name == "_on_ack_delivered":
        return {"frame_type": "ack", "largest_acknowledged": args[1]}
    if name == "_on_control_delivered":
        return frame_to_qlog(args[1])
    if name == "_on_handshake_done_delivered":
        return {"frame_type": "handshake_done"}
    if name == "on_challenge_delivered":
        return {"frame_type": "path_challenge", "data": bytes(args[0]).hex()}
    if name == "on_announcement_delivered":
        return {"frame_type": "new_connection_id", "sequence_number": args[0]}
    if name == "on_retirement_delivered":
        return {"frame_type": "retire_connection_id", "sequence_number": args[0]}
    return None


class QlogSink:
    """Serialises one connection's events as a qlog JSON-SEQ trace."""

    def __init__(
        self, open_trace: OpenTrace, *, vantage_point: str, start_time: float = 0.0
    ) -> None:
        self._open_trace = open_trace
        self.vantage_point = vantage_point
        self._start = start_time
        self.odcid = b""
        self._conn: QuicConnection | None = None
        self._file: TraceFile | None = None
        self._closed = False
        self._live = False  # a packet was sent or decrypted: this is a connection
        self._state = ""
        self._metrics: dict[str, float] = {}
        self._streams: dict[int, str] = {}

    def bind(self, conn: QuicConnection, now: float) -> None:
        """Called by the connection once it exists: names the trace, starts its clock."""
        self._conn = conn
        self.odcid = conn.original_dcid
        self._start = now

    @property
    def name(self) -> str:
        return trace_name(self.odcid, self.vantage_point)

    # -- output ------------------------------------------------------------

    def _emit(self, record: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(RECORD_SEPARATOR + json.dumps(record, separators=(",", ":")) + "\n")

    def _open(self, now: float) -> None:
        self._file = self._open_trace(self.name)
        self._emit(
            {
                "qlog_version": "0.3",
                "qlog_format": "JSON-SEQ",
                "title": "ghostwire qlog",
                "trace": {
                    "vantage_point": {"type": self.vantage_point},
                    "common_fields": {
                        "ODCID": self.odcid.hex(),
                        "time_format": "relative",
                        "reference_time": self._start * 1000.0,
                    },
                },
            }
        )
        self.event(now, "connectivity:connection_started", {"odcid": self.odcid.hex()})

    def event(self, now: float, name: str, data: dict[str, Any]) -> None:
        """Log an event ``name`` (e.g. ``"transport:packet_sent"``)."""
        if self._closed or not self._live:
            return
        if self._file is None:
            self._open(now)
        self._emit({"time": round((now - self._start) * 1000.0, 3), "name": name, "data": data})

    def close(self) -> None:
        """Close the trace (the connection ended). Later events are dropped."""
        if self._file is not None and not self._closed:
            self._file.close()
        self._closed = True

    # -- packets -------------------------------------------------------------

    def packet_sent(self, packet: SentPacket, now: float) -> None:
        self._live = True
        frames = [f for cb, args in packet.handlers for f in _sent_frames(cb, args)]
        self.event(
            now,
            "transport:packet_sent",
            {
                "header": {
                    "packet_type": _sent_packet_type(packet),
                    "packet_number": packet.packet_number,
                },
                "raw": {"length": packet.size},
                "frames": frames,
            },
        )
        self._streams_seen(frames, local=True, now=now)
        self.observe(now)

    def packet_received(
        self, packet_type: PacketType, pn: int, size: int, now: float, payload: bytes = b""
    ) -> None:
        self._live = True
        try:
            frames = [frame_to_qlog(frame) for frame in parse_frames(bytes(payload))]
        except Exception:  # the connection reports malformed frames; the log just notes it
            frames = [{"frame_type": "unknown"}]
        self.event(
            now,
            "transport:packet_received",
            {
                "header": {"packet_type": _PACKET_TYPE_NAMES[packet_type], "packet_number": pn},
                "raw": {"length": size},
                "frames": frames,
            },
        )
        self._streams_seen(frames, local=False, now=now)

    def packets_lost(self, packets: list[SentPacket], now: float) -> None:
        for packet in packets:
            self.event(
                now,
                "recovery:packet_lost",
                {
                    "header": {
                        "packet_type": _sent_packet_type(packet),
                        "packet_number": packet.packet_number,
                    },
                    "trigger": "reordering_threshold_or_pto",
                },
            )

    # -- streams -------------------------------------------------------------

    def _streams_seen(self, frames: list[dict[str, Any]], *, local: bool, now: float) -> None:
        for frame in frames:
            kind = frame["frame_type"]
            if kind not in ("stream", "reset_stream"):
                continue
            stream_id = frame["stream_id"]
            state = self._streams.get(stream_id, "idle")
            new = state
            if state == "idle":
                new = "open"
            if frame.get("fin") or kind == "reset_stream":
                half = "half_closed_local" if local else "half_closed_remote"
                other = "half_closed_remote" if local else "half_closed_local"
                new = "closed" if state == other else half if state != "closed" else state
            if new != state:
                self._streams[stream_id] = new
                self.event(
                    now,
                    "transport:stream_state_updated",
                    {
                        "stream_id": stream_id,
                        "stream_type": "unidirectional" if stream_id & 2 else "bidirectional",
                        "old": state,
                        "new": new,
                    },
                )

    # -- recovery metrics and connection state ---------------------------------

    def observe(self, now: float) -> None:
        """Log what changed in the connection's recovery metrics and state."""
        conn = self._conn
        if conn is None or self._closed:
            return
        rtt = conn.recovery.rtt
        cc = conn.recovery.congestion
        metrics: dict[str, float] = {
            "congestion_window": cc.congestion_window,
            "bytes_in_flight": cc.bytes_in_flight,
        }
        if rtt.has_sample:
            metrics.update(
                smoothed_rtt=round(rtt.smoothed_rtt * 1000.0, 3),
                latest_rtt=round(rtt.latest_rtt * 1000.0, 3),
                min_rtt=round(rtt.min_rtt * 1000.0, 3),
                rtt_variance=round(rtt.rttvar * 1000.0, 3),
            )
        if cc.ssthresh is not None:
            metrics["ssthresh"] = cc.ssthresh
        changed = {k: v for k, v in metrics.items() if self._metrics.get(k) != v}
        if changed:
            self._metrics.update(changed)
            self.event(now, "recovery:metrics_updated", changed)
        self._observe_state(conn, now)

    def _observe_state(self, conn: QuicConnection, now: float) -> None:
        state = conn.state.value
        if state == "connected" or (state == "handshake" and conn.handshake_complete):
            state = "handshake_confirmed" if conn.handshake_confirmed else "handshake_complete"
        elif state == "handshake":
            state = "handshake_started"
        elif state == "terminated":
            state = "closed"
        if state == self._state:
            return
        if state == "handshake_confirmed" and self._state != "handshake_complete":
            self._state_updated("handshake_complete", now)  # a server does both at once
        self._state_updated(state, now)
        if state == "closed":
            self.close()

    def _state_updated(self, state: str, now: float) -> None:
        old, self._state = self._state, state
        self.event(now, "connectivity:connection_state_updated", {"old": old, "new": state})

    def connection_closed(
        self, now: float, *, owner: str, error_code: int | None, reason: str
    ) -> None:
        data: dict[str, Any] = {"owner": owner, "reason": reason}
        if error_code is not None:
            data["connection_code"] = error_code
        self.event(now, "connectivity:connection_closed", data)
