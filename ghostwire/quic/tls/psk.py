"""Pre-shared keys for resumption: extension codecs and binders (RFC 8446 §4.2.9-§4.2.11).

Theory of operation: a resuming client puts ``psk_key_exchange_modes``
(we offer and accept only ``psk_dhe_ke``: resumption always runs a fresh
(EC)DHE exchange, so it keeps forward secrecy) and, last of all,
``pre_shared_key`` into its ClientHello. The binder is an HMAC over the
transcript up to and including the ClientHello *truncated* before the
binders list (§4.2.11.2), keyed from the PSK's early secret, so it proves
the client holds the PSK and binds it to this ClientHello. The client
encodes the hello with a zero binder, hashes the truncated bytes, and
patches the real binder in place; the server recomputes it the same way.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from ..buffer import Reader, Writer
from ..suites import hkdf_expand_label, hkdf_extract
from .alerts import decode_error

PSK_KE = 0
PSK_DHE_KE = 1
# RFC 9001 §4.6.1: a QUIC server that allows 0-RTT says 0xffffffff.
QUIC_MAX_EARLY_DATA = 0xFFFFFFFF


def encode_psk_modes(modes: list[int]) -> bytes:
    return bytes((len(modes), *modes))


def decode_psk_modes(data: bytes) -> list[int]:
    if not data or data[0] != len(data) - 1 or data[0] == 0:
        raise decode_error("bad psk_key_exchange_modes extension")
    return list(data[1:])


@dataclass(frozen=True, slots=True)
class PskIdentity:
    identity: bytes
    obfuscated_ticket_age: int


def encode_offered_psks(identities: list[PskIdentity], binders: list[bytes]) -> bytes:
    """The ClientHello ``pre_shared_key`` body (OfferedPsks, §4.2.11)."""
    w = Writer()
    with w.length_prefixed(2):
        for ident in identities:
            w.push_uint16_prefixed(ident.identity)
            w.push_uint32(ident.obfuscated_ticket_age)
    w.push_bytes(binders_block(binders))
    return bytes(w.buf)


def binders_block(binders: list[bytes]) -> bytes:
    """``PskBinderEntry binders<33..2^16-1>`` as it ends the ClientHello."""
    body = b"".join(bytes((len(b),)) + b for b in binders)
    return len(body).to_bytes(2, "big") + body


def decode_offered_psks(data: bytes) -> tuple[list[PskIdentity], list[bytes]]:
    r = Reader(data)
    identities = []
    with r.sub_reader(r.pull_uint16()) as block:
        while not block.eof():
            identity = block.pull_uint16_prefixed()
            if not identity:
                raise decode_error("empty PSK identity")
            identities.append(PskIdentity(identity, block.pull_uint32()))
    binders = []
    with r.sub_reader(r.pull_uint16()) as block:
        while not block.eof():
            binder = block.pull_uint8_prefixed()
            if len(binder) < 32:
                raise decode_error("PSK binder shorter than 32 bytes")
            binders.append(binder)
    if not r.eof():
        raise decode_error("trailing bytes in the pre_shared_key extension")
    if not identities or len(identities) != len(binders):
        # RFC 8446 §4.2.11: one binder per identity.
        raise decode_error("pre_shared_key identities and binders do not match")
    return identities, binders


def encode_selected_identity(index: int) -> bytes:
    return index.to_bytes(2, "big")


def decode_selected_identity(data: bytes) -> int:
    r = Reader(data)
    index = r.pull_uint16()
    if not r.eof():
        raise decode_error("trailing bytes in the pre_shared_key extension")
    return index


def encode_max_early_data(size: int) -> bytes:
    """The NewSessionTicket ``early_data`` body (§4.2.10)."""
    return size.to_bytes(4, "big")


def decode_max_early_data(data: bytes) -> int:
    if len(data) != 4:
        raise decode_error("bad early_data extension in NewSessionTicket")
    return int.from_bytes(data, "big")


# -- secrets ----------------------------------------------------------------


def resumption_psk(hash_name: str, resumption_master_secret: bytes, nonce: bytes) -> bytes:
    """The PSK a ticket stands for (RFC 8446 §4.6.1)."""
    length = hashlib.new(hash_name).digest_size
    return hkdf_expand_label(hash_name, resumption_master_secret, b"resumption", nonce, length)


def early_secret(hash_name: str, psk: bytes) -> bytes:
    """``Early Secret = HKDF-Extract(0, PSK)`` (RFC 8446 §7.1)."""
    return hkdf_extract(hash_name, b"", psk)


def compute_binder(hash_name: str, psk: bytes, transcript_hash: bytes) -> bytes:
    """The binder of a resumption PSK over ``transcript_hash`` (§4.2.11.2).

    ``transcript_hash`` covers everything before this ClientHello (after a
    HelloRetryRequest: message_hash and the HRR) plus the truncated hello.
    """
    empty = hashlib.new(hash_name).digest()
    secret = early_secret(hash_name, psk)
    binder_key = hkdf_expand_label(hash_name, secret, b"res binder", empty, len(empty))
    finished_key = hkdf_expand_label(hash_name, binder_key, b"finished", b"", len(empty))
    return hmac.digest(finished_key, transcript_hash, hash_name)


def truncated_length(hello: bytes, binders: list[bytes]) -> int:
    """Length of ``hello`` without its trailing binders list (§4.2.11.2)."""
    return len(hello) - len(binders_block(binders))
