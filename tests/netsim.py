"""A deterministic discrete-event network simulator for two sans-IO QUIC cores.

Theory of operation
-------------------
A :class:`Simulation` owns a client :class:`QuicConnection`, the server one
(created from the client's first datagram, as an endpoint would), a fake
clock and a heap of ``(time, seq, action)`` entries. Each direction has a
:class:`Link` with one-way delay, random jitter (which reorders), random
loss, duplication, an optional path MTU (bigger datagrams are dropped) and
an optional bottleneck (serialisation at ``bandwidth`` bytes/s behind a
byte-bounded queue that drops the tail).
Every random choice comes from ``random.Random`` instances seeded from the
simulation's seed, and the cores draw their connection IDs from seeded
generators too, so a run is reproducible. (TLS randoms and key shares
still come from the OS, but they do not change any datagram size; the
server uses an Ed25519 certificate so its signature size is fixed.)

The main loop repeatedly takes the earliest of: the head of the heap (a
datagram arriving, or an application tick), the client's ``get_timer()``
and the server's ``get_timer()``; moves the clock there; runs it. After
every input to a core its events go to the application object of that side
(:class:`BulkApp` here), then everything ``datagrams_to_send`` returns is
put on the link. A run stops when its goal is met; it fails with
:class:`SimulationStuck` when the step cap is hit, when the clock stops
moving, when the fake-time cap passes, or when nothing is left to happen
before the goal was met -- so a broken core fails a test instead of
hanging it.

:class:`FlowControlChecker` wraps a core's stream manager and verifies,
frame by frame from the receiver's side, that the peer never sends beyond
the flow-control limits (and stream limits) this side actually put on the
wire (RFC 9000 §4.1, §4.6).
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from quic_pair import CLIENT_ADDR, SERVER_ADDR, client_config, server_config

from ghostwire.quic.config import ClientConfig, ServerConfig
from ghostwire.quic.connection import QuicConnection
from ghostwire.quic.events import (
    ConnectionTerminated,
    Event,
    HandshakeCompleted,
    StopSendingReceived,
    StreamOpened,
    StreamReadable,
    StreamResetReceived,
    StreamsAvailable,
    StreamWritable,
)
from ghostwire.quic.frame_writer import MAX_DATAGRAMS_PER_CALL
from ghostwire.quic.frames import FrameType
from ghostwire.quic.packet import parse_header
from ghostwire.quic.stream_events import ControlFrame
from ghostwire.quic.streams import StreamLimitReached

INF = float("inf")
# The clock may stand still for this many consecutive steps (bursts of
# datagrams arriving at one instant); more means a timer that never clears.
MAX_STEPS_AT_ONE_TIME = 50_000


class SimulationStuck(AssertionError):
    """The simulation cannot reach its goal (step cap, time cap, or deadlock)."""


# -- links -----------------------------------------------------------------------


@dataclass
class LinkConfig:
    """One direction of the path."""

    delay: float = 0.025
    """One-way propagation delay in seconds."""
    jitter: float = 0.0
    """Extra delay, uniform in ``[0, jitter)`` per datagram: reorders packets."""
    loss: float = 0.0
    """Probability that a datagram is lost."""
    max_loss_run: int | None = None
    """At most this many datagrams lost by ``loss`` in a row (None: no cap).
    ``loss=0.3, max_loss_run=3`` is the QUIC interop runner's handshakeloss
    setting (its drop-rate scenario with a burst limit)."""
    duplicate: float = 0.0
    """Probability that a datagram is delivered twice (independent delays)."""
    bandwidth: float | None = 12_500_000.0
    """Bottleneck rate in bytes per second (None: infinite, no queue)."""
    queue_bytes: int = 256 * 1024
    """Bottleneck queue size; a datagram that does not fit is dropped (tail drop)."""
    drop: Callable[[int, bytes], bool] | None = None
    """Scripted loss: called with the datagram's index on this link (from 0)
    and its bytes; True drops it."""
    burst_loss: float = 0.0
    """Long-run fraction of datagrams lost in bursts (a two-state Gilbert
    model: a lossy state entered at random and left after ``burst_length``
    datagrams on average; everything sent in it is lost)."""
    burst_length: float = 3.0
    """Mean length of a loss burst, in datagrams (at least 1)."""
    mtu: int | None = None
    """Path MTU as the largest UDP payload carried: bigger datagrams are
    dropped (a router that does not fragment; no ICMP comes back). May be
    changed mid-run (``sim.uplink.config.mtu = 1250``) to make a black hole."""


@dataclass
class LinkStats:
    datagrams: int = 0
    bytes: int = 0
    lost: int = 0
    queue_drops: int = 0
    blackholed: int = 0
    too_big: int = 0  # dropped for exceeding the path MTU
    largest: int = 0  # largest datagram delivered
    duplicated: int = 0
    reordered: int = 0  # copies arriving before one sent earlier
    small: int = 0  # datagrams of at most 100 bytes: ACK-only, mostly
    max_queue: int = 0

    def __str__(self) -> str:
        return (
            f"{self.datagrams} dgrams/{self.bytes} B, lost {self.lost}, "
            f"tail-dropped {self.queue_drops}, blackholed {self.blackholed}, "
            f"too big {self.too_big}, duplicated {self.duplicated}, reordered {self.reordered}, "
            f"max queue {self.max_queue} B"
        )


class Link:
    """One direction: bottleneck queue, then loss, duplication and delay."""

    def __init__(self, config: LinkConfig, rng: random.Random) -> None:
        self.config = config
        self.rng = rng
        self.blackhole = False
        self.stats = LinkStats()
        self._busy_until = 0.0  # when the bottleneck finishes what it holds
        self._latest_arrival = 0.0
        self._in_burst = False
        self._loss_run = 0  # datagrams lost by ``loss`` in a row

    def _burst_drop(self) -> bool:
        """Gilbert model: from the good state a burst starts with probability
        ``p / (L * (1 - p))``, and each datagram ends it with probability
        ``1 / L``, so a fraction ``p`` is lost in bursts of mean length ``L``."""
        cfg = self.config
        mean = max(cfg.burst_length, 1.0)
        if self._in_burst:
            if self.rng.random() < 1.0 / mean:
                self._in_burst = False
        elif self.rng.random() < cfg.burst_loss / (mean * (1.0 - cfg.burst_loss)):
            self._in_burst = True
        return self._in_burst

    def transmit(self, datagram: bytes, now: float) -> list[float]:
        """Arrival times of the copies of a datagram sent at ``now`` (none if dropped)."""
        size = len(datagram)
        cfg = self.config
        stats = self.stats
        index = stats.datagrams
        stats.datagrams += 1
        stats.bytes += size
        if size <= 100:
            stats.small += 1
        if self.blackhole:
            stats.blackholed += 1
            return []
        if cfg.drop is not None and cfg.drop(index, datagram):
            stats.lost += 1
            return []
        if cfg.mtu is not None and size > cfg.mtu:
            stats.too_big += 1
            return []
        departure = now
        if cfg.bandwidth is not None:
            start = self._busy_until if self._busy_until > now else now
            backlog = int((start - now) * cfg.bandwidth)  # bytes queued ahead of us
            if backlog + size > cfg.queue_bytes:
                stats.queue_drops += 1
                return []
            if backlog + size > stats.max_queue:
                stats.max_queue = backlog + size
            departure = self._busy_until = start + size / cfg.bandwidth
        rng = self.rng
        if cfg.loss and rng.random() < cfg.loss:
            if cfg.max_loss_run is None or self._loss_run < cfg.max_loss_run:
                self._loss_run += 1
                stats.lost += 1
                return []
        self._loss_run = 0
        if cfg.burst_loss and self._burst_drop():
            stats.lost += 1
            return []
        if size > stats.largest:
            stats.largest = size
        copies = 1
        if cfg.duplicate and rng.random() < cfg.duplicate:
            stats.duplicated += 1
            copies = 2
        base = departure + cfg.delay
        if not cfg.jitter:
            arrivals = [base] * copies
        else:
            arrivals = [base + rng.random() * cfg.jitter for _ in range(copies)]
        for arrival in arrivals:
            if arrival < self._latest_arrival:
                stats.reordered += 1
            else:
                self._latest_arrival = arrival
        return arrivals


# -- applications ------------------------------------------------------------------


class Application:
    """What runs on top of one core; the simulation calls it after every input."""

    def on_event(self, sim: Simulation, conn: QuicConnection, event: Event) -> None:
        """One event from the core (already recorded by the simulation)."""


@dataclass
class Received:
    """What arrived on one stream."""

    digest: Any = field(default_factory=hashlib.sha256)
    size: int = 0
    finished_at: float | None = None

    @property
    def sha256(self) -> str:
        return str(self.digest.hexdigest())


class BulkApp(Application):
    """Sends payloads on streams it opens; reads and hashes everything it receives.

    * Streams are opened as the peer's MAX_STREAMS allows: on
      :class:`StreamLimitReached` the app waits for ``StreamsAvailable``.
    * Writes are back-pressured: a stream is written to only while fewer than
      ``send_buffer`` bytes are buffered in it, in ``write_chunk`` pieces;
      more is written on ``StreamWritable``.
    * A bidirectional stream the peer opens is answered with ``reply`` and
      the FIN at once, so both halves finish and the peer gets its stream
      credit back.
    * Incoming data is read on ``StreamReadable``; with ``read_rate`` set
      (bytes/s) it is instead read in ticks every ``read_interval`` seconds,
      a slow reader that makes the peer run into flow control. It serves
      streams round-robin, or lowest stream id first with ``read_in_order``
      (so later streams sit unread at their limits).
    """

    def __init__(
        self,
        payloads: Sequence[bytes] = (),
        *,
        bidirectional: bool = True,
        write_chunk: int = 64 * 1024,
        send_buffer: int = 2 * 1024 * 1024,
        read_rate: float | None = None,
        read_interval: float = 0.005,
        read_in_order: bool = False,
        reply: bytes = b"",
    ) -> None:
        self.to_open: deque[bytes] = deque(payloads)
        self.bidirectional = bidirectional
        self.write_chunk = write_chunk
        self.send_buffer = send_buffer
        self.read_rate = read_rate
        self.read_interval = read_interval
        self.read_in_order = read_in_order
        self.reply = reply
        self.opened: list[int] = []  # our streams, in payload order
        self.writing: dict[int, tuple[memoryview, int]] = {}  # stream -> (payload, written)
        self.received: dict[int, Received] = {}
        self.limit_hits = 0  # StreamLimitReached raised
        self.streams_available = 0  # StreamsAvailable events
        self.problems: list[Event] = []  # resets, STOP_SENDING
        self._started = False
        self._to_read: dict[int, None] = {}  # slow reader: streams with data waiting

    # -- progress -------------------------------------------------------------

    @property
    def all_written(self) -> bool:
        return self._started and not self.to_open and not self.writing

    def finished(self, stream_ids: Sequence[int]) -> bool:
        received = self.received
        for stream_id in stream_ids:
            entry = received.get(stream_id)
            if entry is None or entry.finished_at is None:
                return False
        return True

    def finished_count(self) -> int:
        return sum(1 for r in self.received.values() if r.finished_at is not None)

    def progress(self) -> str:
        got = sum(r.size for r in self.received.values())
        return (
            f"opened {len(self.opened)} (+{len(self.to_open)} to open, {len(self.writing)} "
            f"writing), received {got} B on {len(self.received)} streams "
            f"({self.finished_count()} finished)"
        )

    # -- events ---------------------------------------------------------------------

    def on_event(self, sim: Simulation, conn: QuicConnection, event: Event) -> None:
        if isinstance(event, StreamReadable):
            if self.read_rate is None:
                self._read(sim, conn, event.stream_id, None)
            else:
                self._to_read[event.stream_id] = None
        elif isinstance(event, StreamWritable):
            self._pump(conn, event.stream_id)
        elif isinstance(event, StreamOpened):
            self.received.setdefault(event.stream_id, Received())
            if not event.stream_id & 2:  # the peer's bidirectional stream: answer
                conn.send_stream_data(event.stream_id, self.reply, end_stream=True)
        elif isinstance(event, StreamsAvailable):
            self.streams_available += 1
            if self._started:
                self._open_streams(conn)
        elif isinstance(event, HandshakeCompleted):
            self._started = True
            self._open_streams(conn)
            if self.read_rate is not None:
                sim.call_later(self.read_interval, partial(self._tick, sim, conn))
        elif isinstance(event, StreamResetReceived | StopSendingReceived):
            self.problems.append(event)

    def _open_streams(self, conn: QuicConnection) -> None:
        while self.to_open:
            try:
                stream_id = conn.open_stream(self.bidirectional)
            except StreamLimitReached:
                self.limit_hits += 1
                return  # StreamsAvailable will tell us when there is credit
            payload = self.to_open.popleft()
            self.opened.append(stream_id)
            self.writing[stream_id] = (memoryview(payload), 0)
            self._pump(conn, stream_id)

    def _pump(self, conn: QuicConnection, stream_id: int) -> None:
        entry = self.writing.get(stream_id)
        if entry is None:
            return
        payload, written = entry
        total = len(payload)
        while conn.stream_send_buffered(stream_id) < self.send_buffer:
            chunk = payload[written : written + self.write_chunk]
            written += len(chunk)
            conn.send_stream_data(stream_id, bytes(chunk), end_stream=written >= total)
            if written >= total:
                del self.writing[stream_id]
                return
        self.writing[stream_id] = (payload, written)

    def _read(
        self, sim: Simulation, conn: QuicConnection, stream_id: int, max_bytes: int | None
    ) -> int:
        entry = self.received.get(stream_id)
        if entry is None:
            entry = self.received[stream_id] = Received()
        data = conn.read_stream(stream_id, max_bytes)
        if data:
            entry.digest.update(data)
            entry.size += len(data)
        if entry.finished_at is None and conn.stream_at_eof(stream_id):
            entry.finished_at = sim.now
        return len(data)

    def _tick(self, sim: Simulation, conn: QuicConnection) -> None:
        """Slow reader: read ``read_rate * read_interval`` bytes, round-robin."""
        if conn.is_closed:
            return
        assert self.read_rate is not None
        budget = int(self.read_rate * self.read_interval)
        order = sorted(self._to_read) if self.read_in_order else list(self._to_read)
        for stream_id in order:
            if budget <= 0:
                break
            n = self._read(sim, conn, stream_id, budget)
            budget -= n
            del self._to_read[stream_id]
            if budget <= 0:  # not drained: keep it, at the back (round-robin)
                self._to_read[stream_id] = None
        sim.after_app_action(conn)  # credit went back: MAX_STREAM_DATA may be due
        sim.call_later(self.read_interval, partial(self._tick, sim, conn))


# -- flow-control checker -------------------------------------------------------------


class FlowControlChecker:
    """Receiver-side audit of the peer's compliance with our limits.

    Wraps ``conn.streams``: every STREAM and RESET_STREAM frame is checked,
    before the core sees it, against the highest MAX_STREAM_DATA for that
    stream and MAX_DATA for the connection that were actually put in a packet
    (or sent as transport parameters) -- the most the peer can know of -- and
    each new peer-initiated stream against the MAX_STREAMS we sent. The
    connection total is our own sum of each stream's highest offset
    (RFC 9000 §4.1, §4.5, §4.6). A violation raises AssertionError at once.
    """

    def __init__(self, conn: QuicConnection) -> None:
        self.conn = conn
        params = conn.local_params
        self.max_data = params.initial_max_data
        self.max_streams = [params.initial_max_streams_bidi, params.initial_max_streams_uni]
        self._bidi_local = params.initial_max_stream_data_bidi_local
        self._bidi_remote = params.initial_max_stream_data_bidi_remote
        self._uni = params.initial_max_stream_data_uni
        self._local_bit = 0 if conn.is_client else 1
        self.stream_limits: dict[int, int] = {}
        self.highest: dict[int, int] = {}
        self.total = 0  # sum of highest offsets: what counts against MAX_DATA
        self.frames_checked = 0
        # How often the peer used its credit up to exactly a limit we advertised
        # (it may not know the latest one yet, so any advertised value counts).
        self.stream_limit_reached = 0
        self.connection_limit_reached = 0
        self._stream_limit_values: dict[int, set[int]] = {}
        self._max_data_values = {self.max_data}
        # What this side sent about its own sending being blocked (RFC 9000 §4.1).
        self.blocked_frames_sent: dict[str, int] = {}
        streams = conn.streams
        on_frame = streams.on_stream_frame
        on_reset = streams.on_reset_stream
        on_sent = streams.on_control_sent

        def on_stream_frame(
            stream_id: int,
            offset: int,
            data: bytes | memoryview,
            fin: bool,
            frame_type: int = FrameType.STREAM,
        ) -> None:
            self._check(stream_id, offset + len(data), "STREAM")
            on_frame(stream_id, offset, data, fin, frame_type)

        def on_reset_stream(stream_id: int, error_code: int, final_size: int) -> None:
            self._check(stream_id, final_size, "RESET_STREAM")
            on_reset(stream_id, error_code, final_size)

        def on_control_sent(frame: ControlFrame) -> None:
            self._sent(frame)
            on_sent(frame)

        streams.on_stream_frame = on_stream_frame  # type: ignore[method-assign]
        streams.on_reset_stream = on_reset_stream  # type: ignore[method-assign]
        streams.on_control_sent = on_control_sent  # type: ignore[method-assign]

    def _initial_limit(self, stream_id: int) -> int:
        if stream_id & 2:
            return self._uni
        local = (stream_id & 1) == self._local_bit
        return self._bidi_local if local else self._bidi_remote

    def _check(self, stream_id: int, end: int, what: str) -> None:
        self.frames_checked += 1
        side = "client" if self.conn.is_client else "server"
        if (stream_id & 1) != self._local_bit:
            max_streams = self.max_streams[(stream_id >> 1) & 1]
            if (stream_id >> 2) >= max_streams:
                raise AssertionError(
                    f"{side} received {what} on stream {stream_id} beyond MAX_STREAMS {max_streams}"
                )
        limit = self.stream_limits.get(stream_id)
        if limit is None:
            limit = self._initial_limit(stream_id)
        if end > limit:
            raise AssertionError(
                f"{side} received {what} on stream {stream_id} up to offset {end}, "
                f"beyond the MAX_STREAM_DATA {limit} it advertised"
            )
        values = self._stream_limit_values.get(stream_id)
        if end == self._initial_limit(stream_id) or (values is not None and end in values):
            self.stream_limit_reached += 1
        previous = self.highest.get(stream_id, 0)
        if end > previous:
            self.highest[stream_id] = end
            self.total += end - previous
            if self.total > self.max_data:
                raise AssertionError(
                    f"{side} received {self.total} bytes of stream data in total, "
                    f"beyond the MAX_DATA {self.max_data} it advertised"
                )
            if self.total in self._max_data_values:
                self.connection_limit_reached += 1

    def _sent(self, frame: ControlFrame) -> None:
        kind = frame.frame_type
        if kind == FrameType.MAX_DATA:
            self.max_data = max(self.max_data, frame.value)
            self._max_data_values.add(frame.value)
        elif kind == FrameType.MAX_STREAM_DATA and frame.stream_id is not None:
            sid = frame.stream_id
            previous = self.stream_limits.get(sid, self._initial_limit(sid))
            self.stream_limits[sid] = max(previous, frame.value)
            self._stream_limit_values.setdefault(sid, set()).add(frame.value)
        elif kind in (FrameType.DATA_BLOCKED, FrameType.STREAM_DATA_BLOCKED):
            name = FrameType(kind).name
            self.blocked_frames_sent[name] = self.blocked_frames_sent.get(name, 0) + 1
        elif kind in (FrameType.MAX_STREAMS_BIDI, FrameType.MAX_STREAMS_UNI):
            uni = kind - FrameType.MAX_STREAMS_BIDI
            self.max_streams[uni] = max(self.max_streams[uni], frame.value)


# -- the simulation ------------------------------------------------------------------------


Action = Callable[[], None]


class Simulation:
    """Two cores, two links, one fake clock."""

    def __init__(
        self,
        *,
        uplink: LinkConfig | None = None,
        downlink: LinkConfig | None = None,
        client: ClientConfig | None = None,
        server: ServerConfig | None = None,
        client_app: Application | None = None,
        server_app: Application | None = None,
        seed: int = 0,
        max_steps: int = 1_000_000,
        max_time: float = 600.0,
        check_flow_control: bool = True,
    ) -> None:
        self.now = 0.0
        self.seed = seed
        self.max_steps = max_steps
        self.max_time = max_time
        self.steps = 0
        self._heap: list[tuple[float, int, Action]] = []
        self._seq = itertools.count()
        self._same_time_steps = 0
        self.uplink = Link(uplink or LinkConfig(), random.Random(f"{seed}/uplink"))
        self.downlink = Link(downlink or LinkConfig(), random.Random(f"{seed}/downlink"))
        self.client_app = client_app or Application()
        self.server_app = server_app or Application()
        self._server_config = server or server_config("ed25519")
        self._server_random = random.Random(f"{seed}/server").randbytes
        self._check_flow_control = check_flow_control
        self.client = QuicConnection(
            client or client_config(),
            peer_address=SERVER_ADDR,
            now=0.0,
            server_name="localhost",
            random_bytes=random.Random(f"{seed}/client").randbytes,
        )
        self.server: QuicConnection | None = None
        self.client_checker = FlowControlChecker(self.client) if check_flow_control else None
        self.server_checker: FlowControlChecker | None = None
        self.client_events: list[Event] = []
        self.server_events: list[Event] = []
        self.event_counts: dict[str, int] = {}
        self.terminated_at: dict[str, float] = {}
        self.last_received_at: dict[str, float] = {}
        self._client_timer = INF
        self._server_timer = INF
        self.client.connect(0.0)
        self._after_input(self.client)

    # -- scheduling ----------------------------------------------------------------------

    def call_at(self, when: float, action: Action) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), action))

    def call_later(self, delay: float, action: Action) -> None:
        self.call_at(self.now + delay, action)

    def blackhole(self) -> None:
        """Drop everything from now on, both ways."""
        self.uplink.blackhole = self.downlink.blackhole = True

    # -- running ----------------------------------------------------------------------------

    def run(
        self, until: Callable[[], bool] | None = None, *, deadline: float | None = None
    ) -> None:
        """Run until ``until()`` holds (checked after every step).

        Without ``until``: run until nothing is left to happen, or to
        ``deadline`` (fake seconds) if given. With ``until``, running out of
        things to do, the step cap or the time cap raises SimulationStuck.
        """
        heap = self._heap
        for conn in (self.client, self.server):
            if conn is not None:  # the caller may have acted on it since
                self._after_input(conn)
        while until is None or not until():
            heap_time = heap[0][0] if heap else INF
            client_time = self._client_timer
            server_time = self._server_timer
            t = min(heap_time, client_time, server_time)
            if deadline is not None and t > deadline:
                self.now = max(self.now, deadline)
                return
            if t == INF:
                if until is None:
                    return
                self._stuck("nothing left to happen (no datagram in flight, no timer armed)")
            if t > self.max_time:
                self._stuck(f"fake time cap of {self.max_time}s reached")
            self.steps += 1
            if self.steps > self.max_steps:
                self._stuck(f"step cap of {self.max_steps} steps reached")
            if t <= self.now:
                self._same_time_steps += 1
                if self._same_time_steps > MAX_STEPS_AT_ONE_TIME:
                    self._stuck(
                        f"the clock stopped: {MAX_STEPS_AT_ONE_TIME} steps at one time "
                        f"(client timer {client_time}, server timer {server_time})"
                    )
            else:
                self._same_time_steps = 0
                self.now = t
            if heap_time == t:
                heapq.heappop(heap)[2]()
            elif client_time == t:
                self.client.handle_timer(self.now)
                self._after_input(self.client)
            else:
                assert self.server is not None
                self.server.handle_timer(self.now)
                self._after_input(self.server)

    def _stuck(self, why: str) -> None:
        raise SimulationStuck(f"simulation stuck: {why} at fake time {self.now:.3f}s; {self}")

    def _deliver(self, to_server: bool, datagram: bytes) -> None:
        self.last_received_at["server" if to_server else "client"] = self.now
        if to_server:
            conn = self.server
            if conn is None:
                conn = self._create_server(datagram)
            conn.receive_datagram(datagram, CLIENT_ADDR, self.now)
        else:
            conn = self.client
            conn.receive_datagram(datagram, SERVER_ADDR, self.now)
        self._after_input(conn)

    def _create_server(self, datagram: bytes) -> QuicConnection:
        header = parse_header(datagram, 0, 8)
        server = QuicConnection(
            self._server_config,
            peer_address=CLIENT_ADDR,
            now=self.now,
            original_dcid=header.dcid,
            client_scid=header.scid,
            random_bytes=self._server_random,
        )
        self.server = server
        if self._check_flow_control:
            self.server_checker = FlowControlChecker(server)
        return server

    def _after_input(self, conn: QuicConnection) -> None:
        """Hand the core's events to its application, then send what it has."""
        is_client = conn is self.client
        app = self.client_app if is_client else self.server_app
        log = self.client_events if is_client else self.server_events
        counts = self.event_counts
        flushed = False
        for _ in range(16):
            got = False
            while (event := conn.next_event()) is not None:
                got = True
                name = type(event).__name__
                counts[name] = counts.get(name, 0) + 1
                if not isinstance(event, StreamReadable | StreamWritable):
                    log.append(event)
                if isinstance(event, ConnectionTerminated):
                    self.terminated_at.setdefault("client" if is_client else "server", self.now)
                app.on_event(self, conn, event)
            if flushed and not got:
                break
            self._flush(conn, is_client)
            flushed = True
        # A core's timer changes only when it gets input: cache it.
        timer = conn.get_timer()
        if is_client:
            self._client_timer = INF if timer is None else timer
        else:
            self._server_timer = INF if timer is None else timer

    def _flush(self, conn: QuicConnection, is_client: bool) -> None:
        link = self.uplink if is_client else self.downlink
        now = self.now
        push = heapq.heappush
        heap = self._heap
        seq = self._seq
        while True:
            out = conn.datagrams_to_send(now)
            for datagram, _addr in out:
                for arrival in link.transmit(datagram, now):
                    deliver: Action = partial(self._deliver, is_client, datagram)
                    push(heap, (arrival, next(seq), deliver))
            if len(out) < MAX_DATAGRAMS_PER_CALL:
                return  # the core ran out of things it may send now

    def after_app_action(self, conn: QuicConnection) -> None:
        """Call after acting on a core outside an event (a tick, a test):
        hands out its events, sends what it has and re-reads its timer."""
        self._after_input(conn)

    # -- reporting ------------------------------------------------------------------------------

    def __str__(self) -> str:
        parts = [f"steps {self.steps}, seed {self.seed}"]
        for name, conn, app in (
            ("client", self.client, self.client_app),
            ("server", self.server, self.server_app),
        ):
            if conn is None:
                parts.append(f"{name}: not created")
                continue
            stats = conn.get_statistics()
            line = (
                f"{name}: {conn.state.value}, cwnd {stats.congestion_window}, "
                f"in flight {stats.bytes_in_flight}, srtt {stats.smoothed_rtt * 1000:.1f} ms, "
                f"pto_count {stats.pto_count}, sent {stats.packets_sent} pkts, "
                f"lost {stats.packets_lost}, timer {conn.get_timer()}"
            )
            if isinstance(app, BulkApp):
                line += f"; app: {app.progress()}"
            parts.append(line)
        parts.append(f"uplink: {self.uplink.stats}")
        parts.append(f"downlink: {self.downlink.stats}")
        return "\n  ".join(parts)


def make_payload(size: int, seed: int) -> bytes:
    """Deterministic incompressible test data."""
    return random.Random(f"payload/{seed}").randbytes(size)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def links(**settings: Any) -> tuple[LinkConfig, LinkConfig]:
    """The same settings for both directions."""
    return LinkConfig(**settings), LinkConfig(**settings)
