"""Field validation for HTTP/3 messages (RFC 9114 §4.2-4.3, §10.3).

One function per kind of field section. Each raises
:class:`~ghostwire.http3.errors.MessageError` with a readable reason; the
receive path turns that into a stream error of type H3_MESSAGE_ERROR
(RFC 9114 §4.1.2), the send path into
:class:`~ghostwire.http3.errors.InvalidHeaders`.

Rules checked for every section:

* names are non-empty, lowercase tokens (no controls, spaces, DEL, high
  bytes, uppercase, or ``:`` after the first byte);
* values hold no NUL, CR or LF, and no leading or trailing whitespace;
* no connection-specific fields (``connection``, ``keep-alive``,
  ``proxy-connection``, ``transfer-encoding``, ``upgrade``); ``te`` only
  with the value ``trailers``;
* pseudo-headers come first, each at most once, only the ones defined for
  the section's kind; trailers carry none;
* ``content-length`` is a non-negative integer, the same if repeated.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import MessageError

Headers = list[tuple[bytes, bytes]]

CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path", b":protocol"})
RESPONSE_PSEUDO = frozenset({b":status"})
# Schemes whose URIs need an authority (RFC 9114 §4.3.1).
_AUTHORITY_SCHEMES = frozenset({b"http", b"https"})
# Safe, cacheable methods a server may push (RFC 9114 §4.6, RFC 9110 §9.2).
PUSHABLE_METHODS = frozenset({b"GET", b"HEAD"})

# Bytes forbidden in field names: controls, space, DEL and above, uppercase,
# and the separators that are not token characters (RFC 9110 §5.1, §5.6.2).
_BAD_NAME_BYTES = frozenset(
    [*range(0x00, 0x21), *range(0x41, 0x5B), *range(0x7F, 0x100), *b'"(),/:;<=>?@[\\]{}']
)
_BAD_VALUE_BYTES = (b"\x00", b"\r", b"\n")
_WHITESPACE = frozenset(b" \t")


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """What the stream state needs from a valid field section."""

    pseudo: dict[bytes, bytes]
    content_length: int | None


# The fast checks: one regular-expression call per name and per value (a
# byte-by-byte scan was several); only a field they reject goes through the
# checks below, which give the reason. A field name is an optional ':' and then
# lowercase token characters (RFC 9110 §5.6.2 tchar, less A-Z); a value
# starts and ends with neither space nor tab and holds no NUL, CR or LF
# (RFC 9114 §4.2).
_VALID_NAME = re.compile(rb":?[!#$%&'*+\-.^_`|~0-9a-z]+")
_INVALID_VALUE = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z")


def _check_name(name: bytes) -> None:
    if _VALID_NAME.fullmatch(name) is None:
        _name_error(name)


def _check_value(name: bytes, value: bytes) -> None:
    if _INVALID_VALUE.search(value) is not None:
        _value_error(name, value)


def _name_error(name: bytes) -> None:
    if not name:
        raise MessageError("empty field name")
    body = name[1:] if name[0] == 0x3A else name  # ':' only as a pseudo-header prefix
    if not body or not _BAD_NAME_BYTES.isdisjoint(body):
        raise MessageError(f"invalid field name {name!r}")


def _value_error(name: bytes, value: bytes) -> None:
    for bad in _BAD_VALUE_BYTES:
        if bad in value:
            raise MessageError(f"field {name!r} has a forbidden character in its value")
    if value and (value[0] in _WHITESPACE or value[-1] in _WHITESPACE):
        raise MessageError(f"field {name!r} value has leading or trailing whitespace")


def _scan(headers: Sequence[tuple[bytes, bytes]], allowed_pseudo: frozenset[bytes]) -> MessageInfo:
    """Checks common to every section; returns its pseudo-headers and content-length."""
    pseudo: dict[bytes, bytes] = {}
    regular_seen = False
    content_length: int | None = None
    for name, value in headers:
        _check_name(name)
        _check_value(name, value)
        if name[0] == 0x3A:
            if regular_seen:
                raise MessageError(f"pseudo-header {name!r} after a regular field")
            if name not in allowed_pseudo:
                raise MessageError(f"pseudo-header {name!r} is not allowed here")
            if name in pseudo:
                raise MessageError(f"pseudo-header {name!r} appears twice")
            pseudo[name] = value
            continue
        regular_seen = True
        if name in CONNECTION_SPECIFIC:
            raise MessageError(f"connection-specific field {name!r}")
        if name == b"te" and value != b"trailers":
            raise MessageError("the te field may only be 'trailers'")
        if name == b"content-length":
            length = _parse_content_length(value)
            if content_length is not None and length != content_length:
                raise MessageError("conflicting content-length values")
            content_length = length
    return MessageInfo(pseudo, content_length)


def _parse_content_length(value: bytes) -> int:
    if not value or not value.isdigit() or len(value) > 19:
        raise MessageError(f"invalid content-length {value[:32]!r}")
    return int(value)


def validate_request(headers: Sequence[tuple[bytes, bytes]]) -> MessageInfo:
    """A request header section (RFC 9114 §4.3.1, RFC 9220 for ``:protocol``)."""
    info = _scan(headers, REQUEST_PSEUDO)
    pseudo = info.pseudo
    method = pseudo.get(b":method")
    if not method:
        raise MessageError("request without :method")
    if method == b"CONNECT" and b":protocol" not in pseudo:
        # RFC 9114 §4.4: CONNECT carries only :method and :authority.
        if b":scheme" in pseudo or b":path" in pseudo:
            raise MessageError("CONNECT request with :scheme or :path")
        if not pseudo.get(b":authority"):
            raise MessageError("CONNECT request without :authority")
        return info
    if b":protocol" in pseudo and method != b"CONNECT":
        raise MessageError(":protocol on a request that is not CONNECT")
    scheme = pseudo.get(b":scheme")
    path = pseudo.get(b":path")
    if not scheme:
        raise MessageError("request without :scheme")
    if path is None:
        raise MessageError("request without :path")
    if scheme in _AUTHORITY_SCHEMES:
        if not path:
            raise MessageError("empty :path")
        authority = pseudo.get(b":authority")
        hosts = [value for name, value in headers if name == b"host"]
        if not authority and not any(hosts):
            raise MessageError("request without :authority or host")
        if authority and any(host != authority for host in hosts):
            raise MessageError(":authority and host differ")
    return info


def validate_push_promise(headers: Sequence[tuple[bytes, bytes]]) -> MessageInfo:
    """A promised request (RFC 9114 §4.6): a request with no content."""
    info = validate_request(headers)
    if info.content_length:
        raise MessageError("promised request with content")
    return info


def validate_response(headers: Sequence[tuple[bytes, bytes]]) -> MessageInfo:
    """A response header section, interim or final (RFC 9114 §4.3.2)."""
    info = _scan(headers, RESPONSE_PSEUDO)
    status = info.pseudo.get(b":status")
    if status is None:
        raise MessageError("response without :status")
    if len(status) != 3 or not status.isdigit():
        raise MessageError(f"invalid :status {status[:16]!r}")
    if status == b"101":
        raise MessageError("HTTP/3 has no 101 (Switching Protocols), RFC 9114 §4.5")
    return info


def validate_trailers(headers: Sequence[tuple[bytes, bytes]]) -> MessageInfo:
    """A trailer section: no pseudo-headers (RFC 9114 §4.3)."""
    return _scan(headers, frozenset())


def is_interim(info: MessageInfo) -> bool:
    """A 1xx response header section."""
    return info.pseudo.get(b":status", b"")[:1] == b"1"
