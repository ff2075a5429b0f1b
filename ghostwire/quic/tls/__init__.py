"""TLS 1.3 for QUIC (RFC 8446, RFC 9001 §4 and §8), sans-IO.

The connection drives a :class:`TlsHandshake` configured by
:class:`TlsSettings`; failures raise :class:`TlsAlert` (certificate problems
:class:`CertificateVerificationError`). Module map:

=================  ==========================================================
``messages``       handshake message framing and codecs
``extensions``     extension codecs and where each extension is allowed
``key_exchange``   (EC)DHE key shares (X25519, P-256, P-384)
``key_schedule``   transcript hash and the RFC 8446 §7.1 secret chain
``signatures``     CertificateVerify schemes, signing and checking
``verify``         trust stores, certificate chain checks
``files``          reading certificates, keys and CA bundles (config time)
``settings``       :class:`TlsSettings`
``engine``         state and steps shared by both roles; :class:`KeyChange`
``client``         the client state machine
``server``         the server state machine
``handshake``      :class:`TlsHandshake`, the façade the connection uses
``psk``            pre_shared_key and related extensions, PSK binders
``tickets``        :class:`TicketIssuer` (server), :class:`SessionTicket`
                   and :class:`TicketStore` (client)
``alerts``         alert codes and exceptions
``keylog``         NSS key log lines
=================  ==========================================================
"""

from .alerts import AlertDescription, CertificateVerificationError, TlsAlert, alert_name
from .engine import KeyChange
from .files import (
    TrustStoreError,
    load_certificate_chain,
    load_private_key,
    load_trust_store,
    system_trust_store,
)
from .handshake import TlsHandshake
from .key_exchange import DEFAULT_GROUPS, Group
from .messages import NewSessionTicket
from .settings import DEFAULT_CIPHER_SUITES, TlsSettings
from .signatures import DEFAULT_SIGNATURE_SCHEMES, PrivateKey, SignatureScheme
from .tickets import (
    MemoryTicketStore,
    SessionTicket,
    TicketError,
    TicketIssuer,
    TicketStore,
)
from .verify import TrustStore, verify_client_certificate, verify_server_certificate

__all__ = [
    "DEFAULT_CIPHER_SUITES",
    "DEFAULT_GROUPS",
    "DEFAULT_SIGNATURE_SCHEMES",
    "AlertDescription",
    "CertificateVerificationError",
    "Group",
    "KeyChange",
    "MemoryTicketStore",
    "NewSessionTicket",
    "PrivateKey",
    "SessionTicket",
    "SignatureScheme",
    "TicketError",
    "TicketIssuer",
    "TicketStore",
    "TlsAlert",
    "TlsHandshake",
    "TlsSettings",
    "TrustStore",
    "TrustStoreError",
    "alert_name",
    "load_certificate_chain",
    "load_private_key",
    "load_trust_store",
    "system_trust_store",
    "verify_client_certificate",
    "verify_server_certificate",
]
