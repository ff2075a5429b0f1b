"""Header fields between the wire (bytes, as QPACK delivers them) and the
application (``str`` pairs), for the client, the server and ASGI alike."""

from __future__ import annotations

from collections.abc import Iterable

from ..events import Headers

TextHeaders = list[tuple[str, str]]


def split_pseudo(headers: Headers) -> tuple[dict[bytes, bytes], Headers]:
    """A section's pseudo-headers (``:method``, ``:status``...) and its regular fields."""
    pseudo: dict[bytes, bytes] = {}
    regular: Headers = []
    for name, value in headers:
        if name.startswith(b":"):
            pseudo[name] = value
        else:
            regular.append((name, value))
    return pseudo, regular


def to_text(headers: Iterable[tuple[bytes, bytes]]) -> TextHeaders:
    """Fields for the application (latin-1, which any byte decodes as)."""
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]


def to_wire(headers: Iterable[tuple[str, str]]) -> Headers:
    """Application fields for the wire; names lowercased (RFC 9114 §4.2)."""
    return [(name.lower().encode(), value.encode()) for name, value in headers]


def first_value(headers: TextHeaders, name: str, default: str | None = None) -> str | None:
    """The first value of a field (names are lowercase in HTTP/3)."""
    name = name.lower()
    for key, value in headers:
        if key == name:
            return value
    return default
