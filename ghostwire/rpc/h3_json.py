"""The JSON form of RPC values, for the HTTP/3 mapping (docs/protocol.md §11.5).

msgpack carries more than JSON: byte strings, integers past what JSON
parsers keep exactly, and maps whose keys are not strings. Those travel as
one-key objects whose key starts with ``$``:

* bytes                       ``{"$bytes": "<hex>"}`` (lowercase out, any case in);
* an integer outside +-(2**53 - 1)  ``{"$int": "<decimal>"}`` (a plain JSON number
  of any size is read exactly too);
* a map that has a key that is not a string, or that is itself one key
  starting with ``$``    ``{"$map": [[key, value], ...]}``.

Everything else is plain JSON. So the mapping is lossless both ways: the
encoder never writes a one-key ``$`` object for anything but these forms.
Floats that JSON cannot write (NaN, infinities) and values with no JSON form
raise :class:`~.codec.CodecError`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .codec import CodecError, map_from_pairs

JSON_SAFE_INT = (1 << 53) - 1
_TAGS = ("$bytes", "$int", "$map")
_DECIMAL = re.compile(r"-?[0-9]+")


def to_json_value(value: Any) -> Any:
    """``value`` with bytes, big integers and odd maps in their tagged forms."""
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return value
    if isinstance(value, int):
        return value if -JSON_SAFE_INT <= value <= JSON_SAFE_INT else {"$int": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": bytes(value).hex()}
    if isinstance(value, list | tuple):
        return [to_json_value(item) for item in value]
    if isinstance(value, dict):
        plain = all(isinstance(key, str) for key in value)
        if plain and not (len(value) == 1 and next(iter(value)).startswith("$")):
            return {key: to_json_value(item) for key, item in value.items()}
        return {"$map": [[to_json_value(k), to_json_value(v)] for k, v in value.items()]}
    raise CodecError(f"{type(value).__name__} has no JSON form")


def from_json_value(value: Any) -> Any:
    """The inverse of :func:`to_json_value`; CodecError for a malformed tagged form."""
    if isinstance(value, list):
        return [from_json_value(item) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        [(key, item)] = value.items()
        if key in _TAGS:
            return _untag(key, item)
    return {key: from_json_value(item) for key, item in value.items()}


def _untag(tag: str, item: Any) -> Any:
    if tag == "$bytes":
        if not isinstance(item, str):
            raise CodecError('"$bytes" takes a string of hex digits')
        try:
            return bytes.fromhex(item)
        except ValueError:
            raise CodecError(f'"$bytes" is not hex: {item[:40]!r}') from None
    if tag == "$int":
        if not isinstance(item, str) or _DECIMAL.fullmatch(item) is None:
            raise CodecError('"$int" takes a string of decimal digits')
        try:
            return int(item)
        except ValueError as exc:  # past Python's digit limit for int(str)
            raise CodecError(f'"$int": {exc}') from None
    if not isinstance(item, list) or not all(
        isinstance(pair, list) and len(pair) == 2 for pair in item
    ):
        raise CodecError('"$map" takes an array of [key, value] pairs')
    pairs = []
    for key, entry in item:
        key = from_json_value(key)
        if isinstance(key, list | dict):
            raise CodecError('a "$map" key must be a string, number, bytes, bool or null')
        pairs.append((key, from_json_value(entry)))
    return map_from_pairs(pairs)  # integer keys can be aimed at one hash value


def encode_json(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON in the tagged form."""
    try:
        text = json.dumps(
            to_json_value(value), ensure_ascii=False, allow_nan=False, separators=(",", ":")
        )
    except ValueError as exc:  # NaN or an infinity
        raise CodecError(f"cannot encode as JSON: {exc}") from None
    return text.encode()


def decode_json(data: bytes) -> Any:
    """One JSON document (UTF-8) in the tagged form; CodecError if malformed."""
    try:
        value = json.loads(data.decode(), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CodecError(f"malformed JSON: {exc}") from None
    return from_json_value(value)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


__all__ = ["JSON_SAFE_INT", "decode_json", "encode_json", "from_json_value", "to_json_value"]
