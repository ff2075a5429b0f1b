"""QPACK (RFC 9204) header compression, over pylsqpack.

:class:`QpackEncoder` compresses the field sections we send,
:class:`QpackDecoder` decompresses the peer's. Both collect the bytes they
need to send on their unidirectional stream (our encoder stream carries
dynamic-table inserts; our decoder stream carries acknowledgements and
cancellations) in ``pending``; the connection writes them out.

Blocked streams (RFC 9204 §2.1.2): a field section that references
dynamic-table entries the encoder stream has not delivered yet cannot be
decoded. :meth:`QpackDecoder.decode` then returns None and keeps the
section; when encoder-stream bytes arrive, :meth:`QpackDecoder.feed_encoder`
returns the stream ids that can now be resumed with
:meth:`QpackDecoder.resume`. More blocked streams than we allowed in
SETTINGS_QPACK_BLOCKED_STREAMS is a decompression failure.

pylsqpack's exceptions become connection errors with the QPACK codes of
RFC 9204 §6.
"""

from __future__ import annotations

from collections.abc import Sequence

import pylsqpack

from .errors import H3ErrorCode, H3ProtocolError

Headers = list[tuple[bytes, bytes]]

# RFC 9204 §3.2.1: each entry costs its name and value lengths plus 32.
ENTRY_OVERHEAD = 32


class QpackEncoder:
    """Compresses our field sections; its output goes on our encoder stream."""

    def __init__(self) -> None:
        self._encoder = pylsqpack.Encoder()
        self.pending = bytearray()  # for our encoder stream
        self.max_table_capacity = 0
        self.blocked_streams = 0
        self.encoder_bytes = 0  # total encoder-stream bytes produced

    def apply_settings(self, max_table_capacity: int, blocked_streams: int) -> None:
        """The peer's SETTINGS arrived: the dynamic table may be used from now on."""
        self.max_table_capacity = max_table_capacity
        self.blocked_streams = blocked_streams
        self._append(self._encoder.apply_settings(max_table_capacity, blocked_streams))

    def encode(self, stream_id: int, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
        """The encoded field section for ``stream_id`` (encoder-stream bytes go to ``pending``)."""
        encoder_data, block = self._encoder.encode(stream_id, list(headers))
        self._append(encoder_data)
        return bytes(block)

    def feed_decoder(self, data: bytes) -> None:
        """Bytes from the peer's decoder stream."""
        try:
            self._encoder.feed_decoder(data)
        except pylsqpack.DecoderStreamError as exc:
            raise H3ProtocolError(
                H3ErrorCode.QPACK_DECODER_STREAM_ERROR, f"bad QPACK decoder stream: {exc}"
            ) from None

    def _append(self, data: bytes) -> None:
        if data:
            self.pending += data
            self.encoder_bytes += len(data)


class QpackDecoder:
    """Decompresses the peer's field sections; its output goes on our decoder stream."""

    def __init__(self, max_table_capacity: int, blocked_streams: int) -> None:
        self._decoder = pylsqpack.Decoder(max_table_capacity, blocked_streams)
        self.max_table_capacity = max_table_capacity
        self.blocked_streams = blocked_streams
        self.pending = bytearray()  # for our decoder stream
        self._blocked: set[int] = set()

    @property
    def blocked(self) -> frozenset[int]:
        """Streams whose field section waits for encoder-stream data."""
        return frozenset(self._blocked)

    def decode(self, stream_id: int, block: bytes) -> Headers | None:
        """Decode a field section; None if it is blocked (see :meth:`feed_encoder`)."""
        try:
            control, headers = self._decoder.feed_header(stream_id, block)
        except pylsqpack.StreamBlocked:
            self._blocked.add(stream_id)
            return None
        except (pylsqpack.DecompressionFailed, ValueError) as exc:
            raise _decompression_failed(stream_id, exc) from None
        self._append(control)
        return list(headers)

    def feed_encoder(self, data: bytes) -> list[int]:
        """Bytes from the peer's encoder stream; returns the streams now unblocked."""
        try:
            ready = self._decoder.feed_encoder(data)
        except pylsqpack.EncoderStreamError as exc:
            raise H3ProtocolError(
                H3ErrorCode.QPACK_ENCODER_STREAM_ERROR, f"bad QPACK encoder stream: {exc}"
            ) from None
        return [stream_id for stream_id in ready if stream_id in self._blocked]

    def resume(self, stream_id: int) -> Headers | None:
        """Finish decoding an unblocked field section (None if still blocked)."""
        try:
            control, headers = self._decoder.resume_header(stream_id)
        except pylsqpack.StreamBlocked:
            return None
        except (pylsqpack.DecompressionFailed, ValueError) as exc:
            self._blocked.discard(stream_id)
            raise _decompression_failed(stream_id, exc) from None
        self._blocked.discard(stream_id)
        self._append(control)
        return list(headers)

    def cancel(self, stream_id: int) -> None:
        """A stream was reset or abandoned mid-message: Stream Cancellation (RFC 9204 §4.4.2)."""
        self._blocked.discard(stream_id)
        if self.max_table_capacity == 0:
            return  # RFC 9204 §4.4.2: may be omitted without a dynamic table
        try:
            self._append(self._decoder.cancel_stream(stream_id))
        except RuntimeError:  # pragma: no cover - lsqpack has nothing to cancel
            pass

    def _append(self, data: bytes) -> None:
        if data:
            self.pending += data


def _decompression_failed(stream_id: int, exc: Exception) -> H3ProtocolError:
    return H3ProtocolError(
        H3ErrorCode.QPACK_DECOMPRESSION_FAILED,
        f"cannot decode the field section on stream {stream_id}: {exc}",
    )


def field_section_size(headers: Sequence[tuple[bytes, bytes]]) -> int:
    """Size of a field section as SETTINGS_MAX_FIELD_SECTION_SIZE counts it (RFC 9114 §4.2.2)."""
    size = ENTRY_OVERHEAD * len(headers)
    for name, value in headers:  # a plain loop: cheaper than sum() over a generator
        size += len(name) + len(value)
    return size
