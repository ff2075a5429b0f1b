"""The connection's timers and its closing and draining periods (sans-IO).

A mixin of :class:`~ghostwire.quic.connection.QuicConnection`: the idle,
handshake and keep-alive timers, loss detection's timer, and what happens
when either side closes (RFC 9000 §10). The state it works on is the
connection's; the names it uses from the connection are declared below for
the type checker.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

from .close_writer import build_close_datagram
from .errors import QuicProtocolError, TransportErrorCode
from .events import CloseReason, ConnectionTerminated, Event
from .recovery import SentPacket, Space
from .tls import CertificateVerificationError, TlsAlert

if TYPE_CHECKING:
    from .config import ClientConfig, ServerConfig
    from .frame_receiver import FrameReceiver
    from .frame_writer import FrameWriter
    from .packet_space import PacketNumberSpace
    from .path import PathManager
    from .pmtud import PathMtuDiscovery
    from .qlog import QlogSink
    from .recovery import LossRecovery
    from .streams import StreamSet
    from .transport_params import TransportParameters

Address = Any  # whatever the shell uses for peer addresses (a tuple for UDP)

# RFC 9000 §10.2: closing and draining last three PTOs.
CLOSE_PERIOD_PTOS = 3
# Send at most one CONNECTION_CLOSE per this many packets received while closing.
CLOSE_RESPONSE_EVERY = 4


class ConnectionState(Enum):
    HANDSHAKE = "handshake"
    CONNECTED = "connected"
    CLOSING = "closing"  # we sent CONNECTION_CLOSE (RFC 9000 §10.2.1)
    DRAINING = "draining"  # the peer did (RFC 9000 §10.2.2)
    TERMINATED = "terminated"


# Enum members read per packet or per handshake, as globals: on CPython 3.11
# ``Enum.MEMBER`` takes EnumType.__getattr__'s slow path (~1 K instructions
# a read, against ~10 for a global).
_TERMINATED = ConnectionState.TERMINATED
_CLOSING = ConnectionState.CLOSING
_DRAINING = ConnectionState.DRAINING
_APPLICATION = Space.APPLICATION


class LifecycleMixin:
    """Timers and closing, for :class:`~ghostwire.quic.connection.QuicConnection`."""

    if TYPE_CHECKING:
        config: ClientConfig | ServerConfig
        state: ConnectionState
        qlog: QlogSink | None
        recovery: LossRecovery
        writer: FrameWriter
        receiver: FrameReceiver
        path: PathManager
        pmtud: PathMtuDiscovery
        streams: StreamSet
        spaces: list[PacketNumberSpace]
        peer_params: TransportParameters | None
        handshake_complete: bool
        zero_rtt_discard_deadline: float | None
        _events: list[Event]

        @property
        def is_closed(self) -> bool: ...
        @property
        def peer_address(self) -> Address: ...
        def _on_lost(self, lost: list[SentPacket]) -> None: ...
        def _collect_stream_events(self) -> None: ...
        def discard_zero_rtt_keys_if_due(self, now: float) -> None: ...

    def _init_timers(self, now: float) -> None:
        config = self.config
        # Timers (absolute times, None when off).
        self._started_at = now
        self.idle_timeout = config.idle_timeout
        self.idle_deadline: float | None = now + config.idle_timeout
        self.handshake_deadline: float | None = now + config.handshake_timeout
        self.close_deadline: float | None = None
        self.keep_alive_deadline: float | None = None
        self._ack_eliciting_sent_since_receive = False
        self._idle_restarted_at: float | None = None  # ``now`` of the last restart on receipt

        # Closing.
        self.close_frame: tuple[int, int | None, bytes, bool] | None = None
        self._close_sent_pending = False
        self._packets_since_close = 0

    # ------------------------------------------------------------------
    # Timers
    # ------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The next time ``handle_timer`` must run, or None."""
        if self.state is _TERMINATED:
            return None
        if self.state in (_CLOSING, _DRAINING):
            return self.close_deadline
        # Asked after every flush and every batch of datagrams: one pass over
        # the candidates, no list or generator (about 20 calls fewer).
        earliest = self.idle_deadline
        for timer in (
            self.handshake_deadline,
            self.keep_alive_deadline,
            self.recovery.loss_detection_timer(),
            self.writer.next_timer(),
            self.path.deadline,
            self.zero_rtt_discard_deadline,
        ):
            if timer is not None and (earliest is None or timer < earliest):
                earliest = timer
        for space in self.spaces:
            if space.ack_needed:  # the usual case is none: no call
                timer = space.ack_timer()
                if timer is not None and (earliest is None or timer < earliest):
                    earliest = timer
        return earliest

    def handle_timer(self, now: float) -> None:
        """Run whatever timers have expired at ``now``."""
        if self.state is _TERMINATED:
            return
        if self.state in (_CLOSING, _DRAINING):
            if self.close_deadline is not None and now >= self.close_deadline:
                self.state = _TERMINATED
                self._release_parts()
                if self.qlog is not None:
                    self.qlog.observe(now)
            return
        if self.idle_deadline is not None and now >= self.idle_deadline:
            # RFC 9000 §10.1: an idle timeout closes silently.
            self._terminate(
                ConnectionTerminated(CloseReason.IDLE_TIMEOUT, reason="idle timeout"), now
            )
            return
        if self.handshake_deadline is not None and now >= self.handshake_deadline:
            self._enter_closing(
                TransportErrorCode.NO_ERROR,
                None,
                "handshake timed out",
                False,
                now,
                ConnectionTerminated(CloseReason.HANDSHAKE_TIMEOUT, reason="handshake timed out"),
            )
            self._release_parts()
            return
        timer = self.recovery.loss_detection_timer()
        if timer is not None and now >= timer:
            result = self.recovery.on_loss_detection_timeout(now)
            self._on_lost(result.lost)
            if self.qlog is not None:
                self.qlog.packets_lost(result.lost, now)
            if result.probe_space is not None:
                self.writer.request_probe(result.probe_space, result.probes)
                for space_id in result.also_probe:  # RFC 9002 §6.2.4
                    self.writer.request_probe(space_id, result.probes)
        if self.keep_alive_deadline is not None and now >= self.keep_alive_deadline:
            self.keep_alive_deadline = None
            self.writer.ping_pending = True
        self.writer.on_timer(now)
        self.path.on_timer(now)
        self.discard_zero_rtt_keys_if_due(now)

    def _effective_idle_timeout(self) -> float:
        # RFC 9000 §10.1: the smaller of both sides' timeouts, but no less
        # than three PTOs so a slow path isn't mistaken for a dead one.
        timeout = self.idle_timeout
        peer = self.peer_params
        if peer is not None and peer.max_idle_timeout:
            timeout = min(timeout, peer.max_idle_timeout / 1000.0)
        return max(timeout, 3 * self.recovery.pto_duration(_APPLICATION))

    def _arm_keep_alive(self, now: float) -> None:
        interval = self.config.keep_alive_interval
        if interval is not None and self.handshake_complete:
            self.keep_alive_deadline = now + min(interval, self._effective_idle_timeout() / 2)

    # ------------------------------------------------------------------
    # Closing
    # ------------------------------------------------------------------

    def _close_on_error(self, exc: QuicProtocolError, now: float) -> None:
        alert = exc.alert if isinstance(exc, TlsAlert) else None
        self._enter_closing(
            exc.error_code,
            exc.frame_type if exc.frame_type is not None else 0,
            exc.reason,
            False,
            now,
            ConnectionTerminated(
                CloseReason.LOCAL,
                error_code=exc.error_code,
                frame_type=exc.frame_type,
                reason=exc.reason,
                tls_alert=alert,
                certificate_error=isinstance(exc, CertificateVerificationError),
            ),
        )

    def _enter_closing(
        self,
        error_code: int,
        frame_type: int | None,
        reason: str,
        is_application: bool,
        now: float,
        event: ConnectionTerminated,
    ) -> None:
        if self.is_closed:
            return
        self.close_frame = (error_code, frame_type, reason.encode()[:512], is_application)
        self.state = _CLOSING
        self._close_sent_pending = True
        self.close_deadline = now + self._close_period()
        self._events.append(event)
        if self.qlog is not None:
            self.qlog.connection_closed(now, owner="local", error_code=error_code, reason=reason)
            self.qlog.observe(now)

    def _close_period(self) -> float:
        # RFC 9000 §10.2: closing and draining last three times the current
        # PTO, not the backed-off one.
        return CLOSE_PERIOD_PTOS * self.recovery.pto_period(_APPLICATION)

    def on_peer_close(
        self, error_code: int, frame_type: int | None, reason: str, is_application: bool, now: float
    ) -> None:
        """The peer sent CONNECTION_CLOSE: drain (RFC 9000 §10.2.2)."""
        alert = None
        if not is_application and 0x100 <= error_code <= 0x1FF:
            alert = error_code - 0x100
        self.state = ConnectionState.DRAINING
        self.close_deadline = now + self._close_period()
        if self.qlog is not None:
            self.qlog.connection_closed(now, owner="remote", error_code=error_code, reason=reason)
            self.qlog.observe(now)
        if self.streams.has_events():
            # What arrived before the close (a RESET_STREAM, the last data)
            # is reported before it, not dropped after it.
            self._collect_stream_events()
        self._events.append(
            ConnectionTerminated(
                CloseReason.PEER,
                error_code=error_code,
                frame_type=frame_type,
                reason=reason,
                is_application=is_application,
                tls_alert=alert,
            )
        )

    def _terminate(self, event: ConnectionTerminated, now: float) -> None:
        if self.state is ConnectionState.TERMINATED:
            return
        self.state = ConnectionState.TERMINATED
        self.close_deadline = None
        self._events.append(event)
        self._release_parts()
        if self.qlog is not None:
            self.qlog.connection_closed(now, owner="local", error_code=None, reason=event.reason)
            self.qlog.observe(now)

    def _release_parts(self) -> None:
        """A closed connection processes no packet and runs no timer but the
        end of its closing or draining period, and sends nothing but
        CONNECTION_CLOSE (built without the writer): the parts that point back
        at it let go, so that it and its ~70 objects are freed by reference
        counting once its owner drops it -- often before the period ends -- rather
        than kept for the cyclic collector (whose passes they would lengthen).
        Called once the call that closed it is over (a frame handler may still
        run after on_peer_close); a second call does nothing."""
        if not hasattr(self.receiver, "conn"):
            return
        del self.receiver.conn
        del self.writer.conn
        self.path.detach()
        self.pmtud.detach()

    def _on_packet_while_closing(self) -> None:
        # RFC 9000 §10.2.1: answer with CONNECTION_CLOSE, but rate-limited.
        self._packets_since_close += 1
        if self._packets_since_close >= CLOSE_RESPONSE_EVERY:
            self._packets_since_close = 0
            self._close_sent_pending = True

    def _close_datagrams(self, now: float) -> list[tuple[bytes, Address]]:
        if not self._close_sent_pending:
            return []
        self._close_sent_pending = False
        datagram = build_close_datagram(self, now)  # type: ignore[arg-type]
        return [(datagram, self.peer_address)] if datagram else []
