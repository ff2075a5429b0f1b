"""HTTP/3 connection settings (what we advertise, and local policy)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .frames import HTTP2_ONLY_SETTINGS, Setting, grease_value

DEFAULT_RECEIVE_WINDOW = 256 << 10


@dataclass(frozen=True)
class H3Config:
    """Settings of one HTTP/3 connection.

    * ``qpack_max_table_capacity``, ``qpack_blocked_streams`` -- our QPACK
      decoder's limits (SETTINGS_QPACK_*; RFC 9204 §5). 0 turns the
      dynamic table off.
    * ``max_field_section_size`` -- the largest header section we accept
      (SETTINGS_MAX_FIELD_SECTION_SIZE, RFC 9114 §4.2.2); None: no limit,
      not advertised. Larger sections are a stream error H3_EXCESSIVE_LOAD.
    * ``receive_window`` -- back-pressure: per stream, how many bytes of
      DATA may have been handed out in events and not yet returned with
      :meth:`H3Connection.acknowledge_received_data`. Past it, the rest
      stays in QUIC's receive buffer, holding back flow-control credit.
      None: no limit (data counts as consumed once delivered).
    * ``max_push_id`` -- client: allow server push with push ids up to this
      value (sends MAX_PUSH_ID); None (the default) leaves push off.
    * ``grease`` -- send a reserved setting and a reserved frame on the
      control stream (RFC 9114 §7.2.4.1, §7.2.9) so peers that choke on
      unknown values are found early.
    * ``enable_connect_protocol`` -- advertise extended CONNECT (RFC 9220).
    * ``extra_settings`` -- more identifiers to advertise (extensions).
    * ``max_settings_size`` -- the largest SETTINGS frame we accept.
    """

    qpack_max_table_capacity: int = 4096
    qpack_blocked_streams: int = 16
    max_field_section_size: int | None = 64 << 10
    receive_window: int | None = DEFAULT_RECEIVE_WINDOW
    max_push_id: int | None = None
    grease: bool = True
    enable_connect_protocol: bool = False
    extra_settings: Mapping[int, int] = field(default_factory=dict)
    max_settings_size: int = 16 << 10

    def __post_init__(self) -> None:
        for name in ("qpack_max_table_capacity", "qpack_blocked_streams", "max_settings_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.receive_window is not None and self.receive_window <= 0:
            raise ValueError("receive_window must be positive (or None for no limit)")
        reserved = HTTP2_ONLY_SETTINGS.intersection(self.extra_settings)
        if reserved:
            raise ValueError(f"HTTP/2 settings cannot be sent in HTTP/3: {sorted(reserved)}")

    def local_settings(self, grease_n: int = 0) -> dict[int, int]:
        """What goes into our SETTINGS frame."""
        settings: dict[int, int] = {
            Setting.QPACK_MAX_TABLE_CAPACITY: self.qpack_max_table_capacity,
            Setting.QPACK_BLOCKED_STREAMS: self.qpack_blocked_streams,
        }
        if self.max_field_section_size is not None:
            settings[Setting.MAX_FIELD_SECTION_SIZE] = self.max_field_section_size
        if self.enable_connect_protocol:
            settings[Setting.ENABLE_CONNECT_PROTOCOL] = 1
        settings.update(self.extra_settings)
        if self.grease:
            settings[grease_value(grease_n)] = grease_n & 0xFF
        return settings
