"""The TLS 1.3 client state machine for QUIC (RFC 8446 §2, RFC 9001 §4).

Theory of operation::

    START --start()--> WAIT_SERVER_HELLO --HRR--> WAIT_SERVER_HELLO (once)
    WAIT_SERVER_HELLO --ServerHello--> WAIT_ENCRYPTED_EXTENSIONS        [Handshake keys]
    WAIT_ENCRYPTED_EXTENSIONS --> WAIT_CERTIFICATE_OR_REQUEST
    WAIT_CERTIFICATE_OR_REQUEST --CertificateRequest--> WAIT_CERTIFICATE
    WAIT_CERTIFICATE(_OR_REQUEST) --Certificate--> WAIT_CERTIFICATE_VERIFY
    WAIT_CERTIFICATE_VERIFY --> WAIT_FINISHED --Finished--> CONNECTED  [1-RTT keys]
    CONNECTED accepts NewSessionTicket only.

Resumption (RFC 8446 §2.2): with ``settings.session_ticket`` the
ClientHello offers its PSK (psk_dhe_ke only) and, when asked and allowed,
0-RTT, whose write key is installed right after the ClientHello. A server
that accepts the PSK skips its certificate: WAIT_ENCRYPTED_EXTENSIONS goes
straight to WAIT_FINISHED. There is no EndOfEarlyData in QUIC (RFC 9001 §8.3).

The table :data:`_TRANSITIONS` is the machine: per state, the epoch messages
must arrive at and the handler of each accepted message type. Everything the
server says is checked against what we offered; a HelloRetryRequest restarts
the ClientHello with the requested group and the transcript's message_hash.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from enum import Enum, auto
from functools import partial

from ..errors import QuicProtocolError, TransportErrorCode
from ..suites import CipherSuite, Epoch
from .alerts import (
    AlertDescription,
    TlsAlert,
    illegal_parameter,
    missing_extension,
    unexpected_message,
)
from .engine import Handler, HandshakeEngine
from .extensions import (
    ALLOWED_IN,
    HELLO_RETRY_REQUEST,
    ExtensionType,
    decode_alpn,
    decode_cookie,
    decode_hrr_key_share,
    decode_selected_version,
    decode_server_key_share,
    decode_signature_algorithms,
    encode_alpn,
    encode_client_key_shares,
    encode_client_versions,
    encode_cookie,
    encode_server_name,
    encode_signature_algorithms,
    encode_supported_groups,
)
from .key_exchange import Group, KeyShare, want_key_share
from .key_schedule import KeySchedule
from .keylog import (
    CLIENT_EARLY,
    CLIENT_HANDSHAKE,
    CLIENT_TRAFFIC_0,
    SERVER_HANDSHAKE,
    SERVER_TRAFFIC_0,
)
from .messages import (
    TLS13,
    Certificate,
    CertificateRequest,
    ClientHello,
    EncryptedExtensions,
    Extensions,
    HandshakeType,
    NewSessionTicket,
    ServerHello,
)
from .psk import (
    PSK_DHE_KE,
    QUIC_MAX_EARLY_DATA,
    PskIdentity,
    binders_block,
    compute_binder,
    decode_max_early_data,
    decode_selected_identity,
    encode_offered_psks,
    encode_psk_modes,
    resumption_psk,
    truncated_length,
)
from .settings import TlsSettings
from .signatures import CERTIFICATE_ONLY, choose_scheme
from .tickets import SessionTicket
from .verify import verify_server_certificate

T = HandshakeType
E = ExtensionType


class ClientState(Enum):
    START = auto()
    WAIT_SERVER_HELLO = auto()
    WAIT_ENCRYPTED_EXTENSIONS = auto()
    WAIT_CERTIFICATE_OR_REQUEST = auto()
    WAIT_CERTIFICATE = auto()
    WAIT_CERTIFICATE_VERIFY = auto()
    WAIT_FINISHED = auto()
    CONNECTED = auto()


class ClientHandshake(HandshakeEngine):
    """The client side of a TLS 1.3 handshake."""

    state: ClientState

    def __init__(self, settings: TlsSettings, transport_parameters: bytes) -> None:
        super().__init__(settings, transport_parameters)
        self.state = ClientState.START
        self._key_share: KeyShare | None = None
        self._offered_extensions: frozenset[int] = frozenset()
        self._hrr_suite: CipherSuite | None = None
        self._certificate_request: CertificateRequest | None = None

    # -- dispatch ----------------------------------------------------------

    @property
    def expected_epoch(self) -> Epoch:
        return _TRANSITIONS[self.state][0]

    def handler_for(self, msg_type: int) -> Handler | None:
        handler = _TRANSITIONS[self.state][1].get(msg_type)
        return None if handler is None else partial(handler, self)

    # -- ClientHello -------------------------------------------------------

    def start(self) -> None:
        """Write the first ClientHello at the Initial level."""
        if self.state is not ClientState.START:
            raise RuntimeError("start() was already called")
        self.client_random = os.urandom(32)
        self._key_share = KeyShare(self.settings.groups[0], client=True)
        ticket = self._ticket_to_offer()
        # RFC 9001 §4.6.1: a QUIC ticket allows 0-RTT with 0xffffffff, or not at all.
        self.early_data_offered = bool(
            ticket is not None
            and self.settings.early_data
            and ticket.max_early_data == QUIC_MAX_EARLY_DATA
        )
        self._send_client_hello(cookie=None)
        if ticket is not None and self.early_data_offered:
            self._start_early_data(ticket)
        self.state = ClientState.WAIT_SERVER_HELLO

    def _send_client_hello(self, cookie: bytes | None) -> None:
        settings = self.settings
        share = self._key_share
        if share is None:
            raise RuntimeError("no key share")
        extensions: Extensions = {}
        sni = settings.sni
        if sni is not None:
            extensions[E.SERVER_NAME] = encode_server_name(sni)
        extensions[E.SUPPORTED_GROUPS] = encode_supported_groups(settings.groups)
        extensions[E.SIGNATURE_ALGORITHMS] = encode_signature_algorithms(settings.signature_schemes)
        extensions[E.ALPN] = encode_alpn(p.encode() for p in settings.alpn_protocols)
        extensions[E.SUPPORTED_VERSIONS] = encode_client_versions([TLS13])
        extensions[E.KEY_SHARE] = encode_client_key_shares([(share.group, share.public_bytes)])
        if cookie is not None:
            extensions[E.COOKIE] = encode_cookie(cookie)
        extensions[E.QUIC_TRANSPORT_PARAMETERS] = self.transport_parameters
        ticket = self._ticket_to_offer()
        if settings.request_tickets or ticket is not None:
            # Servers issue tickets only for a mode we listed (RFC 8446 §4.2.9).
            extensions[E.PSK_KEY_EXCHANGE_MODES] = encode_psk_modes([PSK_DHE_KE])
        if ticket is not None and self.early_data_offered:
            extensions[E.EARLY_DATA] = b""
        if ticket is not None:
            # RFC 8446 §4.2.11: pre_shared_key is the last extension.
            identity = PskIdentity(ticket.ticket, ticket.obfuscated_age(settings.clock()))
            zero = bytes(ticket.cipher_suite.hash_length)
            extensions[E.PRE_SHARED_KEY] = encode_offered_psks([identity], [zero])
        self._offered_extensions = frozenset(extensions)
        # RFC 9001 §8.4: no middlebox compatibility mode, so no legacy_session_id.
        hello = ClientHello(self.client_random, list(settings.cipher_suites), extensions).encode()
        if ticket is not None:
            hello = self._bind(hello, ticket)
        self.send(Epoch.INITIAL, hello)

    def _ticket_to_offer(self) -> SessionTicket | None:
        """The ticket this ClientHello can offer (None: a full handshake)."""
        ticket = self.settings.session_ticket
        if ticket is None or ticket.cipher_suite not in self.settings.cipher_suites:
            return None
        if (
            self._hrr_suite is not None
            and self._hrr_suite.hash_name != ticket.cipher_suite.hash_name
        ):
            return None  # RFC 8446 §4.1.4: the PSK must fit the suite the HRR chose
        if ticket.expired(self.settings.clock()):
            return None
        return ticket

    def _bind(self, hello: bytes, ticket: SessionTicket) -> bytes:
        """Patch the real binder into ``hello`` (RFC 8446 §4.2.11.2)."""
        hash_name = ticket.cipher_suite.hash_name
        zero = bytes(ticket.cipher_suite.hash_length)
        cut = truncated_length(hello, [zero])
        binder = compute_binder(
            hash_name, ticket.psk, self.transcript.digest_with(hash_name, hello[:cut])
        )
        return hello[:cut] + binders_block([binder])

    def _start_early_data(self, ticket: SessionTicket) -> None:
        """Install the 0-RTT write key (RFC 8446 §7.1 ``c e traffic``) after ClientHello1."""
        suite = ticket.cipher_suite
        digest = self.transcript.digest_with(suite.hash_name, b"")
        secret = KeySchedule(suite, ticket.psk).client_early_traffic_secret(digest)
        self.install(Epoch.ZERO_RTT, True, secret, CLIENT_EARLY, suite)

    # -- ServerHello / HelloRetryRequest ------------------------------------

    def _on_server_hello(self, message: bytes) -> None:
        hello = ServerHello.parse(message)
        self._check_hello_common(hello)
        if hello.is_hello_retry_request:
            self._on_hello_retry_request(hello, message)
            return
        self._check_extensions(hello.extensions, T.SERVER_HELLO)
        suite = CipherSuite(hello.cipher_suite)
        if self._hrr_suite is not None and suite != self._hrr_suite:
            # RFC 8446 §4.1.4: the suite must be the one the HRR chose.
            raise illegal_parameter("ServerHello cipher suite differs from the HelloRetryRequest")
        share = self._key_share
        if E.KEY_SHARE not in hello.extensions or share is None:
            raise missing_extension("ServerHello has no key_share (PSK-only is not supported)")
        group, peer_key = decode_server_key_share(hello.extensions[E.KEY_SHARE])
        if group != share.group:
            raise illegal_parameter(f"server key_share is for group {group}, not the one offered")
        shared_secret = share.exchange(peer_key)
        self._key_share = None
        schedule = self.negotiated(suite, self._accepted_psk(hello, suite))
        self.group = share.group
        self.transcript.update(message)
        client_hs, server_hs = schedule.handshake_traffic_secrets(
            shared_secret, self.transcript.digest()
        )
        self._client_hs_secret, self._server_hs_secret = client_hs, server_hs
        self.install(Epoch.HANDSHAKE, False, server_hs, SERVER_HANDSHAKE)
        self.install(Epoch.HANDSHAKE, True, client_hs, CLIENT_HANDSHAKE)
        self.state = ClientState.WAIT_ENCRYPTED_EXTENSIONS

    def _accepted_psk(self, hello: ServerHello, suite: CipherSuite) -> bytes | None:
        """The PSK the server selected, or None for a full handshake (§4.2.11)."""
        if E.PRE_SHARED_KEY not in hello.extensions:
            return None
        ticket = self.settings.session_ticket
        if decode_selected_identity(hello.extensions[E.PRE_SHARED_KEY]) != 0 or ticket is None:
            raise illegal_parameter("server selected a PSK we did not offer")
        if suite.hash_name != ticket.cipher_suite.hash_name:
            raise illegal_parameter("server selected a suite whose hash does not fit the PSK")
        self.resumed = True
        return ticket.psk

    def _check_hello_common(self, hello: ServerHello) -> None:
        """Checks a ServerHello and a HelloRetryRequest share (RFC 8446 §4.1.3)."""
        extensions = hello.extensions
        if E.SUPPORTED_VERSIONS not in extensions:
            raise TlsAlert(AlertDescription.PROTOCOL_VERSION, "server does not speak TLS 1.3")
        version = decode_selected_version(extensions[E.SUPPORTED_VERSIONS])
        if version != TLS13:
            raise illegal_parameter(f"server selected version 0x{version:04x}, not TLS 1.3")
        if hello.legacy_version != 0x0303:
            raise TlsAlert(AlertDescription.PROTOCOL_VERSION, "bad ServerHello legacy_version")
        if hello.legacy_session_id_echo:
            raise illegal_parameter("legacy_session_id_echo does not match (it must be empty)")
        if hello.legacy_compression_method != 0:
            raise illegal_parameter("legacy_compression_method must be 0")
        if hello.cipher_suite not in self.settings.cipher_suites:
            raise illegal_parameter(f"server chose cipher suite 0x{hello.cipher_suite:04x}")

    def _check_extensions(self, extensions: Extensions, where: int) -> None:
        """RFC 8446 §4.2: only answers to what we offered, only where allowed."""
        allowed = ALLOWED_IN[where]
        for ext_type in extensions:
            offered = ext_type in self._offered_extensions
            if not offered and not (where == HELLO_RETRY_REQUEST and ext_type == E.COOKIE):
                raise TlsAlert(
                    AlertDescription.UNSUPPORTED_EXTENSION, f"unrequested extension {ext_type}"
                )
            if ext_type not in allowed:
                raise illegal_parameter(f"extension {ext_type} is not allowed there")

    def _on_hello_retry_request(self, hello: ServerHello, message: bytes) -> None:
        if self.hello_retry_request_received:
            # RFC 8446 §4.1.4: a second HelloRetryRequest is unexpected_message.
            raise unexpected_message("second HelloRetryRequest")
        self._check_extensions(hello.extensions, HELLO_RETRY_REQUEST)
        previous = self._key_share
        selected = None
        if E.KEY_SHARE in hello.extensions:
            selected = decode_hrr_key_share(hello.extensions[E.KEY_SHARE])
            # RFC 8446 §4.2.8: a group we offered, and not the one we sent a share for.
            if selected not in self.settings.groups:
                raise illegal_parameter(f"HelloRetryRequest asks for unoffered group {selected}")
            if previous is not None and selected == previous.group:
                raise illegal_parameter("HelloRetryRequest asks for the group already sent")
        cookie = decode_cookie(hello.extensions[E.COOKIE]) if E.COOKIE in hello.extensions else None
        if selected is None and cookie is None:
            raise illegal_parameter("HelloRetryRequest would not change the ClientHello")
        suite = CipherSuite(hello.cipher_suite)
        self.hello_retry_request_received = True
        self.early_data_offered = False  # RFC 8446 §4.2.10: no 0-RTT after an HRR
        self._hrr_suite = suite
        self.negotiated(suite)
        self.transcript.replace_with_message_hash()
        self.transcript.update(message)
        if selected is not None:
            self._key_share = KeyShare(Group(selected), client=True)
        self._send_client_hello(cookie)

    # -- EncryptedExtensions -----------------------------------------------

    def _on_encrypted_extensions(self, message: bytes) -> None:
        extensions = EncryptedExtensions.parse(message).extensions
        self._check_extensions(extensions, T.ENCRYPTED_EXTENSIONS)
        # RFC 9001 §8.1: the server must select one of our protocols.
        if E.ALPN not in extensions:
            raise TlsAlert(AlertDescription.NO_APPLICATION_PROTOCOL, "server selected no ALPN")
        names = decode_alpn(extensions[E.ALPN])
        offered = {p.encode(): p for p in self.settings.alpn_protocols}
        if len(names) != 1 or names[0] not in offered:
            raise TlsAlert(
                AlertDescription.NO_APPLICATION_PROTOCOL,
                "server selected an ALPN protocol we did not offer",
            )
        # RFC 9001 §8.2: the transport parameters extension is mandatory.
        if E.QUIC_TRANSPORT_PARAMETERS not in extensions:
            raise missing_extension("no quic_transport_parameters from the server")
        self.transcript.update(message)
        self.alpn_protocol = offered[names[0]]
        self.peer_transport_parameters = extensions[E.QUIC_TRANSPORT_PARAMETERS]
        if E.EARLY_DATA in extensions:
            self._check_early_data_accepted()
            self.early_data_accepted = True
        # RFC 8446 §2.2: a PSK handshake has no certificate.
        self.state = (
            ClientState.WAIT_FINISHED if self.resumed else ClientState.WAIT_CERTIFICATE_OR_REQUEST
        )

    def _check_early_data_accepted(self) -> None:
        """RFC 8446 §4.2.10: a server accepting 0-RTT did so for what it was
        sent under: the first PSK (that is, resumption), and the ticket's cipher
        suite and ALPN; anything else is illegal_parameter."""
        ticket = self.settings.session_ticket
        if not self.early_data_offered or not self.resumed or ticket is None:
            raise illegal_parameter("server accepted 0-RTT we did not offer")
        if self.cipher_suite != ticket.cipher_suite:
            raise illegal_parameter("server accepted 0-RTT under another cipher suite")
        if self.alpn_protocol != ticket.alpn:
            raise illegal_parameter("server accepted 0-RTT under another ALPN protocol")

    # -- CertificateRequest / Certificate / CertificateVerify --------------

    def _on_certificate_request(self, message: bytes) -> None:
        request = CertificateRequest.parse(message)
        if E.SIGNATURE_ALGORITHMS not in request.extensions:
            raise missing_extension("CertificateRequest has no signature_algorithms")
        decode_signature_algorithms(request.extensions[E.SIGNATURE_ALGORITHMS])
        self.transcript.update(message)
        self._certificate_request = request
        self.state = ClientState.WAIT_CERTIFICATE

    def _on_certificate(self, message: bytes) -> None:
        chain = self.parse_certificate(message, b"")
        if not chain:
            # RFC 8446 §4.4.2.4: a server must send a certificate.
            raise TlsAlert(AlertDescription.DECODE_ERROR, "server sent no certificate")
        self.peer_certificates = chain
        settings = self.settings
        if settings.verify_peer and settings.server_name is not None:
            verify_server_certificate(
                chain, settings.server_name, settings.trust_store, settings.now
            )
        self.state = ClientState.WAIT_CERTIFICATE_VERIFY

    def _on_certificate_verify(self, message: bytes) -> None:
        self.check_certificate_verify(message, self.settings.signature_schemes, server=True)
        self.state = ClientState.WAIT_FINISHED

    # -- Finished ----------------------------------------------------------

    def _on_finished(self, message: bytes) -> None:
        self.check_finished(message, self._server_hs_secret)
        schedule = self.schedule
        client_ap, server_ap = schedule.application_traffic_secrets(self.transcript.digest())
        if self._certificate_request is not None:
            self._send_client_certificate(self._certificate_request)
        self.send_finished(Epoch.HANDSHAKE, self._client_hs_secret)
        self._resumption_master_secret = schedule.resumption_master_secret(self.transcript.digest())
        self.install(Epoch.ONE_RTT, True, client_ap, CLIENT_TRAFFIC_0)
        self.install(Epoch.ONE_RTT, False, server_ap, SERVER_TRAFFIC_0)
        self._client_hs_secret = self._server_hs_secret = b""
        self.complete = True
        self.state = ClientState.CONNECTED

    def _send_client_certificate(self, request: CertificateRequest) -> None:
        """Certificate (+ CertificateVerify) answering a CertificateRequest (§4.4.2)."""
        settings = self.settings
        key = settings.private_key
        scheme = None
        if key is not None:
            offered = decode_signature_algorithms(request.extensions[E.SIGNATURE_ALGORITHMS])
            ours = [s for s in settings.signature_schemes if s not in CERTIFICATE_ONLY]
            scheme = choose_scheme(key, ours, offered)
        if key is None or scheme is None:
            # No (suitable) identity: an empty Certificate lets the server decide.
            self.send(Epoch.HANDSHAKE, _empty_certificate(request.context))
            return
        self.send_certificate(Epoch.HANDSHAKE, request.context)
        self.send_certificate_verify(Epoch.HANDSHAKE, key, scheme, server=False)

    # -- after the handshake -----------------------------------------------

    def _on_new_session_ticket(self, message: bytes) -> None:
        ticket = NewSessionTicket.parse(message)
        max_early = 0
        if E.EARLY_DATA in ticket.extensions:
            max_early = decode_max_early_data(ticket.extensions[E.EARLY_DATA])
            if max_early != QUIC_MAX_EARLY_DATA:
                # RFC 9001 §4.6.1.
                raise QuicProtocolError(
                    TransportErrorCode.PROTOCOL_VIOLATION,
                    "NewSessionTicket early_data is not 0xffffffff (RFC 9001 §4.6.1)",
                )
        if len(self.session_tickets) >= 8:
            return  # a server sending ticket after ticket gets no more memory
        self.session_tickets.append(ticket)
        suite = self.cipher_suite
        name = self.settings.server_name
        if ticket.lifetime == 0 or suite is None or name is None or self.alpn_protocol is None:
            return
        self.new_tickets.append(
            SessionTicket(
                server_name=name,
                alpn=self.alpn_protocol,
                cipher_suite=suite,
                ticket=ticket.ticket,
                psk=resumption_psk(suite.hash_name, self._resumption_master_secret, ticket.nonce),
                age_add=ticket.age_add,
                lifetime=min(ticket.lifetime, 604800),  # RFC 8446 §4.6.1: at most 7 days
                received_at=self.settings.clock(),
                max_early_data=max_early,
                transport_parameters=self.peer_transport_parameters or b"",
            )
        )
        # A ticket: a resumed connect will follow. Its key pair ahead, off its path.
        want_key_share(self.settings.groups[0], client=True)


def _empty_certificate(context: bytes) -> bytes:
    return Certificate(context, []).encode()


_Fn = Callable[[ClientHandshake, bytes], None]
_C = ClientHandshake
_TRANSITIONS: dict[ClientState, tuple[Epoch, dict[int, _Fn]]] = {
    ClientState.START: (Epoch.INITIAL, {}),
    ClientState.WAIT_SERVER_HELLO: (Epoch.INITIAL, {T.SERVER_HELLO: _C._on_server_hello}),
    ClientState.WAIT_ENCRYPTED_EXTENSIONS: (
        Epoch.HANDSHAKE,
        {T.ENCRYPTED_EXTENSIONS: _C._on_encrypted_extensions},
    ),
    ClientState.WAIT_CERTIFICATE_OR_REQUEST: (
        Epoch.HANDSHAKE,
        {T.CERTIFICATE_REQUEST: _C._on_certificate_request, T.CERTIFICATE: _C._on_certificate},
    ),
    ClientState.WAIT_CERTIFICATE: (Epoch.HANDSHAKE, {T.CERTIFICATE: _C._on_certificate}),
    ClientState.WAIT_CERTIFICATE_VERIFY: (
        Epoch.HANDSHAKE,
        {T.CERTIFICATE_VERIFY: _C._on_certificate_verify},
    ),
    ClientState.WAIT_FINISHED: (Epoch.HANDSHAKE, {T.FINISHED: _C._on_finished}),
    ClientState.CONNECTED: (Epoch.ONE_RTT, {T.NEW_SESSION_TICKET: _C._on_new_session_ticket}),
}
