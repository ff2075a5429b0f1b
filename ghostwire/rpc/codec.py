"""The msgpack codec of every RPC message, with integers of any size.

msgpack carries integers from -2**63 to 2**64 - 1 natively. Amounts and hashes
are uint256, so any integer outside that range travels as an extension:

    ext type 1 ("bigint"): the integer in big-endian two's complement, in the
    fewest bytes that hold it with its sign (so 2**64 is ``00 01 00 .. 00``,
    nine bytes, and -2**63 - 1 is ``FF 7F FF .. FF``, nine bytes).

Everything else is plain msgpack: bytes as bin, str as str (UTF-8), bool, nil,
float64, arrays (tuples become arrays) and maps (keys of any hashable type).
Decoding is lossless for all of these; anything malformed raises
:class:`CodecError` (INVALID_ARGUMENT), never a bare msgpack exception, and
so does a map with more than 64 keys sharing one hash value (a hash flood:
:func:`map_from_pairs`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgpack

from .status import RpcError, Status

BIGINT_EXT = 1
"""The msgpack extension type code of integers past 64 bits."""

_INT64_MIN = -(1 << 63)
_UINT64_MAX = (1 << 64) - 1


class CodecError(RpcError):
    """A value could not be encoded, or bytes could not be decoded, as msgpack."""

    def __init__(self, message: str, status: Status = Status.INVALID_ARGUMENT) -> None:
        super().__init__(status, message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.status))


def encode_bigint(value: int) -> bytes:
    """Big-endian two's complement in the fewest bytes that keep the sign."""
    magnitude_bits = (value if value >= 0 else ~value).bit_length()
    return value.to_bytes(magnitude_bits // 8 + 1, "big", signed=True)  # +1 bit for the sign


def decode_bigint(data: bytes) -> int:
    if not data:
        raise CodecError("empty big-integer extension")
    return int.from_bytes(data, "big", signed=True)


def _default(value: object) -> Any:
    if isinstance(value, int) and not _INT64_MIN <= value <= _UINT64_MAX:
        return msgpack.ExtType(BIGINT_EXT, encode_bigint(int(value)))
    raise TypeError(f"cannot encode {type(value).__name__} as msgpack")


def _ext_hook(code: int, data: bytes) -> Any:
    if code == BIGINT_EXT:
        return decode_bigint(data)
    raise CodecError(f"unknown msgpack extension type {code}")


MAX_KEYS_PER_HASH = 64
"""Most keys of one map that may share one hash value (see :func:`map_from_pairs`)."""


def map_from_pairs(pairs: Iterable[tuple[Any, Any]]) -> dict[Any, Any]:
    """The dict of ``pairs`` (a later key wins), refusing hash floods.

    Python hashes integers without a per-process secret (the value modulo
    2**61 - 1), so a peer can pick thousands of big integers with one hash
    value, and building a dict of them as keys costs time quadratic in
    their number (8,000 such keys: 0.33 s). Strings and bytes are hashed
    with a random key and cannot be aimed this way. CodecError when more
    than :data:`MAX_KEYS_PER_HASH` distinct keys share a hash value.
    """
    out: dict[Any, Any] = {}
    per_hash: dict[int, int] = {}
    for key, value in pairs:
        if key not in out:
            digest = hash(key)
            count = per_hash.get(digest, 0) + 1
            if count > MAX_KEYS_PER_HASH:
                raise CodecError(f"more than {MAX_KEYS_PER_HASH} map keys with one hash value")
            per_hash[digest] = count
        out[key] = value
    return out


class _BigInteger(Exception):
    """Raised by the first decoding pass at the first big integer."""


def _no_big_integers(code: int, data: bytes) -> Any:
    if code == BIGINT_EXT:
        raise _BigInteger
    raise CodecError(f"unknown msgpack extension type {code}")


_packer = msgpack.Packer(default=_default, use_bin_type=True, autoreset=True)


def encode(value: Any) -> bytes:
    """``value`` as msgpack bytes; :class:`CodecError` for what msgpack cannot carry."""
    try:
        return _packer.pack(value)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        _packer.reset()
        raise CodecError(f"cannot encode the message: {exc}") from None


def decode(data: bytes | bytearray | memoryview) -> Any:
    """The value of one whole msgpack document; :class:`CodecError` if malformed."""
    try:
        try:
            return msgpack.unpackb(
                data, raw=False, strict_map_key=False, ext_hook=_no_big_integers, use_list=True
            )
        except _BigInteger:
            # Only big integers can be map keys with one hash value by the
            # thousand (other msgpack keys: a dozen at most), so only a
            # message with one builds its maps checked, in a second pass.
            return msgpack.unpackb(
                data,
                raw=False,
                strict_map_key=False,
                ext_hook=_ext_hook,
                object_pairs_hook=map_from_pairs,
                use_list=True,
            )
    except CodecError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise CodecError(f"malformed msgpack: {type(exc).__name__}: {exc}") from None


__all__ = [
    "BIGINT_EXT",
    "MAX_KEYS_PER_HASH",
    "CodecError",
    "decode",
    "decode_bigint",
    "encode",
    "encode_bigint",
    "map_from_pairs",
]
