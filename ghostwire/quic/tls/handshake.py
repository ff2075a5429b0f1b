"""The TLS handshake as the QUIC connection sees it (:class:`TlsHandshake`).

Theory of operation: the connection feeds CRYPTO-stream bytes per epoch, in
order, in chunks of any size. This façade reassembles them into handshake
messages (``type || uint24 length || body``), bounds their size, and hands
each whole message to the role's state machine (:mod:`.client` or
:mod:`.server`). What the state machine produces accumulates in
:attr:`outgoing` (per epoch) and in the key change list, which the
connection drains after every call.

Key changes must happen on message boundaries: when the state machine moves
its read epoch up, bytes left over at the old epoch are an unexpected_message
(RFC 8446 §5.1, RFC 9001 §4.1.3). Any malformed message becomes a
decode_error alert here, so only :class:`~.alerts.TlsAlert` (or, for the
RFC 9001 §8.4 session-id rule, a PROTOCOL_VIOLATION) leaves :meth:`receive`.
After a failure the handshake is dead and raises the same error again.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography import x509

from ..errors import BufferReadError, QuicProtocolError
from ..suites import CipherSuite, Epoch
from .alerts import decode_error, illegal_parameter, unexpected_message
from .client import ClientHandshake
from .engine import KeyChange
from .key_exchange import Group
from .messages import HEADER_SIZE, HandshakeType, NewSessionTicket, message_name
from .server import ServerHandshake
from .settings import TlsSettings
from .signatures import SignatureScheme
from .tickets import SessionTicket


class TlsHandshake:
    """A sans-IO TLS 1.3 handshake for one QUIC connection.

    ``transport_parameters`` are our encoded QUIC transport parameters; they
    travel in the quic_transport_parameters extension (RFC 9001 §8.2).
    """

    def __init__(self, settings: TlsSettings, transport_parameters: bytes) -> None:
        # None once discard_handshake_state() dropped it (with the engine).
        self.settings: TlsSettings | None = settings
        self._is_client = settings.is_client
        self._max_message_size = settings.max_message_size
        self._engine: ClientHandshake | ServerHandshake | _Concluded = (
            ClientHandshake(settings, transport_parameters)
            if settings.is_client
            else ServerHandshake(settings, transport_parameters)
        )
        # Reassembly buffers indexed by Epoch (a list of four is 88 bytes, a
        # dict 224); none at 0-RTT, which carries no CRYPTO (RFC 9001 §4.1.4).
        self._buffers: list[bytearray | None] = [bytearray(), None, bytearray(), bytearray()]
        self._error: QuicProtocolError | None = None

    # -- driving -----------------------------------------------------------

    def start(self) -> None:
        """Client: write the ClientHello to ``outgoing[Epoch.INITIAL]``. Server: nothing."""
        self._engine.start()

    def receive(self, epoch: Epoch, data: bytes) -> None:
        """Process CRYPTO bytes received at ``epoch`` (in order; any chunking)."""
        if self._error is not None:
            raise self._error
        try:
            self._receive(epoch, data)
        except BufferReadError as exc:
            self._error = decode_error(f"malformed handshake message: {exc}")
        except QuicProtocolError as exc:
            self._error = exc
        else:
            return
        raise self._error

    def _receive(self, epoch: Epoch, data: bytes) -> None:
        buffer = self._buffers[epoch]
        if buffer is None:
            raise unexpected_message(f"CRYPTO data at the {epoch.name} level")
        if epoch < self._engine.expected_epoch:
            raise unexpected_message(f"new handshake data at the old {epoch.name} level")
        buffer += data
        engine = self._engine
        limit = self._max_message_size
        pos = 0
        while len(buffer) - pos >= HEADER_SIZE:
            # Judge the header first: an unexpected type fails before its body arrives.
            handler = engine.expect(epoch, buffer[pos])
            length = int.from_bytes(buffer[pos + 1 : pos + HEADER_SIZE], "big")
            if length > limit:
                raise illegal_parameter(
                    f"{message_name(buffer[pos])} of {length} bytes exceeds the {limit} limit"
                )
            end = pos + HEADER_SIZE + length
            if end > len(buffer):
                break
            message = bytes(buffer[pos:end])
            pos = end
            before = engine.expected_epoch
            handler(message)
            if engine.expected_epoch != before and pos < len(buffer):
                # RFC 8446 §5.1: a key change must fall on a message boundary.
                raise unexpected_message(f"data after a key change at the {epoch.name} level")
        del buffer[:pos]

    def discard_handshake_state(self) -> None:
        """Server, handshake complete: keep the results, drop the handshake.

        RFC 9001 §4.9: what only the handshake needs goes once it is over. This
        drops the state machine (transcript, key schedule and handshake
        secrets, key share, the ClientHello selection), the Initial and
        Handshake reassembly buffers and the settings (callbacks, lists).
        The negotiated results stay readable, and any later handshake message
        is still an unexpected_message. A client keeps everything: the server
        may send NewSessionTicket at any time after the handshake.
        """
        engine = self._engine
        if self._is_client or isinstance(engine, _Concluded) or not engine.complete:
            return
        self._engine = _Concluded(engine)
        self._buffers = [None, None, None, self._buffers[Epoch.ONE_RTT]]
        self.settings = None

    @property
    def handshake_state_discarded(self) -> bool:
        return isinstance(self._engine, _Concluded)

    def pop_key_changes(self) -> list[KeyChange]:
        """Key changes since the last call, in the order they happened."""
        changes = self._engine.key_changes
        self._engine.key_changes = []
        return changes

    # -- results -----------------------------------------------------------

    @property
    def outgoing(self) -> dict[Epoch, bytearray]:
        """Bytes to send per epoch; the connection takes them and clears the bytearrays."""
        return self._engine.outgoing

    @property
    def is_client(self) -> bool:
        return self._is_client

    @property
    def complete(self) -> bool:
        """True once the handshake finished on our side."""
        return self._engine.complete

    @property
    def alpn_protocol(self) -> str | None:
        return self._engine.alpn_protocol

    @property
    def peer_transport_parameters(self) -> bytes | None:
        """The peer's encoded transport parameters (opaque here)."""
        return self._engine.peer_transport_parameters

    @property
    def transport_parameters(self) -> bytes:
        """Our encoded transport parameters as the handshake carries them (a
        server's are set once the ClientHello is in); b"" once discarded."""
        engine = self._engine
        return b"" if isinstance(engine, _Concluded) else engine.transport_parameters

    @property
    def cipher_suite(self) -> CipherSuite | None:
        return self._engine.cipher_suite

    @property
    def group(self) -> Group | None:
        return self._engine.group

    @property
    def signature_scheme(self) -> SignatureScheme | None:
        """The scheme of the server's CertificateVerify."""
        return self._engine.signature_scheme

    @property
    def peer_certificates(self) -> list[x509.Certificate]:
        """The peer's chain, leaf first (empty when it sent none)."""
        return self._engine.peer_certificates

    @property
    def server_name(self) -> str | None:
        """Server: the SNI the client sent. Client: the name we verify."""
        if self.settings is not None and self.settings.is_client:
            return self.settings.server_name
        return self._engine.server_name

    @property
    def hello_retry_request_sent(self) -> bool:
        return self._engine.hello_retry_request_sent

    @property
    def hello_retry_request_received(self) -> bool:
        return self._engine.hello_retry_request_received

    @property
    def session_tickets(self) -> list[NewSessionTicket]:
        """NewSessionTicket messages received (client; kept for future resumption)."""
        return list(self._engine.session_tickets)

    @property
    def resumed(self) -> bool:
        """The handshake was a resumption with a session ticket (RFC 8446 §2.2)."""
        return self._engine.resumed

    @property
    def early_data_offered(self) -> bool:
        """Client: the ClientHello offered 0-RTT (a ZERO_RTT write key was installed)."""
        return self._engine.early_data_offered

    @property
    def early_data_accepted(self) -> bool:
        """The server accepted 0-RTT (known to the client from EncryptedExtensions)."""
        return self._engine.early_data_accepted

    def pop_new_tickets(self) -> list[SessionTicket]:
        """Client: tickets received since the last call, ready to store."""
        tickets = self._engine.new_tickets
        self._engine.new_tickets = []
        return tickets

    def __repr__(self) -> str:
        role = "client" if self._is_client else "server"
        return f"<TlsHandshake {role} {self._engine.state.name}>"


class _Concluded:
    """What a finished server handshake leaves behind: its results, and the
    rejection of any further handshake message (the engine's CONNECTED state
    accepts none)."""

    __slots__ = (
        "alpn_protocol",
        "cipher_suite",
        "early_data_accepted",
        "early_data_offered",
        "group",
        "hello_retry_request_received",
        "hello_retry_request_sent",
        "key_changes",
        "new_tickets",
        "outgoing",
        "peer_certificates",
        "peer_transport_parameters",
        "resumed",
        "server_name",
        "session_tickets",
        "signature_scheme",
        "state",
    )
    complete = True
    expected_epoch = Epoch.ONE_RTT

    def __init__(self, engine: ClientHandshake | ServerHandshake) -> None:
        self.state = engine.state
        self.key_changes = engine.key_changes
        self.outgoing: dict[Epoch, bytearray] = {}
        self.alpn_protocol = engine.alpn_protocol
        self.peer_transport_parameters = engine.peer_transport_parameters
        self.cipher_suite = engine.cipher_suite
        self.group = engine.group
        self.signature_scheme = engine.signature_scheme
        self.peer_certificates = engine.peer_certificates
        self.server_name = engine.server_name
        self.hello_retry_request_sent = engine.hello_retry_request_sent
        self.hello_retry_request_received = engine.hello_retry_request_received
        self.session_tickets = engine.session_tickets
        self.resumed = engine.resumed
        self.early_data_offered = engine.early_data_offered
        self.early_data_accepted = engine.early_data_accepted
        self.new_tickets: list[SessionTicket] = []

    def start(self) -> None:
        raise RuntimeError("the handshake is over")

    def expect(self, epoch: Epoch, msg_type: int) -> Callable[[bytes], None]:
        if msg_type == HandshakeType.KEY_UPDATE:
            # RFC 9001 §6: QUIC has its own key update; the TLS one is forbidden.
            raise unexpected_message("TLS KeyUpdate is not allowed in QUIC")
        raise unexpected_message(
            f"{message_name(msg_type)} not expected in state {self.state.name}"
        )
