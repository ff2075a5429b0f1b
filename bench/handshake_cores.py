"""Handshake CPU of the sans-IO cores alone: ghostwire and aioquic in one process.

Run from the repository root::

    python -m bench.handshake_cores                  # 200 connects per mode and stack, 3 runs
    python -m bench.handshake_cores --connects 50 --profile server

Per stack, a client and a server connection object (ghostwire's
``QuicConnection``, aioquic's ``aioquic.quic.connection.QuicConnection``)
exchange datagrams directly, with a fake clock, until both are quiet: the
handshake, HANDSHAKE_DONE, the session ticket and the ACKs (timers are
fired as they come due). No sockets, no event loop: what is left is the
cores' own cost, which does not depend on scheduling and so holds up on a
loaded machine far better than ``bench.resumption``. The CPU time
(``time.process_time``) of every server call and every client call is added
up separately, including the creation of each connection object; the
figure is per connection. Modes: ``full`` (no ticket) and ``resumed`` (the
ticket of the previous connection). Both stacks: a P-256 certificate
verified by the client, AES-128-GCM, X25519 where the client chooses.

``--profile server`` (or ``client``) runs ghostwire's mode ``full`` (or
``--mode resumed``) under cProfile, counting only that side's calls, and
prints the top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from .common import HOST, CertFiles, Settings

MODES = ("full", "resumed")
WARMUP = 5
CLIENT_ADDR = ("127.0.0.1", 40000)
SERVER_ADDR = (HOST, 4433)


class _Meter:
    """Adds up the CPU time of calls made through it, per side."""

    def __init__(self) -> None:
        self.seconds = {"server": 0.0, "client": 0.0}
        self.profile: cProfile.Profile | None = None
        self.profiled_side = ""

    def call(self, side: str, function: Callable[..., Any], *args: Any) -> Any:
        profile = self.profile if side == self.profiled_side else None
        start = time.process_time()
        if profile is not None:
            profile.enable()
        try:
            return function(*args)
        finally:
            if profile is not None:
                profile.disable()
            self.seconds[side] += time.process_time() - start


def _settle(
    meter: _Meter, client: Any, make_server: Callable[[bytes], Any], server: Any = None
) -> Any:
    """Exchange datagrams (firing timers on a fake clock) until both are quiet."""
    now = 0.0
    for _ in range(200):
        moved = False
        for datagram, _ in meter.call("client", client.datagrams_to_send, now):
            moved = True
            if server is None:
                server = meter.call("server", make_server, datagram)
            meter.call("server", server.receive_datagram, datagram, CLIENT_ADDR, now)
        if server is not None:
            for datagram, _ in meter.call("server", server.datagrams_to_send, now):
                moved = True
                meter.call("client", client.receive_datagram, datagram, SERVER_ADDR, now)
        for side, conn in (("client", client), ("server", server)):
            while conn is not None and meter.call(side, conn.next_event) is not None:
                pass
        if moved:
            continue
        timers = [
            (t, side, c)
            for side, c in (("client", client), ("server", server))
            if c is not None and (t := c.get_timer()) is not None
        ]
        # Quiet: fire the timers due within 0.1 s (ACK delay), stop at the idle ones.
        due = [x for x in timers if x[0] <= now + 0.1]
        if not due:
            return server
        now = max(now, min(t for t, _, _ in due))
        for t, side, conn in due:
            if t <= now:
                meter.call(side, conn.handle_timer, now)
    raise RuntimeError("the connections did not settle")


# -- ghostwire ----------------------------------------------------------------------


def _gw_legs(
    legs: dict[str, list[float]],
    make_client: Callable[[], Any],
    make_server: Callable[[bytes], Any],
) -> tuple[Any, Any]:
    """One connect's critical path, leg by leg (CPU us appended to ``legs``):
    the client's setup to its ClientHello, the server's ClientHello to its
    flight, the client's flight to its Finished; then the rest, unmeasured."""
    clock = time.process_time
    start = clock()
    client = make_client()
    hello = [d for d, _ in client.datagrams_to_send(0.0)]
    mid = clock()
    legs["client setup"].append((mid - start) * 1e6)
    start = clock()
    server = make_server(hello[0])
    for datagram in hello:
        server.receive_datagram(datagram, CLIENT_ADDR, 0.0)
    flight = [d for d, _ in server.datagrams_to_send(0.0)]
    mid = clock()
    legs["server"].append((mid - start) * 1e6)
    start = clock()
    for datagram in flight:
        client.receive_datagram(datagram, SERVER_ADDR, 0.0)
    finished = [d for d, _ in client.datagrams_to_send(0.0)]
    mid = clock()
    legs["client"].append((mid - start) * 1e6)
    for datagram in finished:
        server.receive_datagram(datagram, CLIENT_ADDR, 0.0)
    _settle(_Meter(), client, make_server, server)
    return client, server


def _gw_run(
    settings: Settings,
    mode: str,
    connects: int,
    meter: _Meter,
    legs: dict[str, list[float]] | None = None,
) -> bool:
    from ghostwire.quic.connection import QuicConnection
    from ghostwire.quic.packet import parse_header
    from ghostwire.quic.tls import MemoryTicketStore

    from . import gw

    server_config = gw.server_config(settings)
    store = MemoryTicketStore() if mode == "resumed" else None
    client_config = gw.client_config(settings)
    if store is not None:
        import dataclasses

        client_config = dataclasses.replace(client_config, session_tickets=store)

    def make_server(datagram: bytes) -> QuicConnection:
        header = parse_header(datagram, 0, 8)
        return QuicConnection(
            server_config,
            peer_address=CLIENT_ADDR,
            now=0.0,
            original_dcid=header.dcid,
            client_scid=header.scid,
            version=header.version,
        )

    def make_client() -> QuicConnection:
        conn = QuicConnection(client_config, peer_address=SERVER_ADDR, now=0.0)
        conn.connect(0.0)
        return conn

    resumed = True
    for i in range(connects):
        if legs is not None:
            client, server = _gw_legs(legs, make_client, make_server)
        else:
            client = meter.call("client", make_client)
            server = _settle(meter, client, make_server)
        if not client.handshake_complete or not server.handshake_complete:
            raise RuntimeError("ghostwire: handshake did not complete")
        resumed = resumed and (i == 0 or bool(client.resumed))  # the first has no ticket
        _make_wanted_key_shares(meter)
    return resumed


def _make_wanted_key_shares(meter: _Meter) -> None:
    """What the trio shell does once idle after a handshake: make the key
    pairs the cores asked for ahead of the next one, each counted on its
    side (off the critical path, so outside the legs)."""
    from ghostwire.quic.tls import key_exchange

    while key_exchange.key_shares_wanted():
        group, client = key_exchange._WANTED.pop()
        side = "client" if client else "server"
        meter.call(side, partial(key_exchange.prepare_key_share, group, client=client))


# -- aioquic ------------------------------------------------------------------------


def _aq_run(settings: Settings, mode: str, connects: int, meter: _Meter) -> bool:
    from aioquic.buffer import Buffer
    from aioquic.quic.connection import QuicConnection
    from aioquic.quic.packet import pull_quic_header

    from . import aq

    server_config = aq.server_config(settings)
    tickets: dict[bytes, Any] = {}
    state: dict[str, Any] = {}

    def make_server(datagram: bytes) -> QuicConnection:
        header = pull_quic_header(Buffer(data=datagram), host_cid_length=8)
        return QuicConnection(
            configuration=server_config,
            original_destination_connection_id=header.destination_cid,
            session_ticket_fetcher=tickets.get,
            session_ticket_handler=lambda t: tickets.__setitem__(t.ticket, t),
        )

    def make_client() -> QuicConnection:
        config = aq.client_config(settings)
        handler = None
        if mode == "resumed":
            config.session_ticket = state.pop("ticket", None)
            handler = lambda t: state.__setitem__("ticket", t)  # noqa: E731
        conn = QuicConnection(configuration=config, session_ticket_handler=handler)
        conn.connect(SERVER_ADDR, now=0.0)
        return conn

    resumed = True
    for i in range(connects):
        client = meter.call("client", make_client)
        _settle(meter, client, make_server)
        if client.tls.state.name != "CLIENT_POST_HANDSHAKE":
            raise RuntimeError("aioquic: handshake did not complete")
        resumed = resumed and (i == 0 or bool(client.tls.session_resumed))
    return resumed


RUNNERS = {"ghostwire": _gw_run, "aioquic": _aq_run}


def measure(
    settings: Settings, stack: str, mode: str, connects: int, repeat: int
) -> dict[str, float]:
    """CPU us per connection and side: the lowest of ``repeat`` runs (the least
    disturbed by other processes)."""
    run = RUNNERS[stack]
    run(settings, mode, WARMUP, _Meter())
    best = {"server": float("inf"), "client": float("inf")}
    for _ in range(repeat):
        meter = _Meter()
        resumed = run(settings, mode, connects, meter)
        if mode == "resumed" and not resumed:
            print(f"warning: {stack} did not resume every connection")
        for side, seconds in meter.seconds.items():
            best[side] = min(best[side], seconds / connects * 1e6)
    return best


def _legs_report(settings: Settings, mode: str, connects: int, repeat: int) -> None:
    """Median and lowest CPU us of each leg of ghostwire's connect, per run."""
    _gw_run(settings, mode, WARMUP, _Meter())
    print(f"ghostwire {mode}, {connects} connections: CPU us per leg, median (min)")
    for _ in range(repeat):
        legs: dict[str, list[float]] = {"client setup": [], "server": [], "client": []}
        _gw_run(settings, mode, connects, _Meter(), legs)
        cells = []
        total = 0.0
        for name, values in legs.items():
            values.sort()
            median = values[len(values) // 2]
            total += median
            cells.append(f"{name} {median:,.0f} ({values[0]:,.0f})")
        print(" | ".join(cells) + f" | sum of medians {total:,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connects", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="runs per mode; the lowest counts")
    parser.add_argument("--stacks", default="ghostwire,aioquic")
    parser.add_argument("--profile", choices=("server", "client"))
    parser.add_argument("--mode", choices=MODES, default="full")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument(
        "--legs", action="store_true", help="ghostwire's critical path, leg by leg (--mode)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings(
            certs=CertFiles.create(Path(directory)),
            max_datagram_size=1200,
            pmtu_max_datagram_size=1452,
        )
        if args.legs:
            _legs_report(settings, args.mode, args.connects, args.repeat)
            return
        if args.profile:
            _gw_run(settings, args.mode, WARMUP, _Meter())
            meter = _Meter()
            meter.profile = cProfile.Profile()
            meter.profiled_side = args.profile
            _gw_run(settings, args.mode, args.connects, meter)
            stats = pstats.Stats(meter.profile)
            print(f"ghostwire {args.mode}, {args.profile} side, {args.connects} connections")
            stats.sort_stats("cumulative").print_stats(args.top)
            stats.sort_stats("tottime").print_stats(args.top)
            return
        stacks = args.stacks.split(",")
        results = {
            (s, m): measure(settings, s, m, args.connects, args.repeat)
            for m in MODES
            for s in stacks
        }
    print(
        f"sans-IO cores, {args.connects} connections per mode, CPU us per connection"
        f" (lowest of {args.repeat} runs)"
    )
    print("| mode | side | " + " | ".join(stacks) + " | ratio |")
    print("|---|---|" + "---:|" * (len(stacks) + 1))
    for mode in MODES:
        for side in ("server", "client"):
            values = [results[(s, mode)][side] for s in stacks]
            ratio = f"{values[0] / values[1]:.2f}" if len(values) > 1 else "-"
            cells = " | ".join(f"{v:,.0f}" for v in values)
            print(f"| {mode} | {side} | {cells} | {ratio} |")


if __name__ == "__main__":
    main()
