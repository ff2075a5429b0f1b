"""When a connection sends: the flush and timer scheduling of :class:`Connection`.

Writes ask for a flush "soon" (``_flush_soon``); the connection's task, which
sleeps until the core's next timer, is woken with a plain reschedule and
sends once the tasks writing in neighbouring scheduler passes are done, so
their requests and replies share datagrams. See docs/architecture.md.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import trio

from ..tls.key_exchange import key_shares_wanted, make_wanted_key_shares

if TYPE_CHECKING:
    from ..connection import QuicConnection
    from .stream import AnyStream

# A flush waits at most this many scheduler passes for the writes to stop.
MAX_FLUSH_DEFERRALS = 8
# While received datagrams are processed, the replies answered inline as
# their requests were read (streams opened and handed to the stream sink: the
# RPC server, ``serve_requests``; stream events handed to the protocol hook,
# ``divert_events``: an HTTP/3 server) are sent every this many stream events,
# so the peer starts on them while we answer the rest: the two processes
# overlap instead of taking turns with one batch of replies (64 calls in
# flight: about 1.5x the calls/s, h3rps about 2x; bench/RESULTS.md).
PIPELINE_EVENTS = 16


def make_key_shares_if_idle() -> None:
    """Make the key pairs asked for ahead of later handshakes
    (``want_key_share``: a handshake just ended) once no other task waits to
    run: never ahead of a reply, a flight or a request that the datagram
    ending the handshake brought. Called by the receive loop and the
    flushers as they park; a pair still wanted then waits for the next."""
    if key_shares_wanted() and not trio.lowlevel.current_statistics().tasks_runnable:
        make_wanted_key_shares()


class FlushScheduler:
    """The part of :class:`~.connection.Connection` that decides when to send."""

    _core: QuicConnection
    _streams: dict[int, AnyStream]
    _incoming: list[AnyStream]
    _timer_scope: trio.CancelScope | None
    _flush_pending: bool
    _flusher: trio.lowlevel.Task | None  # the timer task, while parked
    _flush_requests: int  # _flush_soon calls: tells the flusher writes go on
    _handler_running: bool
    _nursery: trio.Nursery | None
    # A 0-RTT connect's ClientHello, a server's flight answering 0-RTT
    # streams: the flush waits (a few scheduler passes) for the first write.
    _early_flight = False
    # Class defaults, written on an instance only when they change: a
    # connection's attributes first set in an order other connections do not
    # share cost it a dict of its own (CPython's shared-key instance dicts;
    # Connection.__init__ makes the attributes every connection has):
    # writing the two below on every batch made idle connections 1.2 KiB
    # bigger (bench.conns, 3,000 connections: 28.8 -> 30.1 KiB).
    _answering_in_parts: bool  # (set in Connection.__init__)
    _stream_events_seen = 0
    # A flush asked for while answering in parts: pending, the flusher not woken.
    _flush_unwoken = False

    if TYPE_CHECKING:
        from .endpoint import Endpoint

        _endpoint: Endpoint

        def _flush(self) -> None: ...
        def _update_timer(self) -> None: ...
        def _after_input(self) -> None: ...
        def _fail(self, exc: BaseException) -> None: ...

    def _flush_soon(self) -> None:
        """Flush in the scheduler's next pass, so that writes made back to
        back (data, then FIN; a read's credit, then the reply) and the writes
        of every task that runs in this pass (concurrent requests) share
        packets and datagrams.

        While received datagrams are processed (``_answering_in_parts``: a
        reply answered inline as its request is read, by the stream sink or a
        protocol hook), the flusher is not woken: ``_after_datagrams`` settles
        the flush once they are (``_answer_after_events``), which saves a
        scheduler pass and a task step per request answered so."""
        self._flush_requests += 1
        if not self._flush_pending:
            self._flush_pending = True
            if self._answering_in_parts:
                self._flush_unwoken = True
                return
            self._wake_flusher()

    def _wake_flusher(self) -> None:
        """A plain wake-up of the parked timer task: no cancellation, no
        deadline change, no timer processing."""
        task = self._flusher
        if task is not None:
            self._flusher = None
            trio.lowlevel.reschedule(task)

    def _answer_after_events(self) -> bool:
        """After ``_after_datagrams`` processed the events with
        ``_answering_in_parts`` on: the replies answered inline meanwhile
        (stream data queued) leave now, from the receive loop's step, not a
        scheduler pass later with the flusher. A flush asked for with
        ``_flush_soon`` whose data already left with a part
        (``_answered_in_part``) is dropped when nothing is left to send, else
        the flusher is woken for it. True if this settled the pending flush."""
        unwoken = self._flush_unwoken
        if unwoken:  # (written only when set: see the class defaults)
            self._flush_unwoken = False
        if not self._flush_pending:
            return False
        if self._core.streams.has_stream_data():
            self._flush()
            return True
        if not unwoken:
            return False
        if self._core.has_nothing_to_send(trio.current_time()):
            self._flush_pending = False
            self._update_timer()
        else:
            self._wake_flusher()
        return True

    def _answered_in_part(self) -> None:
        """A stream opened or a stream event went to the protocol hook while
        received datagrams are processed: every ``PIPELINE_EVENTS``, send the
        stream data queued so far (the replies answered inline) at once.
        Only the core's datagrams: this runs inside the event processing a
        full flush does."""
        self._stream_events_seen += 1
        if self._stream_events_seen % PIPELINE_EVENTS == 0:
            core = self._core
            if core.streams.has_stream_data():
                datagrams = core.datagrams_to_send(trio.current_time())
                if datagrams:
                    self._endpoint.send_datagrams(datagrams)

    def _flush_last_write(self) -> None:
        """After a stream's last write (its FIN): on a connection with just
        this stream and nothing else about to run, nothing can join the
        packet, so it goes now, a scheduler pass earlier than the flusher's
        turn (a sequential request, or its reply). Otherwise the flusher
        gathers the writes as usual: with several streams, the first task of
        a pass cannot tell whether the rest of the pass will write too."""
        if (
            len(self._streams) == 1
            and not self._incoming
            # the flusher itself, woken by this stream's data, may be queued
            and trio.lowlevel.current_statistics().tasks_runnable <= self._flush_pending
        ):
            self._flush()
        else:
            self._flush_soon()

    async def _timer_loop(self) -> None:
        """Run the core's timers, and the flushes asked for with ``_flush_soon``.

        The task sleeps in a cancel scope whose deadline is the core's next
        timer, brought forward in place by ``_update_timer`` (never back: a
        deadline that passes early costs one wake-up, which finds nothing due
        and sleeps until the exact timer); a flush request wakes it without
        touching the scope.
        """
        core = self._core
        while not core.is_terminated:
            timer = core.get_timer()
            with trio.CancelScope(deadline=math.inf if timer is None else timer) as scope:
                self._timer_scope = scope
                while True:
                    if self._flush_pending:
                        await self._let_runnable_tasks_write()
                        try:
                            if self._flush_pending:  # not flushed by a lone send_eof meanwhile
                                self._flush()
                        except Exception as exc:
                            self._fail(exc)
                    make_key_shares_if_idle()
                    await self._wait_flush_request()
            self._timer_scope = None
            try:
                core.handle_timer(trio.current_time())
                self._after_input()
            except Exception as exc:
                self._fail(exc)
        if self._handler_running and self._nursery is not None:
            self._nursery.cancel_scope.cancel()  # the nursery holds only the handler

    async def _let_runnable_tasks_write(self) -> None:
        """Put a requested flush off while the connection's tasks keep writing,
        so that what they are about to write -- the next requests, the replies
        of a handler (several passes each: accept, read, read the end, write)
        -- shares the datagrams instead of each pass sending its own.

        The flush goes once a full scheduler pass (from this task's turn to
        its next: every runnable task ran once) brought no new write and no
        peer stream waits in the accept queue (the acceptor takes one per
        pass; each becomes a handler that replies), or after
        ``MAX_FLUSH_DEFERRALS`` passes. An empty run queue is a hint only
        (within a pass, trio may run this task before the rest of the batch,
        which ``tasks_runnable`` does not count): it lets a lone request or
        reply go at once.
        """
        if self._early_flight:
            # 0-RTT: hold the ClientHello (the server's flight) until the
            # caller's first write (the handler's reply).
            self._early_flight = False
            for _ in range(MAX_FLUSH_DEFERRALS):
                seen = self._flush_requests
                await trio.lowlevel.cancel_shielded_checkpoint()
                if self._flush_requests != seen:
                    break
        if not self._incoming and not trio.lowlevel.current_statistics().tasks_runnable:
            # Nothing queued for the next pass. The rest of this pass may still
            # run, but a lone request or reply goes out without waiting.
            return
        for _ in range(MAX_FLUSH_DEFERRALS):
            seen = self._flush_requests
            await trio.lowlevel.cancel_shielded_checkpoint()
            if self._flush_requests == seen and not self._incoming:
                return  # every task ran once since, and none wrote: go

    async def _wait_flush_request(self) -> None:
        """Park until ``_flush_soon`` (or the timer scope's deadline) wakes us."""
        self._flusher = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            self._flusher = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
