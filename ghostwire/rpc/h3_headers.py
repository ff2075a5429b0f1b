"""The HTTP/3 mapping's representation rules (pure): statuses, headers, bodies.

docs/protocol.md §11 is the specification; :mod:`.http3` runs the calls.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

from ..http3.net.server import Request, Response
from .codec import decode, encode
from .events import Event
from .framing import MessageTooLarge
from .h3_json import decode_json, encode_json
from .status import RpcError, Status
from .wire import encode_event, encode_trailer

MSGPACK: Final = "application/msgpack"
JSON: Final = "application/json"
MSGPACK_EVENTS: Final = "application/vnd.ghostwire.events+msgpack"
JSON_EVENTS: Final = "application/x-ndjson"
_MSGPACK_ALIASES = frozenset({MSGPACK, "application/x-msgpack", "application/vnd.msgpack"})

METADATA_PREFIX: Final = "rpc-meta-"
BINARY_SUFFIX: Final = "-bin"

# RPC status -> HTTP status (as gRPC-gateway, but UNIMPLEMENTED is 404:
# the URL names the method, so "no such method" is "no such resource").
HTTP_STATUS: Final[dict[Status, int]] = {
    Status.OK: 200,
    Status.CANCELLED: 499,
    Status.UNKNOWN: 500,
    Status.INVALID_ARGUMENT: 400,
    Status.DEADLINE_EXCEEDED: 504,
    Status.NOT_FOUND: 404,
    Status.ALREADY_EXISTS: 409,
    Status.PERMISSION_DENIED: 403,
    Status.RESOURCE_EXHAUSTED: 429,
    Status.FAILED_PRECONDITION: 400,
    Status.ABORTED: 409,
    Status.OUT_OF_RANGE: 400,
    Status.UNIMPLEMENTED: 404,
    Status.INTERNAL: 500,
    Status.UNAVAILABLE: 503,
    Status.DATA_LOSS: 500,
    Status.UNAUTHENTICATED: 401,
}

# printable ASCII but "%" stays as is in rpc-message (gRPC's grpc-message rule)
_MESSAGE_SAFE: Final = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")
_TIMEOUT = re.compile(r"[0-9]{1,12}(\.[0-9]{0,9})?|\.[0-9]{1,9}")


class UnsupportedMediaType(RpcError):
    """A request body in a format the mapping does not read (HTTP 415)."""

    def __init__(self, content_type: str) -> None:
        super().__init__(
            Status.INVALID_ARGUMENT,
            f"unsupported content-type {content_type!r}: use {MSGPACK} or {JSON}",
        )


class NotJsonRepresentable(RpcError):
    """The result (or an event) has no JSON form; the caller asked for JSON (HTTP 406)."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            Status.FAILED_PRECONDITION,
            f"the reply has no JSON form ({reason}); ask for {MSGPACK}",
        )


def http_status(error: RpcError) -> int:
    if isinstance(error, MessageTooLarge):
        return 413
    if isinstance(error, UnsupportedMediaType):
        return 415
    if isinstance(error, NotJsonRepresentable):
        return 406
    return HTTP_STATUS.get(error.status, 500)


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _accepts(value: str | None) -> list[str]:
    return [_media_type(part) for part in (value or "").split(",")]


@dataclass(frozen=True, slots=True)
class RequestFormat:
    """How one request's body reads and its reply is written."""

    request_type: str  # the request's media type ("" when absent)
    json_reply: bool

    @property
    def content_type(self) -> str:
        return JSON if self.json_reply else MSGPACK

    @property
    def events_type(self) -> str:
        return JSON_EVENTS if self.json_reply else MSGPACK_EVENTS

    def check_content_type(self) -> None:
        if self.request_type not in _MSGPACK_ALIASES and self.request_type not in ("", JSON):
            raise UnsupportedMediaType(self.request_type)

    def decode_arguments(self, body: bytes) -> dict[str, Any]:
        """The arguments map (an empty body: no arguments)."""
        if not body:
            return {}
        value = decode_json(body) if self.request_type == JSON else decode(body)
        if not isinstance(value, dict):
            raise RpcError(Status.INVALID_ARGUMENT, "the body must be a map of the arguments")
        for key in value:
            if not isinstance(key, str):
                raise RpcError(Status.INVALID_ARGUMENT, f"argument names are strings, got {key!r}")
        return value

    def encode_value(self, value: Any) -> bytes:
        return encode_json(value) if self.json_reply else encode(value)

    def unencodable(self, exc: RpcError) -> RpcError:
        """What the caller gets for a reply the codec could not write."""
        if self.json_reply:
            return NotJsonRepresentable(exc.message)
        return RpcError(Status.INTERNAL, "internal error (details are in the server's log)")

    def encode_event(self, event: Event) -> bytes:
        if self.json_reply:
            return encode_json({"data": event.data, "cursor": event.cursor}) + b"\n"
        return encode_event(event)

    def encode_end(self, error: RpcError | None) -> bytes:
        """The last frame (msgpack) or line (JSON) of an event stream."""
        if not self.json_reply:
            return encode_trailer(error)
        return _encode_with_details(lambda body: encode_json(body) + b"\n", "status", error)

    def error_response(
        self, error: RpcError, *, status: int | None = None, extra: Sequence[tuple[str, str]] = ()
    ) -> Response:
        """The HTTP error response for ``error`` (``status`` overrides the table)."""
        encoder = encode_json if self.json_reply else encode
        body = _encode_with_details(encoder, "code", error)
        headers = [("content-type", self.content_type), *error_headers(error), *extra]
        return Response(status or http_status(error), headers, body)


def _encode_with_details(encoder: Any, key: str, error: RpcError | None) -> bytes:
    if error is None:
        return bytes(encoder({key: 0}))
    body: dict[str, Any] = {key: int(error.status), "message": error.message}
    if error.details is not None:
        body["details"] = error.details
        try:
            return bytes(encoder(body))
        except RpcError:
            del body["details"]  # details the codec cannot carry are dropped, not the status
    return bytes(encoder(body))


def error_headers(error: RpcError | None) -> list[tuple[str, str]]:
    """``rpc-status`` and (percent-encoded UTF-8, as grpc-message) ``rpc-message``."""
    if error is None:
        return [("rpc-status", "0")]
    headers = [("rpc-status", str(int(error.status)))]
    if error.message:
        headers.append(("rpc-message", encode_message(error.message)))
    return headers


def encode_message(message: str) -> str:
    """Percent-encoded UTF-8 (printable ASCII but ``%`` kept, as gRPC's
    grpc-message); spaces at either end are encoded too, as a field value
    may not start or end with whitespace (RFC 9110 §5.5)."""
    text = quote(message, safe=_MESSAGE_SAFE)
    body = text.strip(" ")
    if body == text:
        return text
    start = text.index(body) if body else len(text)
    return "%20" * start + body + "%20" * (len(text) - start - len(body))


def negotiate(request: Request) -> RequestFormat:
    """Reply in the format ``accept`` names (if it names exactly one of ours),
    else in the request's."""
    request_type = _media_type(request.header("content-type"))
    accepted = _accepts(request.header("accept"))
    wants_json = JSON in accepted
    wants_msgpack = any(kind in _MSGPACK_ALIASES for kind in accepted)
    if wants_json != wants_msgpack:
        return RequestFormat(request_type, wants_json)
    return RequestFormat(request_type, request_type == JSON)


def parse_timeout(request: Request) -> float | None:
    """``rpc-timeout``: seconds, a non-negative decimal (``2``, ``0.25``)."""
    value = request.header("rpc-timeout")
    if value is None:
        return None
    value = value.strip()
    if _TIMEOUT.fullmatch(value) is None:
        raise RpcError(
            Status.INVALID_ARGUMENT,
            f"rpc-timeout must be seconds as a non-negative decimal, got {value[:40]!r}",
        )
    timeout = float(value)
    return timeout if math.isfinite(timeout) else None


def parse_metadata(headers: Sequence[tuple[str, str]]) -> dict[str, str | bytes]:
    """``rpc-meta-<key>: text`` and ``rpc-meta-<key>-bin: base64`` (bytes under ``<key>``)."""
    metadata: dict[str, str | bytes] = {}
    for name, value in headers:
        if not name.startswith(METADATA_PREFIX) or len(name) == len(METADATA_PREFIX):
            continue
        key = name[len(METADATA_PREFIX) :]
        if key.endswith(BINARY_SUFFIX) and len(key) > len(BINARY_SUFFIX):
            try:
                padded = value.strip() + "=" * (-len(value.strip()) % 4)
                metadata[key[: -len(BINARY_SUFFIX)]] = base64.b64decode(padded, validate=True)
            except (binascii.Error, ValueError):
                raise RpcError(Status.INVALID_ARGUMENT, f"{name} is not base64") from None
            continue
        try:  # header values arrive as latin-1 text; the metadata is UTF-8
            metadata[key] = value.encode("latin-1").decode()
        except UnicodeError:
            raise RpcError(Status.INVALID_ARGUMENT, f"{name} is not UTF-8") from None
    return metadata


def parse_after(request: Request) -> Any:
    """``rpc-after``: the resume cursor, as JSON (the tagged form of §11.5)."""
    value = request.header("rpc-after")
    if value is None:
        return None
    try:
        return decode_json(value.encode("latin-1"))
    except (RpcError, UnicodeError) as exc:
        raise RpcError(Status.INVALID_ARGUMENT, f"rpc-after is not a JSON value: {exc}") from None


__all__ = [
    "HTTP_STATUS",
    "JSON",
    "JSON_EVENTS",
    "METADATA_PREFIX",
    "MSGPACK",
    "MSGPACK_EVENTS",
    "NotJsonRepresentable",
    "RequestFormat",
    "UnsupportedMediaType",
    "error_headers",
    "http_status",
    "negotiate",
    "parse_after",
    "parse_metadata",
    "parse_timeout",
]
