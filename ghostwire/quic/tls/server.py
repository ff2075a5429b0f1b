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

The whole first flight is produced by one ClientHello. :meth:`_select` makes
every negotiation decision (version, ALPN, suite, signature scheme, group)
before anything is written, so a failure leaves nothing half-sent. The
server sends 1-RTT keys right after its Finished (RFC 9001 §4.1.1 allows
sending 1-RTT data then); it reads 1-RTT only after the client's Finished.
"""

from __future__ import annotations

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
from .key_exchange import Group, KeyShare
from .keylog import CLIENT_HANDSHAKE, CLIENT_TRAFFIC_0, SERVER_HANDSHAKE, SERVER_TRAFFIC_0
from .messages import (
    HRR_RANDOM,
    TLS13,
    CertificateRequest,
    ClientHello,
    EncryptedExtensions,
    Extensions,
    HandshakeType,
    ServerHello,
)
from .settings import TlsSettings
from .signatures import CERTIFICATE_ONLY, SignatureScheme, choose_scheme
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


class ServerHandshake(HandshakeEngine):
    """The server side of a TLS 1.3 handshake."""

    state: ServerState

    def __init__(self, settings: TlsSettings, transport_parameters: bytes) -> None:
        super().__init__(settings, transport_parameters)
        self.state = ServerState.WAIT_CLIENT_HELLO
        self._hrr_selection: _Selection | None = None
        self._client_ap_secret = b""

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
        return _Selection(
            suite, scheme, alpn, group, peer_share, server_name, ext[E.QUIC_TRANSPORT_PARAMETERS]
        )

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
        client_groups = decode_supported_groups(ext[E.SUPPORTED_GROUPS])
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
        schedule = self.negotiated(selection.cipher_suite)
        self.transcript.update(message)

        server_hello = ServerHello(
            os.urandom(32),
            selection.cipher_suite,
            {
                E.SUPPORTED_VERSIONS: encode_selected_version(TLS13),
                E.KEY_SHARE: encode_server_key_share(share.group, share.public_bytes),
            },
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
        if self.settings.request_client_certificate:
            self.state = ServerState.WAIT_CLIENT_CERTIFICATE
        else:
            self.state = ServerState.WAIT_FINISHED

    def _send_handshake_messages(self, selection: _Selection, server_hs: bytes) -> None:
        settings = self.settings
        key = settings.private_key
        if key is None:
            raise RuntimeError("server without a private key")
        extensions: Extensions = {
            E.ALPN: encode_alpn([selection.alpn.encode()]),
            E.QUIC_TRANSPORT_PARAMETERS: self.transport_parameters,
        }
        self.send(Epoch.HANDSHAKE, EncryptedExtensions(extensions).encode())
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
