"""The msgpack codec of every RPC message, with integers of any size.

msgpack carries integers from -2**63 to 2**64 - 1 natively. Amounts and hashes
are uint256, so any integer outside that range travels as an extension:

    ext type 1 ("bigint"): the integer in big-endian two's complement, in the
    fewest bytes that hold it with its sign (so 2**64 is ``00 01 00 .. 00``,
    nine bytes, and -2**63 - 1 is ``FF 7F FF .. FF``, nine bytes).

Everything else is plain msgpack: bytes as bin, str as str (UTF-8), bool, nil,
float64, arrays (tuples become arrays) and maps (keys of any hashable type).
Decoding is lossless for all of these; anything malformed raises
:class:`CodecError` (INVALID_ARGUMENT), never a bare msgpack exception.
"""

from __future__ import annotations

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
        return msgpack.unpackb(
            data, raw=False, strict_map_key=False, ext_hook=_ext_hook, use_list=True
        )
    except CodecError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise CodecError(f"malformed msgpack: {type(exc).__name__}: {exc}") from None


__all__ = ["BIGINT_EXT", "CodecError", "decode", "decode_bigint", "encode", "encode_bigint"]
