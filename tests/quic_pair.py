"""Two sans-IO connections wired back to back with a fake clock (test helper)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from ghostwire.certs import CertificateAuthority, IssuedCertificate
from ghostwire.quic.config import ClientConfig, ServerConfig
from ghostwire.quic.connection import QuicConnection
from ghostwire.quic.events import Event
from ghostwire.quic.packet import parse_header
from ghostwire.quic.tls import TrustStore

CLIENT_ADDR = ("127.0.0.1", 40000)
SERVER_ADDR = ("127.0.0.1", 4433)


@cache
def test_ca() -> CertificateAuthority:
    return CertificateAuthority.create("ghostwire QUIC test CA")


test_ca.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@cache
def server_identity(key_type: str = "ec") -> IssuedCertificate:
    return test_ca().issue(["localhost", "127.0.0.1", "::1"], key_type=key_type)  # type: ignore[arg-type]


def client_config(**overrides: Any) -> ClientConfig:
    options: dict[str, Any] = {
        "alpn": ["test"],
        "trust_store": TrustStore([test_ca().certificate]),
    }
    options.update(overrides)
    return ClientConfig(**options)


def server_config(key_type: str = "ec", **overrides: Any) -> ServerConfig:
    identity = server_identity(key_type)
    options: dict[str, Any] = {
        "alpn": ["test"],
        "certificate_chain": identity.chain,
        "private_key": identity.private_key,
    }
    options.update(overrides)
    return ServerConfig(**options)


Filter = Callable[[bytes], bool]


@dataclass
class Pair:
    """A client and a server core exchanging datagrams instantly (or not at all)."""

    client: QuicConnection
    server: QuicConnection | None
    server_config: ServerConfig
    now: float = 0.0
    client_events: list[Event] = field(default_factory=list)
    server_events: list[Event] = field(default_factory=list)
    drop_to_server: Filter | None = None
    drop_to_client: Filter | None = None

    def _server_for(self, datagram: bytes) -> QuicConnection:
        if self.server is None:
            header = parse_header(datagram, 0, 8)
            self.server = QuicConnection(
                self.server_config,
                peer_address=CLIENT_ADDR,
                now=self.now,
                original_dcid=header.dcid,
                client_scid=header.scid,
                version=header.version,  # as the endpoint does
            )
        return self.server

    def exchange(self, rounds: int = 50) -> None:
        """Deliver datagrams both ways until both sides are quiet."""
        for _ in range(rounds):
            moved = False
            for datagram, _addr in self.client.datagrams_to_send(self.now):
                moved = True
                if self.drop_to_server is None or not self.drop_to_server(datagram):
                    self._server_for(datagram).receive_datagram(datagram, CLIENT_ADDR, self.now)
            if self.server is not None:
                for datagram, _addr in self.server.datagrams_to_send(self.now):
                    moved = True
                    if self.drop_to_client is None or not self.drop_to_client(datagram):
                        self.client.receive_datagram(datagram, SERVER_ADDR, self.now)
            self._collect()
            if not moved:
                return

    def _collect(self) -> None:
        for conn, sink in ((self.client, self.client_events), (self.server, self.server_events)):
            if conn is None:
                continue
            while (event := conn.next_event()) is not None:
                sink.append(event)

    def advance(self, seconds: float) -> None:
        """Move the fake clock, firing due timers, then exchange."""
        target = self.now + seconds
        while True:
            timers = [
                t
                for c in (self.client, self.server)
                if c is not None and (t := c.get_timer()) is not None
            ]
            due = min((t for t in timers if t <= target), default=None)
            if due is None:
                break
            self.now = max(self.now, due)
            for conn in (self.client, self.server):
                if conn is not None and (t := conn.get_timer()) is not None and t <= self.now:
                    conn.handle_timer(self.now)
            self.exchange()
        self.now = target
        self.exchange()

    def events_of(self, side: str, kind: type) -> list[Any]:
        events = self.client_events if side == "client" else self.server_events
        return [e for e in events if isinstance(e, kind)]


def make_pair(
    client: ClientConfig | None = None,
    server: ServerConfig | None = None,
    *,
    server_name: str = "localhost",
) -> Pair:
    core = QuicConnection(
        client or client_config(), peer_address=SERVER_ADDR, now=0.0, server_name=server_name
    )
    core.connect(0.0)
    return Pair(client=core, server=None, server_config=server or server_config())


def handshake(pair: Pair) -> Pair:
    pair.exchange()
    return pair
