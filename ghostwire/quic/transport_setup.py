"""What a connection tells the peer about itself, and what it checks in return.

* :func:`build_tls_settings` turns a user config into the TLS engine's settings.
* :func:`local_transport_parameters` is our side of the transport parameter
  exchange (RFC 9000 §18), derived from the config and connection IDs.
* :func:`validate_peer_cids` performs the connection ID authentication of
  RFC 9000 §7.3: the IDs the peer put in its transport parameters must match
  the ones seen in packet headers, which defeats tampering with the
  unauthenticated Initial and Retry packets.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING

from .config import ClientConfig, ServerConfig
from .errors import QuicProtocolError, TransportErrorCode
from .tls import SessionTicket, TicketStore, TlsSettings
from .tls.settings import normalize_server_name
from .transport_params import (
    TransportParameters,
    VersionInformation,
    decode_transport_parameters,
    encode_transport_parameters,
)

if TYPE_CHECKING:
    from .connection import QuicConnection

# Our ACK policy's promise (RFC 9000 §18.2 max_ack_delay, milliseconds).
MAX_ACK_DELAY_MS = 25
ACK_DELAY_EXPONENT = 3
# Largest UDP payload we accept: what our receive buffers hold.
MAX_UDP_PAYLOAD = 65527


def build_tls_settings(
    config: ClientConfig | ServerConfig,
    server_name: str | None,
    keylog: Callable[[str], None] | None,
    transport_parameters_for: Callable[[bytes], bytes] | None = None,
    early_data_check: Callable[[bytes], bool] | None = None,
) -> TlsSettings:
    common = {
        "alpn_protocols": list(config.alpn),
        "cipher_suites": list(config.cipher_suites),
        "groups": list(config.groups),
        "certificate_chain": list(config.certificate_chain),
        "private_key": config.private_key,
        "keylog": keylog,
    }
    if config.signature_schemes is not None:
        common["signature_schemes"] = list(config.signature_schemes)
    if isinstance(config, ClientConfig):
        name = config.server_name or server_name
        store = config.session_tickets
        return TlsSettings(
            is_client=True,
            server_name=name,
            verify_peer=config.verify,
            trust_store=config.trust_store,
            request_tickets=store is not None,
            session_ticket=_ticket_for(store, name, common["alpn_protocols"]),
            early_data=config.early_data,
            **common,
        )
    return TlsSettings(
        is_client=False,
        transport_parameters_for=transport_parameters_for,
        ticket_issuer=config.ticket_issuer,
        early_data=config.early_data,
        early_data_check=early_data_check,
        verify_peer=config.client_trust_store is not None,
        trust_store=config.client_trust_store,
        request_client_certificate=config.client_trust_store is not None,
        require_client_certificate=config.require_client_cert,
        **common,
    )


def _ticket_for(
    store: TicketStore | None, name: str | None, alpn: list[str]
) -> SessionTicket | None:
    """A stored ticket to resume with (taken out: tickets are used once)."""
    if store is None or not name:
        return None
    return store.take(normalize_server_name(name), alpn)


def is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def local_transport_parameters(conn: QuicConnection) -> TransportParameters:
    config = conn.config
    params = TransportParameters(
        max_idle_timeout=int(config.idle_timeout * 1000),
        max_udp_payload_size=MAX_UDP_PAYLOAD,
        initial_max_data=config.initial_max_data,
        initial_max_stream_data_bidi_local=config.initial_max_stream_data,
        initial_max_stream_data_bidi_remote=config.initial_max_stream_data,
        initial_max_stream_data_uni=config.initial_max_stream_data,
        initial_max_streams_bidi=config.max_streams_bidi,
        initial_max_streams_uni=config.max_streams_uni,
        ack_delay_exponent=ACK_DELAY_EXPONENT,
        max_ack_delay=MAX_ACK_DELAY_MS,
        active_connection_id_limit=config.active_connection_id_limit,
        initial_source_connection_id=conn.host_cid,
        # RFC 9368 §3: our chosen version and every version we support.
        version_information=VersionInformation(conn.version, tuple(config.versions)),
    )
    if not conn.is_client:
        params.original_destination_connection_id = conn.original_dcid
        params.retry_source_connection_id = conn.retry_scid
        params.stateless_reset_token = conn.local_cids.initial.stateless_reset_token
    return params


def read_local_params(kept: TransportParameters | bytes, is_client: bool) -> TransportParameters:
    """Our transport parameters as a connection keeps them (RFC 9000 §18).

    Only the handshake reads them: a server keeps just their encoding once the
    handshake is confirmed (the object and its values are ~350 bytes, the
    encoding about half); reading them then decodes a copy, equal to the object.
    """
    if type(kept) is bytes:
        return decode_transport_parameters(kept, from_server=not is_client)
    assert type(kept) is TransportParameters
    return kept


def local_params_encoding(kept: TransportParameters | bytes) -> bytes:
    """The encoding of our transport parameters as a connection keeps them."""
    if type(kept) is bytes:
        return kept
    assert type(kept) is TransportParameters
    return encode_transport_parameters(kept)


def validate_peer_cids(conn: QuicConnection, params: TransportParameters) -> None:
    """RFC 9000 §7.3: authenticate the connection IDs used during the handshake."""

    def fail(what: str) -> QuicProtocolError:
        return QuicProtocolError(
            TransportErrorCode.TRANSPORT_PARAMETER_ERROR, f"{what} does not match (RFC 9000 §7.3)"
        )

    if params.initial_source_connection_id is None:
        raise fail("missing initial_source_connection_id")
    expected_scid = conn.peer_initial_scid
    if expected_scid is not None and params.initial_source_connection_id != expected_scid:
        raise fail("initial_source_connection_id")
    if not conn.is_client:
        return
    if params.original_destination_connection_id != conn.original_dcid:
        raise fail("original_destination_connection_id")
    if params.retry_source_connection_id != conn.retry_scid:
        raise fail("retry_source_connection_id")
