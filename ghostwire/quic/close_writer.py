"""The datagram that carries CONNECTION_CLOSE (RFC 9000 §10.2)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .frames import ConnectionCloseFrame, encode_frame
from .packet import PacketType
from .packet_builder import PacketBuilder
from .packet_space import PacketNumberSpace
from .sent_packet import Space
from .suites import Epoch

if TYPE_CHECKING:
    from .connection import QuicConnection

MIN_INITIAL_DATAGRAM = 1200  # RFC 9000 §14.1
_HANDSHAKE_SPACES = (
    (Space.INITIAL, PacketType.INITIAL, Epoch.INITIAL),
    (Space.HANDSHAKE, PacketType.HANDSHAKE, Epoch.HANDSHAKE),
)


def datagram_builder(conn: QuicConnection, max_size: int) -> PacketBuilder:
    """A builder for one datagram of at most ``max_size`` bytes on the
    connection's current path, with its current IDs, token and key phase."""
    return PacketBuilder(
        max_size=max_size,
        version=conn.version,
        dcid=conn.peer_cids.current.cid,
        scid=conn.host_cid,
        token=conn.token,
        key_phase=conn.key_phases.send_phase,
    )


def build_close_datagram(conn: QuicConnection, now: float) -> bytes | None:
    """A datagram carrying CONNECTION_CLOSE in every space we have keys for.

    RFC 9000 §10.2.3: before the handshake is confirmed the peer may lack
    1-RTT keys, so the close also goes in Initial and Handshake packets,
    where an application close is sent as a transport APPLICATION_ERROR.
    """
    if conn.close_frame is None:
        return None
    error_code, frame_type, reason, is_application = conn.close_frame
    max_size = conn.max_datagram_size
    room = conn.amplification_room()
    if room is not None:
        max_size = min(max_size, room)
    builder = datagram_builder(conn, max_size)
    candidates: list[tuple[PacketNumberSpace, PacketType, object]] = []
    for space_id, packet_type, _ in _HANDSHAKE_SPACES:
        space = conn.spaces[space_id]
        if space.send_keys is not None and not space.discarded:
            candidates.append((space, packet_type, space.send_keys))
    if conn.key_phases.send is not None and (conn.handshake_complete or not candidates):
        candidates.append(
            (conn.spaces[Space.APPLICATION], PacketType.ONE_RTT, conn.key_phases.send)
        )
    for space, packet_type, keys in candidates:
        if not builder.start_packet(space, packet_type, keys):  # type: ignore[arg-type]
            break
        app_close = is_application and packet_type is PacketType.ONE_RTT
        frame = _encode_close(
            error_code if app_close or not is_application else 0xC,
            None if app_close else (frame_type or 0),
            reason if app_close or not is_application else b"",
            room=builder.remaining,
        )
        builder.payload.extend(frame)
        builder.end_packet()
    if builder.is_empty:
        return None
    pad_to = (
        MIN_INITIAL_DATAGRAM
        if conn.is_client and builder.has_packet_type(PacketType.INITIAL)
        else 0
    )
    if room is not None:
        pad_to = min(pad_to, max_size)
    datagram, sent = builder.finish(pad_to, now)
    conn.on_close_datagram_sent(len(datagram), len(sent))
    return datagram


def _encode_close(error_code: int, frame_type: int | None, reason: bytes, room: int) -> bytes:
    """CONNECTION_CLOSE (0x1c transport, or 0x1d application when frame_type is None),
    with the reason cut to fit ``room`` (a 2-byte length is assumed)."""
    head = len(encode_frame(ConnectionCloseFrame(error_code, frame_type))) - 1
    reason = reason[: max(0, room - head - 2)]
    return encode_frame(ConnectionCloseFrame(error_code, frame_type, reason))
