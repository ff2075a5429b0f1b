"""The TLS 1.3 server state machine for QUIC (RFC 8446 §2, RFC 9001 §4).

Theory of operation::

    WAIT_CLIENT_HELLO --ClientHello, no usable key share--> WAIT_CLIENT_HELLO_2 (HRR sent)
    WAIT_CLIENT_HELLO(_2) --ClientHello-->                                        [Handshake keys]
        ServerHello, EncryptedExtensions, [CertificateRequest], Certificate,
        CertificateVerify, Finished                                           [1-RTT write key]
        --> WAIT_CLIENT_CERTIFICATE (if requested) or WAIT_FINISHED
    WAIT_CLIENT_CERTIFICATE --Certificate--> WAIT_CLIENT_CERTIFICATE_VERIFY
                            (--empty Certificate--> WAIT_FINISHED)
    WAIT_CLIENT_CERTIFICATE_VERIFY --> WAIT_FINISHED --Finished--> CONNECTED  [1-RTT read key]

Resumption (RFC 8446 §2.2): a ClientHello offering a ticket that our
:class:`~.tickets.TicketIssuer` opens, with psk_dhe_ke and a valid binder,
skips CertificateRequest, Certificate and CertificateVerify; 0-RTT is
accepted only when enabled and every check of :meth:`_accept_early_data`
passes. After the client's Finished, one NewSessionTicket goes out at the
1-RTT level (RFC 9001 §4.6.1).

The whole first flight is produced by one ClientHello. :meth:`_select` makes
every negotiation decision (version, ALPN, suite, signature scheme, group)
before anything is written, so a failure leaves nothing half-sent. The
server sends 1-RTT keys right after its Finished (RFC 9001 §4.1.1 allows
sending 1-RTT data then); it reads 1-RTT only after the client's Finished.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, auto
from functools import partial

from ..errors import QuicProtocolError, TransportErrorCode
from ..suites import CipherSuite, Epoch
from .alerts import (
    AlertDescription,
    CertificateVerificationError,
    TlsAlert,
    handshake_failure,
    illegal_parameter,
    missing_extension,
)
from .engine import Handler, HandshakeEngine
from .extensions import (
    ExtensionType,
    decode_alpn,
    decode_client_key_shares,
    decode_client_versions,
    decode_server_name,
    decode_signature_algorithms,
    decode_supported_groups,
    encode_alpn,
    encode_hrr_key_share,
    encode_selected_version,
    encode_server_key_share,
    encode_signature_algorithms,
)
from .key_exchange import Group, KeyShare, want_key_share
from .keylog import (
    CLIENT_EARLY,
    CLIENT_HANDSHAKE,
    CLIENT_TRAFFIC_0,
    SERVER_HANDSHAKE,
    SERVER_TRAFFIC_0,
)
from .messages import (
    HRR_RANDOM,
    TLS13,
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
    compute_binder,
    decode_offered_psks,
    decode_psk_modes,
    encode_max_early_data,
    encode_selected_identity,
    resumption_psk,
    truncated_length,
)
from .settings import TlsSettings
from .signatures import CERTIFICATE_ONLY, SignatureScheme, choose_scheme
from .tickets import TicketState
from .verify import verify_client_certificate

T = HandshakeType
E = ExtensionType


class ServerState(Enum):
    WAIT_CLIENT_HELLO = auto()
    WAIT_CLIENT_HELLO_2 = auto()
    WAIT_CLIENT_CERTIFICATE = auto()
    WAIT_CLIENT_CERTIFICATE_VERIFY = auto()
    WAIT_FINISHED = auto()
    CONNECTED = auto()


@dataclass(slots=True)
class _Selection:
    """Everything the server decided from one ClientHello."""

    cipher_suite: CipherSuite
    signature_scheme: SignatureScheme
    alpn: str
    group: Group
    peer_share: bytes | None  # None: a HelloRetryRequest is needed
    server_name: str | None
    transport_parameters: bytes
    psk_modes: list[int]
    psk: _OfferedPsk | None = None


@dataclass(slots=True)
class _OfferedPsk:
    """A ticket of the ClientHello that we can open."""

    index: int
    state: TicketState
    obfuscated_age: int
    binder: bytes
    binders: list[bytes]
    early_data: bool  # the client asks for 0-RTT


class ServerHandshake(HandshakeEngine):
    """The server side of a TLS 1.3 handshake."""

    state: ServerState

    def __init__(self, settings: TlsSettings, transport_parameters: bytes) -> None:
        super().__init__(settings, transport_parameters)
        self.state = ServerState.WAIT_CLIENT_HELLO
        self._hrr_selection: _Selection | None = None
        self._client_ap_secret = b""
        self._psk_modes: list[int] = []

    @property
    def expected_epoch(self) -> Epoch:
        return _TRANSITIONS[self.state][0]

    def handler_for(self, msg_type: int) -> Handler | None:
        handler = _TRANSITIONS[self.state][1].get(msg_type)
        return None if handler is None else partial(handler, self)

    def start(self) -> None:
        """Servers wait for the ClientHello; nothing to do."""

    # -- ClientHello -------------------------------------------------------

    def _on_client_hello(self, message: bytes) -> None:
        hello = ClientHello.parse(message)
        selection = self._select(hello)
        if self._hrr_selection is not None:
            _check_second_hello(self._hrr_selection, selection)
        elif selection.peer_share is None:
            self._send_hello_retry_request(selection, hello, message)
            return
        self._send_first_flight(selection, hello, message)

    def _select(self, hello: ClientHello) -> _Selection:
        """Negotiate from a ClientHello, or raise the alert explaining why not."""
        ext = hello.extensions
        if hello.legacy_session_id:
            # RFC 9001 §8.4: middlebox compatibility mode is not allowed in QUIC.
            raise QuicProtocolError(
                TransportErrorCode.PROTOCOL_VIOLATION,
                "ClientHello with a legacy_session_id (RFC 9001 §8.4)",
            )
        if hello.legacy_compression_methods != b"\x00":
            raise illegal_parameter("legacy_compression_methods must be [null]")  # §4.1.2
        if E.SUPPORTED_VERSIONS not in ext or TLS13 not in decode_client_versions(
            ext[E.SUPPORTED_VERSIONS]
        ):
            raise TlsAlert(AlertDescription.PROTOCOL_VERSION, "client does not offer TLS 1.3")
        if E.PRE_SHARED_KEY in ext and next(reversed(ext)) != E.PRE_SHARED_KEY:
            raise illegal_parameter("pre_shared_key must be the last extension")  # §4.2.11
        if E.QUIC_TRANSPORT_PARAMETERS not in ext:
            # RFC 9001 §8.2.
            raise missing_extension("ClientHello has no quic_transport_parameters")
        settings = self.settings
        key = settings.private_key
        if key is None:
            raise RuntimeError("server without a private key")
        for required in (E.SIGNATURE_ALGORITHMS, E.SUPPORTED_GROUPS, E.KEY_SHARE):
            if required not in ext:
                # RFC 8446 §9.2: mandatory without a PSK.
                raise missing_extension(f"ClientHello has no {E(required).name.lower()}")
        alpn = self._select_alpn(ext)
        suite = next((s for s in settings.cipher_suites if s in hello.cipher_suites), None)
        if suite is None:
            raise handshake_failure("no cipher suite in common")
        ours = [s for s in settings.signature_schemes if s not in CERTIFICATE_ONLY]
        offered = decode_signature_algorithms(ext[E.SIGNATURE_ALGORITHMS])
        scheme = choose_scheme(key, ours, offered)
        if scheme is None:
            raise handshake_failure("no signature scheme in common for our certificate")
        group, peer_share = self._select_group(ext)
        server_name = decode_server_name(ext[E.SERVER_NAME]) if E.SERVER_NAME in ext else None
        modes = (
            decode_psk_modes(ext[E.PSK_KEY_EXCHANGE_MODES])
            if E.PSK_KEY_EXCHANGE_MODES in ext
            else []
        )
        psk = self._select_psk(ext, modes, hello.cipher_suites, server_name)
        if psk is not None:
            suite = psk.state.cipher_suite  # RFC 8446 §4.2.11: the PSK's hash
        return _Selection(
            suite,
            scheme,
            alpn,
            group,
            peer_share,
            server_name,
            ext[E.QUIC_TRANSPORT_PARAMETERS],
            modes,
            psk,
        )

    def _select_psk(
        self, ext: Extensions, modes: list[int], client_suites: list[int], sni: str | None
    ) -> _OfferedPsk | None:
        """The first offered ticket we can resume (RFC 8446 §4.2.11), or None."""
        if E.PRE_SHARED_KEY not in ext:
            return None
        if E.PSK_KEY_EXCHANGE_MODES not in ext:
            raise missing_extension("pre_shared_key without psk_key_exchange_modes")  # §4.2.9
        issuer = self.settings.ticket_issuer
        identities, binders = decode_offered_psks(ext[E.PRE_SHARED_KEY])
        if issuer is None or PSK_DHE_KE not in modes or self.settings.request_client_certificate:
            return None  # only psk_dhe_ke; a server asking for certificates authenticates anew
        for index, identity in enumerate(identities[:4]):
            state = issuer.open(identity.identity, sni)
            if state is None or state.cipher_suite not in self.settings.cipher_suites:
                continue
            if state.cipher_suite not in client_suites:
                continue
            return _OfferedPsk(
                index,
                state,
                identity.obfuscated_ticket_age,
                binders[index],
                binders,
                E.EARLY_DATA in ext,
            )
        return None

    def _select_alpn(self, ext: Extensions) -> str:
        """RFC 9001 §8.1: no protocol in common is no_application_protocol."""
        if E.ALPN in ext:
            offered = set(decode_alpn(ext[E.ALPN]))
            for protocol in self.settings.alpn_protocols:
                if protocol.encode() in offered:
                    return protocol
        raise TlsAlert(
            AlertDescription.NO_APPLICATION_PROTOCOL,
            f"no ALPN protocol in common (we speak {', '.join(self.settings.alpn_protocols)})",
        )

    def _select_group(self, ext: Extensions) -> tuple[Group, bytes | None]:
        """Our most preferred group with a key share, else one for a HelloRetryRequest."""
        # A set: up to ~6,000 shares each looked up in a list of ~16,000 groups
        # (one 64 KiB ClientHello, unauthenticated) took a second.
        client_groups = set(decode_supported_groups(ext[E.SUPPORTED_GROUPS]))
        shares: dict[int, bytes] = {}
        for group, key in decode_client_key_shares(ext[E.KEY_SHARE]):
            # RFC 8446 §4.2.8: no repeated groups, only groups in supported_groups.
            if group in shares or group not in client_groups:
                raise illegal_parameter(f"invalid key_share entry for group {group}")
            shares[group] = key
        for group in self.settings.groups:
            if group in shares:
                return group, shares[group]
        for group in self.settings.groups:
            if group in client_groups:
                return group, None
        raise handshake_failure("no key exchange group in common")

    def _send_hello_retry_request(
        self, selection: _Selection, hello: ClientHello, message: bytes
    ) -> None:
        """RFC 8446 §4.1.4: ask for a key share in ``selection.group``."""
        self.negotiated(selection.cipher_suite)
        self.transcript.update(message)
        self.transcript.replace_with_message_hash()
        retry = ServerHello(
            HRR_RANDOM,
            selection.cipher_suite,
            {
                E.SUPPORTED_VERSIONS: encode_selected_version(TLS13),
                E.KEY_SHARE: encode_hrr_key_share(selection.group),
            },
            legacy_session_id_echo=hello.legacy_session_id,
        )
        self.send(Epoch.INITIAL, retry.encode())
        self._hrr_selection = selection
        self.hello_retry_request_sent = True
        self.state = ServerState.WAIT_CLIENT_HELLO_2

    # -- the first flight --------------------------------------------------

    def _send_first_flight(self, selection: _Selection, hello: ClientHello, message: bytes) -> None:
        peer_share = selection.peer_share
        if peer_share is None:
            raise RuntimeError("no key share selected")
        share = KeyShare(selection.group)
        shared_secret = share.exchange(peer_share)
        self.client_random = hello.random
        self.group = selection.group
        self.signature_scheme = selection.signature_scheme
        self.alpn_protocol = selection.alpn
        self.server_name = selection.server_name
        self._psk_modes = selection.psk_modes
        psk = self._check_binder(selection, message)
        schedule = self.negotiated(selection.cipher_suite, psk)
        self.transcript.update(message)
        if selection.psk is not None and self._accept_early_data(selection, selection.psk):
            secret = schedule.client_early_traffic_secret(self.transcript.digest())
            self.install(Epoch.ZERO_RTT, False, secret, CLIENT_EARLY)
            self.early_data_accepted = True

        hello_extensions: Extensions = {
            E.SUPPORTED_VERSIONS: encode_selected_version(TLS13),
            E.KEY_SHARE: encode_server_key_share(share.group, share.public_bytes),
        }
        if selection.psk is not None:
            hello_extensions[E.PRE_SHARED_KEY] = encode_selected_identity(selection.psk.index)
        server_hello = ServerHello(
            os.urandom(32),
            selection.cipher_suite,
            hello_extensions,
            legacy_session_id_echo=hello.legacy_session_id,
        )
        self.send(Epoch.INITIAL, server_hello.encode())
        client_hs, server_hs = schedule.handshake_traffic_secrets(
            shared_secret, self.transcript.digest()
        )
        self._client_hs_secret = client_hs
        self.install(Epoch.HANDSHAKE, True, server_hs, SERVER_HANDSHAKE)
        self.install(Epoch.HANDSHAKE, False, client_hs, CLIENT_HANDSHAKE)

        choose = self.settings.transport_parameters_for
        if choose is not None:
            # Before EncryptedExtensions carries them (RFC 9368 §2.3).
            self.transport_parameters = choose(selection.transport_parameters)
        self._send_handshake_messages(selection, server_hs)
        client_ap, server_ap = schedule.application_traffic_secrets(self.transcript.digest())
        self._client_ap_secret = client_ap
        self.install(Epoch.ONE_RTT, True, server_ap, SERVER_TRAFFIC_0)
        self.peer_transport_parameters = selection.transport_parameters
        if self.settings.request_client_certificate and not self.resumed:
            self.state = ServerState.WAIT_CLIENT_CERTIFICATE
        else:
            self.state = ServerState.WAIT_FINISHED

    def _check_binder(self, selection: _Selection, message: bytes) -> bytes | None:
        """The PSK of an offered ticket once its binder checks out (RFC 8446 §4.2.11.2)."""
        offered = selection.psk
        if offered is None:
            return None
        hash_name = offered.state.cipher_suite.hash_name
        cut = truncated_length(message, offered.binders)
        expected = compute_binder(
            hash_name, offered.state.psk, self.transcript.digest_with(hash_name, message[:cut])
        )
        if not hmac.compare_digest(expected, offered.binder):
            # §4.2.11: a binder that does not validate aborts the handshake.
            raise TlsAlert(AlertDescription.DECRYPT_ERROR, "PSK binder does not validate")
        self.resumed = True
        return offered.state.psk

    def _accept_early_data(self, selection: _Selection, offered: _OfferedPsk) -> bool:
        """Whether to accept the client's 0-RTT (RFC 8446 §4.2.10, §8; RFC 9001 §4.6)."""
        settings = self.settings
        state = offered.state
        issuer = settings.ticket_issuer
        check = settings.early_data_check
        if not (offered.early_data and settings.early_data and issuer is not None):
            return False
        if offered.index != 0 or self.hello_retry_request_sent:
            return False  # only with the first PSK, and never after an HRR
        if state.max_early_data != QUIC_MAX_EARLY_DATA:
            return False  # the ticket was issued while 0-RTT was off
        if state.alpn != selection.alpn or state.server_name != selection.server_name:
            return False
        if check is not None and not check(state.transport_parameters):
            return False  # RFC 9000 §7.4.1: our limits went down since the ticket
        # RFC 8446 §8: fresh (§8.3), then single use (§8.1) -- claimed last.
        return issuer.age_is_fresh(state, offered.obfuscated_age) and issuer.claim_early_data(state)

    def _send_handshake_messages(self, selection: _Selection, server_hs: bytes) -> None:
        settings = self.settings
        key = settings.private_key
        if key is None:
            raise RuntimeError("server without a private key")
        extensions: Extensions = {
            E.ALPN: encode_alpn([selection.alpn.encode()]),
            E.QUIC_TRANSPORT_PARAMETERS: self.transport_parameters,
        }
        if self.early_data_accepted:
            extensions[E.EARLY_DATA] = b""
        self.send(Epoch.HANDSHAKE, EncryptedExtensions(extensions).encode())
        if self.resumed:
            # RFC 8446 §2.2, §4.3.2: no certificates in a PSK handshake.
            self.send_finished(Epoch.HANDSHAKE, server_hs)
            return
        if settings.request_client_certificate:
            schemes = encode_signature_algorithms(settings.signature_schemes)
            request = CertificateRequest(b"", {E.SIGNATURE_ALGORITHMS: schemes})
            self.send(Epoch.HANDSHAKE, request.encode())
        self.send_certificate(Epoch.HANDSHAKE)
        self.send_certificate_verify(Epoch.HANDSHAKE, key, selection.signature_scheme, server=True)
        self.send_finished(Epoch.HANDSHAKE, server_hs)

    # -- the client's second flight ----------------------------------------

    def _on_certificate(self, message: bytes) -> None:
        chain = self.parse_certificate(message, b"")
        settings = self.settings
        if not chain:
            if settings.require_client_certificate:
                raise CertificateVerificationError(
                    AlertDescription.CERTIFICATE_REQUIRED, "client sent no certificate"
                )
            self.state = ServerState.WAIT_FINISHED
            return
        self.peer_certificates = chain
        if settings.verify_peer:
            verify_client_certificate(chain, settings.trust_store, settings.now)
        self.state = ServerState.WAIT_CLIENT_CERTIFICATE_VERIFY

    def _on_certificate_verify(self, message: bytes) -> None:
        self.check_certificate_verify(message, self.settings.signature_schemes, server=False)
        self.state = ServerState.WAIT_FINISHED

    def _on_finished(self, message: bytes) -> None:
        self.check_finished(message, self._client_hs_secret)
        self.install(Epoch.ONE_RTT, False, self._client_ap_secret, CLIENT_TRAFFIC_0)
        self._client_hs_secret = self._client_ap_secret = b""
        self.complete = True
        self.state = ServerState.CONNECTED
        if self.settings.ticket_issuer is not None and PSK_DHE_KE in self._psk_modes:
            self._send_new_session_ticket()
        if self.group is not None:
            # The client's connect is over: the next handshake's key pair
            # ahead, off that one's path from ClientHello to flight.
            want_key_share(self.group, client=False)

    def _send_new_session_ticket(self) -> None:
        """One ticket after the handshake (RFC 8446 §4.6.1), at the 1-RTT level."""
        issuer = self.settings.ticket_issuer
        suite = self.cipher_suite
        if issuer is None or suite is None or self.alpn_protocol is None:
            return
        master = self.schedule.resumption_master_secret(self.transcript.digest())
        nonce = os.urandom(8)
        max_early = QUIC_MAX_EARLY_DATA if self.settings.early_data else 0
        age_add = int.from_bytes(os.urandom(4), "big")
        ticket = issuer.seal(
            cipher_suite=suite,
            psk=resumption_psk(suite.hash_name, master, nonce),
            alpn=self.alpn_protocol,
            server_name=self.server_name,
            age_add=age_add,
            max_early_data=max_early,
            transport_parameters=self.transport_parameters,
        )
        extensions: Extensions = {}
        if max_early:
            extensions[E.EARLY_DATA] = encode_max_early_data(max_early)
        message = NewSessionTicket(issuer.usable_lifetime, age_add, nonce, ticket, extensions)
        # Post-handshake: not part of the transcript.
        self.outgoing[Epoch.ONE_RTT] += message.encode()


def _check_second_hello(retry: _Selection, selection: _Selection) -> None:
    """RFC 8446 §4.1.4: ClientHello2 must answer the HelloRetryRequest."""
    if selection.peer_share is None or selection.group != retry.group:
        raise illegal_parameter("second ClientHello has no key share for the requested group")
    if selection.cipher_suite != retry.cipher_suite:
        raise illegal_parameter("second ClientHello changed the cipher suites")


_Fn = Callable[[ServerHandshake, bytes], None]
_S = ServerHandshake
_TRANSITIONS: dict[ServerState, tuple[Epoch, dict[int, _Fn]]] = {
    ServerState.WAIT_CLIENT_HELLO: (Epoch.INITIAL, {T.CLIENT_HELLO: _S._on_client_hello}),
    ServerState.WAIT_CLIENT_HELLO_2: (Epoch.INITIAL, {T.CLIENT_HELLO: _S._on_client_hello}),
    ServerState.WAIT_CLIENT_CERTIFICATE: (Epoch.HANDSHAKE, {T.CERTIFICATE: _S._on_certificate}),
    ServerState.WAIT_CLIENT_CERTIFICATE_VERIFY: (
        Epoch.HANDSHAKE,
        {T.CERTIFICATE_VERIFY: _S._on_certificate_verify},
    ),
    ServerState.WAIT_FINISHED: (Epoch.HANDSHAKE, {T.FINISHED: _S._on_finished}),
    ServerState.CONNECTED: (Epoch.ONE_RTT, {}),
}
