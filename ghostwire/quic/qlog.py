"""qlog event logging (draft-ietf-quic-qlog-main-schema, JSON-SEQ), readable by qvis.

The core never writes files: a :class:`QlogSink` turns connection events into
JSON-SEQ records and hands each finished record to a ``write`` callback the
trio shell supplies (which appends to ``<qlog_dir>/<odcid>.sqlog``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .packet import PacketType
from .recovery import SentPacket

RECORD_SEPARATOR = "\x1e"

_PACKET_TYPE_NAMES = {
    PacketType.INITIAL: "initial",
    PacketType.HANDSHAKE: "handshake",
    PacketType.ZERO_RTT: "0RTT",
    PacketType.ONE_RTT: "1RTT",
    PacketType.RETRY: "retry",
    PacketType.VERSION_NEGOTIATION: "version_negotiation",
}
_SPACE_PACKET_TYPES = ("initial", "handshake", "1RTT")


class QlogSink:
    """Serialises one connection's events as qlog JSON-SEQ records."""

    def __init__(
        self,
        write: Callable[[str], None],
        *,
        odcid: bytes,
        vantage_point: str,
        start_time: float,
    ) -> None:
        self._write = write
        self._start = start_time
        header = {
            "qlog_version": "0.3",
            "qlog_format": "JSON-SEQ",
            "title": "ghostwire qlog",
            "trace": {
                "vantage_point": {"type": vantage_point},
                "common_fields": {
                    "ODCID": odcid.hex(),
                    "time_format": "relative",
                    "reference_time": start_time * 1000.0,
                },
            },
        }
        self._emit(header)

    def _emit(self, record: dict[str, Any]) -> None:
        self._write(RECORD_SEPARATOR + json.dumps(record, separators=(",", ":")) + "\n")

    def event(self, now: float, name: str, data: dict[str, Any]) -> None:
        """Log an event ``name`` (e.g. ``"transport:packet_sent"``)."""
        self._emit({"time": round((now - self._start) * 1000.0, 3), "name": name, "data": data})

    def packet_sent(self, packet: SentPacket, now: float) -> None:
        self.event(
            now,
            "transport:packet_sent",
            {
                "header": {
                    "packet_type": _SPACE_PACKET_TYPES[packet.space],
                    "packet_number": packet.packet_number,
                },
                "raw": {"length": packet.size},
            },
        )

    def packet_received(self, packet_type: PacketType, pn: int, size: int, now: float) -> None:
        self.event(
            now,
            "transport:packet_received",
            {
                "header": {"packet_type": _PACKET_TYPE_NAMES[packet_type], "packet_number": pn},
                "raw": {"length": size},
            },
        )
