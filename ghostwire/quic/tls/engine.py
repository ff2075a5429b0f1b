"""What the client and server state machines share.

Theory of operation: :class:`HandshakeEngine` holds the state of one
handshake and its effects -- bytes to send per epoch, key changes in order,
the running transcript -- plus the steps both roles perform the same way
(Certificate, CertificateVerify and Finished, sending and checking them).
A subclass declares its states as data: a table from state to the epoch it
reads from and the handler for each message type it accepts there. A message
that is not in the table for the current state, or arrives at another
epoch, is unexpected_message (RFC 8446 §4, RFC 9001 §4.1.3).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from ..suites import CipherSuite, Epoch
from .alerts import AlertDescription, TlsAlert, decode_error, illegal_parameter, unexpected_message
from .key_exchange import Group
from .key_schedule import KeySchedule, Transcript
from .keylog import log_secret
from .messages import (
    Certificate,
    CertificateEntry,
    CertificateVerify,
    Finished,
    HandshakeType,
    NewSessionTicket,
    message_name,
)
from .settings import TlsSettings
from .signatures import (
    CERTIFICATE_ONLY,
    PrivateKey,
    SignatureScheme,
    sign,
    signed_content,
    verify,
)
from .tickets import SessionTicket

Handler = Callable[[bytes], None]


@dataclass(frozen=True, slots=True)
class KeyChange:
    """New traffic keys for one direction of an epoch, in the order they appear."""

    epoch: Epoch
    is_write: bool
    cipher_suite: CipherSuite
    secret: bytes = field(repr=False)


class HandshakeEngine:
    """State and effects shared by :class:`ClientHandshake` and :class:`ServerHandshake`."""

    state: Enum

    def __init__(self, settings: TlsSettings, transport_parameters: bytes) -> None:
        self.settings = settings
        self.transport_parameters = transport_parameters
        self.outgoing: dict[Epoch, bytearray] = {
            Epoch.INITIAL: bytearray(),
            Epoch.HANDSHAKE: bytearray(),
            Epoch.ONE_RTT: bytearray(),
        }
        self.key_changes: list[KeyChange] = []
        self.transcript = Transcript()
        self.key_schedule: KeySchedule | None = None
        self.client_random = b""
        self.complete = False
        # Negotiated results.
        self.alpn_protocol: str | None = None
        self.peer_transport_parameters: bytes | None = None
        self.cipher_suite: CipherSuite | None = None
        self.group: Group | None = None
        self.signature_scheme: SignatureScheme | None = None
        self.peer_certificates: list[x509.Certificate] = []
        self.server_name: str | None = None
        self.hello_retry_request_sent = False
        self.hello_retry_request_received = False
        self.session_tickets: list[NewSessionTicket] = []
        # Resumption (RFC 8446 §2.2) and 0-RTT (§2.3).
        self.resumed = False
        self.early_data_offered = False
        self.early_data_accepted = False
        self.new_tickets: list[SessionTicket] = []  # client: received, not yet stored
        self._resumption_master_secret = b""
        # Handshake traffic secrets, kept for the Finished messages.
        self._client_hs_secret = b""
        self._server_hs_secret = b""

    # -- dispatch ----------------------------------------------------------

    def start(self) -> None:
        """Begin the handshake (the client writes its ClientHello)."""
        raise NotImplementedError

    @property
    def expected_epoch(self) -> Epoch:
        """The epoch the next message must arrive at."""
        raise NotImplementedError

    def handler_for(self, msg_type: int) -> Handler | None:
        """The handler of ``msg_type`` in the current state, or None."""
        raise NotImplementedError

    def expect(self, epoch: Epoch, msg_type: int) -> Handler:
        """The handler for a ``msg_type`` message arriving at ``epoch``.

        Raises unexpected_message when the current state does not accept it
        there; the framing calls this on the header, before the body arrives.
        """
        handler = self.handler_for(msg_type)
        if handler is None:
            if msg_type == HandshakeType.KEY_UPDATE:
                # RFC 9001 §6: QUIC has its own key update; the TLS one is forbidden.
                raise unexpected_message("TLS KeyUpdate is not allowed in QUIC")
            raise unexpected_message(
                f"{message_name(msg_type)} not expected in state {self.state.name}"
            )
        expected = self.expected_epoch
        if epoch != expected:
            raise unexpected_message(
                f"{message_name(msg_type)} at the {epoch.name} level, expected {expected.name}"
            )
        return handler

    def handle(self, epoch: Epoch, message: bytes) -> None:
        """Process one complete handshake message received at ``epoch``."""
        self.expect(epoch, message[0])(message)

    # -- effects -----------------------------------------------------------

    def send(self, epoch: Epoch, message: bytes) -> None:
        """Queue ``message`` at ``epoch`` and add it to the transcript."""
        self.outgoing[epoch] += message
        self.transcript.update(message)

    def install(
        self,
        epoch: Epoch,
        is_write: bool,
        secret: bytes,
        keylog_label: str,
        suite: CipherSuite | None = None,
    ) -> None:
        """Record a key change (the connection installs packet keys from it)."""
        suite = suite or self.cipher_suite
        if suite is None:
            raise RuntimeError("no cipher suite yet")
        self.key_changes.append(KeyChange(epoch, is_write, suite, secret))
        log_secret(self.settings.keylog, keylog_label, self.client_random, secret)

    def negotiated(self, suite: CipherSuite, psk: bytes | None = None) -> KeySchedule:
        """Fix the cipher suite: transcript hash and key schedule (with a resumption PSK)."""
        self.cipher_suite = suite
        self.transcript.choose_hash(suite.hash_name)
        self.key_schedule = KeySchedule(suite, psk)
        return self.key_schedule

    @property
    def schedule(self) -> KeySchedule:
        if self.key_schedule is None:
            raise RuntimeError("key schedule not started")
        return self.key_schedule

    # -- Certificate / CertificateVerify / Finished ------------------------

    def send_certificate(self, epoch: Epoch, context: bytes = b"") -> None:
        self.send(epoch, _certificate_message(context, self.settings.certificate_chain))

    def send_certificate_verify(
        self, epoch: Epoch, key: PrivateKey, scheme: SignatureScheme, *, server: bool
    ) -> None:
        content = signed_content(self.transcript.digest(), server=server)
        self.send(epoch, CertificateVerify(scheme, sign(key, scheme, content)).encode())

    def parse_certificate(self, message: bytes, context: bytes) -> list[x509.Certificate]:
        """The chain in a peer's Certificate message (possibly empty); adds it to the transcript."""
        cert_msg = Certificate.parse(message)
        if cert_msg.context != context:
            raise illegal_parameter("certificate_request_context does not match")
        if any(entry.extensions for entry in cert_msg.entries):
            # RFC 8446 §4.4.2: only responses to extensions we sent (we send none).
            raise TlsAlert(
                AlertDescription.UNSUPPORTED_EXTENSION, "unrequested CertificateEntry extension"
            )
        chain = []
        for entry in cert_msg.entries:
            try:
                chain.append(x509.load_der_x509_certificate(entry.cert_data))
            except Exception:  # ValueError, InvalidVersion, ...: all mean bad DER
                raise TlsAlert(
                    AlertDescription.BAD_CERTIFICATE, "peer certificate is not valid DER X.509"
                ) from None
        self.transcript.update(message)
        return chain

    def check_certificate_verify(
        self, message: bytes, offered: list[SignatureScheme], *, server: bool
    ) -> None:
        """Check the peer's CertificateVerify over the transcript so far, then add it."""
        cert_verify = CertificateVerify.parse(message)
        scheme = cert_verify.algorithm
        if scheme not in offered or scheme in CERTIFICATE_ONLY:
            # RFC 8446 §4.4.3: the scheme must be one we offered for handshakes.
            raise illegal_parameter(f"CertificateVerify uses unoffered scheme 0x{scheme:04x}")
        try:
            public_key = self.peer_certificates[0].public_key()
        except UnsupportedAlgorithm:
            raise TlsAlert(
                AlertDescription.UNSUPPORTED_CERTIFICATE, "unsupported certificate public key"
            ) from None
        except Exception:  # malformed lazily-parsed DER: cryptography raises many types
            raise TlsAlert(
                AlertDescription.BAD_CERTIFICATE, "malformed certificate public key"
            ) from None
        content = signed_content(self.transcript.digest(), server=server)
        verify(public_key, scheme, cert_verify.signature, content)
        self.transcript.update(message)
        if server:
            self.signature_scheme = SignatureScheme(scheme)

    def send_finished(self, epoch: Epoch, base_key: bytes) -> None:
        verify_data = self.schedule.finished_verify_data(base_key, self.transcript.digest())
        self.send(epoch, Finished(verify_data).encode())

    def check_finished(self, message: bytes, base_key: bytes) -> None:
        """Check the peer's Finished (RFC 8446 §4.4.4), then add it to the transcript."""
        received = Finished.parse(message).verify_data
        expected = self.schedule.finished_verify_data(base_key, self.transcript.digest())
        if len(received) != len(expected):
            raise decode_error("Finished has the wrong length")
        if not hmac.compare_digest(received, expected):
            raise TlsAlert(AlertDescription.DECRYPT_ERROR, "Finished verify_data is wrong")
        self.transcript.update(message)


# Our own Certificate message is the same for every connection: cache it by
# the identity of the chain's objects (held, so their ids cannot be reused).
_CERTIFICATE_MESSAGES: dict[tuple[object, ...], tuple[list[x509.Certificate], bytes]] = {}
_CERTIFICATE_MESSAGES_MAX = 32


def _certificate_message(context: bytes, chain: list[x509.Certificate]) -> bytes:
    key = (context, *map(id, chain))
    cached = _CERTIFICATE_MESSAGES.get(key)
    if cached is not None:
        return cached[1]
    der = serialization.Encoding.DER
    message = Certificate(context, [CertificateEntry(c.public_bytes(der)) for c in chain]).encode()
    if len(_CERTIFICATE_MESSAGES) >= _CERTIFICATE_MESSAGES_MAX:
        _CERTIFICATE_MESSAGES.clear()
    _CERTIFICATE_MESSAGES[key] = (list(chain), message)
    return message
