"""The RPC protocol's messages: request headers, arguments, replies, trailers.

Pure functions over :mod:`.framing` and :mod:`.codec`; docs/protocol.md is
the specification. A request is ``HEADERS`` + ``MESSAGE`` (the arguments as
``[positional, keywords]``) (+ more ``MESSAGE`` frames on a bidirectional
stream) + FIN; a reply is ``MESSAGE`` frames + ``TRAILERS`` + FIN.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final, NamedTuple

from .codec import decode, encode
from .events import Event
from .framing import HEADERS, MESSAGE, PREFIX, TRAILERS, FramingError, encode_frame
from .status import RpcError, Status, status_from_code

ALPN: Final = "ghostwire-rpc"

# Application error codes on RESET_STREAM / STOP_SENDING (docs/protocol.md).
CANCELLED_CODE: Final = 0x1  # the caller gave up (cancelled, deadline passed)
REFUSED_CODE: Final = 0x2  # the server will not read the rest of this request
DEADLINE_CODE: Final = 0x3  # the caller gave up because the call's deadline passed
# Application error code on CONNECTION_CLOSE: the server shut down (drained),
# and every call on the connection it did not answer was never started.
GOAWAY_CLOSE_CODE: Final = 0x4

KIND_CALL: Final = "call"
KIND_EVENTS: Final = "events"
KIND_STREAM: Final = "stream"
_KINDS = frozenset({KIND_CALL, KIND_EVENTS, KIND_STREAM})

_NO_AFTER: Final = object()
_CALL_HEADERS: dict[str, bytes] = {}  # method -> its HEADERS frame without options
_CALL_HEADERS_MAX: Final = 1024  # methods a process calls; past that, encoded each time


class RequestHeader(NamedTuple):
    """A request's HEADERS (a tuple: built once per call, cheaply)."""

    method: str
    kind: str = KIND_CALL
    timeout: float | None = None
    metadata: Mapping[str, str | bytes] | None = None
    has_after: bool = False
    after: Any = None


def encode_request(
    method: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    kind: str = KIND_CALL,
    timeout: float | None = None,
    metadata: Mapping[str, str | bytes] | None = None,
    after: Any = _NO_AFTER,
) -> bytes:
    """The HEADERS and arguments MESSAGE frames of a request (FIN not included)."""
    # msgpack packs a tuple as it packs a list: no copy of the usual
    # positional tuple and keyword dict (other types are converted).
    if type(args) is not tuple and type(args) is not list:
        args = list(args)
    if type(kwargs) is not dict:
        kwargs = dict(kwargs)
    body = encode([args, kwargs])
    if (
        kind == KIND_CALL
        and (timeout is None or timeout == math.inf)
        and not metadata
        and after is _NO_AFTER
    ):
        # The usual unary header, {"method": method}, encoded once per method.
        head_frame = _CALL_HEADERS.get(method)
        if head_frame is None:
            head_frame = encode_frame(HEADERS, encode({"method": method}))
            if len(_CALL_HEADERS) < _CALL_HEADERS_MAX:
                _CALL_HEADERS[method] = head_frame
        return head_frame + PREFIX.pack(MESSAGE, len(body)) + body
    header: dict[str, Any] = {"method": method}
    if kind != KIND_CALL:
        header["kind"] = kind
    if timeout is not None and timeout != math.inf:
        header["timeout"] = max(0.0, float(timeout))
    if metadata:
        header["metadata"] = dict(metadata)
    if after is not _NO_AFTER:
        header["after"] = after
    head = encode(header)
    return PREFIX.pack(HEADERS, len(head)) + head + PREFIX.pack(MESSAGE, len(body)) + body


_MAX_FLOAT = sys.float_info.max


def parse_header(payload: bytes) -> RequestHeader:
    """A request's HEADERS payload; RpcError(INVALID_ARGUMENT) if it is not one."""
    header = decode(payload)
    if not isinstance(header, dict):
        raise FramingError("request headers must be a map")
    method = header.get("method")
    if not isinstance(method, str):
        raise FramingError("request headers lack a 'method' string")
    kind = header.get("kind", KIND_CALL)
    if kind not in _KINDS:
        raise FramingError(f"unknown call kind {kind!r}")
    timeout = header.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not timeout >= 0
        or (type(timeout) is int and timeout > _MAX_FLOAT)  # float() would overflow
    ):
        raise FramingError("'timeout' must be a non-negative number of seconds")
    metadata = header.get("metadata")
    if metadata is not None and not (
        isinstance(metadata, dict)
        and all(isinstance(k, str) and isinstance(v, str | bytes) for k, v in metadata.items())
    ):
        raise FramingError("'metadata' must map strings to strings or bytes")
    return RequestHeader(
        method,
        kind,
        None if timeout is None else float(timeout),
        metadata,
        "after" in header,
        header.get("after"),
    )


HEADER_CACHE_SIZE: Final = 256
_header_cache: dict[bytes, RequestHeader] = {}


def parse_header_cached(payload: bytes) -> RequestHeader:
    """:func:`parse_header`, with the headers of plain calls remembered: the
    same payload gives the same parsed object. Only headers that are a
    method and a kind are kept: no metadata or cursor (a handler could
    change what it was given, and another call would see it), no timeout
    (it differs from call to call). At most ``HEADER_CACHE_SIZE``; the
    cache starts over when full."""
    header = _header_cache.get(payload)
    if header is not None:
        return header
    header = parse_header(payload)
    if header.timeout is None and header.metadata is None and not header.has_after:
        if len(_header_cache) >= HEADER_CACHE_SIZE:
            _header_cache.clear()
        _header_cache[payload] = header
    return header


def parse_arguments(payload: bytes) -> tuple[list[Any], dict[str, Any]]:
    """A request's arguments MESSAGE: ``[positional, keywords]``."""
    value = decode(payload)
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not isinstance(value[0], list)
        or not isinstance(value[1], dict)
    ):
        raise FramingError("arguments must be a two-element array [positional, keywords]")
    kwargs = value[1]
    for key in kwargs:
        if not isinstance(key, str):
            raise FramingError(f"argument names must be strings, got {key!r}")
    return value[0], kwargs


OK_TRAILER_PAYLOAD: Final = encode({"status": 0})
"""The payload of the OK trailer as this module encodes it (a reader may
compare with it before decoding: other encodings of OK are decoded)."""
OK_TRAILER: Final = encode_frame(TRAILERS, OK_TRAILER_PAYLOAD)


def encode_reply(result: Any) -> bytes:
    """A successful call's reply: the result MESSAGE and the OK trailer."""
    body = encode(result)
    return PREFIX.pack(MESSAGE, len(body)) + body + OK_TRAILER


def encode_trailer(error: RpcError | None) -> bytes:
    """The TRAILERS frame for a call that ended with ``error`` (None: OK)."""
    if error is None:
        return OK_TRAILER
    trailer: dict[str, Any] = {"status": int(error.status)}
    if error.message:
        trailer["message"] = error.message
    if error.details is not None:
        trailer["details"] = error.details
    try:
        return encode_frame(TRAILERS, encode(trailer))
    except RpcError:
        trailer.pop("details")  # details the codec cannot carry are dropped, not the status
        return encode_frame(TRAILERS, encode(trailer))


def parse_trailer(payload: bytes) -> RpcError | None:
    """None for an OK trailer, else the error it carries."""
    trailer = decode(payload)
    if not isinstance(trailer, dict) or "status" not in trailer:
        raise RpcError(Status.INTERNAL, "malformed trailer from the server")
    code = trailer["status"]
    if code == 0:
        return None
    message = trailer.get("message", "")
    return RpcError(
        status_from_code(code),
        message if isinstance(message, str) else str(message),
        trailer.get("details"),
    )


def encode_message(value: Any) -> bytes:
    body = encode(value)
    return PREFIX.pack(MESSAGE, len(body)) + body


def encode_event(event: Event) -> bytes:
    """An event as a MESSAGE: ``[data, cursor]``."""
    return encode_message([event.data, event.cursor])


def decode_event(payload: bytes) -> Event:
    value = decode(payload)
    if not isinstance(value, list) or len(value) != 2:
        raise RpcError(Status.INTERNAL, "malformed event from the server")
    return Event(value[0], value[1])


__all__ = [
    "ALPN",
    "CANCELLED_CODE",
    "DEADLINE_CODE",
    "GOAWAY_CLOSE_CODE",
    "OK_TRAILER",
    "OK_TRAILER_PAYLOAD",
    "REFUSED_CODE",
    "RequestHeader",
    "decode_event",
    "encode_event",
    "encode_message",
    "encode_reply",
    "encode_request",
    "encode_trailer",
    "parse_arguments",
    "parse_header",
    "parse_header_cached",
    "parse_trailer",
]
