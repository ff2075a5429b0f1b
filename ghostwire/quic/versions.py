"""Compatible version negotiation (RFC 9368) between QUIC v1 and v2 (RFC 9369).

Theory of operation: the client sends its first flight in its *original*
version and lists, in the version_information transport parameter, that
version (the chosen one) and every version it supports in preference order.
A server that prefers another listed version *compatible* with the original
(v1 and v2 are, RFC 9369 §4) answers in that version: its Initial packets use
the new version's keys, derived from the same connection ID, and the client
follows on seeing them. Each side then checks the other's version_information
(RFC 9368 §4, downgrade prevention): the client's chosen version must be the
version of its first packets, the server's chosen version the one
negotiated. Transport parameters are authenticated by TLS, so an attacker
that rewrote the Initial packets is caught here.
"""

from __future__ import annotations

from collections.abc import Sequence

from .config import ClientConfig, ServerConfig
from .errors import QuicProtocolError, TransportErrorCode
from .packet import QUIC_V1, QUIC_V2
from .transport_params import TransportParameters, VersionInformation

_COMPATIBLE = frozenset({(QUIC_V1, QUIC_V2), (QUIC_V2, QUIC_V1)})


def compatible(from_version: int, to_version: int) -> bool:
    """Whether a first flight in ``from_version`` converts to ``to_version``."""
    return from_version == to_version or (from_version, to_version) in _COMPATIBLE


def first_flight_version(config: ClientConfig | ServerConfig) -> int:
    """The client's original version: ``original_version``, else its first choice."""
    if isinstance(config, ClientConfig) and config.original_version is not None:
        return config.original_version
    return config.versions[0]


def version_information(chosen: int, supported: Sequence[int]) -> VersionInformation:
    """Our version_information: the chosen version, then all we support."""
    return VersionInformation(chosen, tuple(supported))


def _error(reason: str) -> QuicProtocolError:
    return QuicProtocolError(TransportErrorCode.VERSION_NEGOTIATION_ERROR, reason)


def server_choose_version(
    original: int, server_versions: Sequence[int], client_params: TransportParameters
) -> int:
    """The version a server settles on for a client whose first flight was ``original``.

    Checks the client's version_information first (RFC 9368 §4): its chosen
    version must be the version its Initial packets carried.
    """
    info = client_params.version_information
    if info is None:
        return original  # a client without RFC 9368 support: no upgrade
    if info.chosen_version != original:
        raise _error(
            f"client's version_information chose 0x{info.chosen_version:08x} but its "
            f"packets are version 0x{original:08x} (RFC 9368 §4)"
        )
    offered = set(info.available_versions) | {info.chosen_version}
    for version in server_versions:  # our preference order
        if version in offered and compatible(original, version):
            return version
    return original


def client_check_server_version(negotiated: int, server_params: TransportParameters) -> None:
    """The server's version_information must name the version both speak
    (RFC 9368 §4); endpoints supporting v2 must send it (RFC 9369 §4)."""
    info = server_params.version_information
    if info is None:
        if negotiated != QUIC_V1:
            raise _error("server sent no version_information for a version other than v1")
        return
    if info.chosen_version != negotiated:
        raise _error(
            f"server's version_information chose 0x{info.chosen_version:08x} but the "
            f"connection uses 0x{negotiated:08x} (RFC 9368 §4)"
        )
