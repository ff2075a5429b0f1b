"""TLS 1.3 session resumption and 0-RTT keys between our client and server (RFC 8446 §2.2)."""

from __future__ import annotations

from typing import Any

import pytest
from test_tls_support import (
    assert_keys_match,
    drive,
    make_pair,
    server_settings,
    take,
)

from ghostwire.quic.suites import CipherSuite, Epoch
from ghostwire.quic.tls import (
    AlertDescription,
    MemoryTicketStore,
    SessionTicket,
    TicketError,
    TicketIssuer,
    TlsAlert,
)
from ghostwire.quic.tls.extensions import ExtensionType
from ghostwire.quic.tls.messages import ClientHello, HandshakeType
from ghostwire.quic.tls.psk import QUIC_MAX_EARLY_DATA


def client_settings(**overrides: Any) -> Any:
    from test_tls_support import client_settings as base

    return base(**{"request_tickets": True, **overrides})


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def split(data: bytes) -> list[bytes]:
    messages = []
    while data:
        end = 4 + int.from_bytes(data[1:4], "big")
        messages.append(data[:end])
        data = data[end:]
    return messages


def full_handshake(
    issuer: TicketIssuer, clock: Clock, *, early_data: bool = False, **client: Any
) -> SessionTicket:
    """A full handshake with a ticket-issuing server; the client's ticket."""
    pair = make_pair(
        client_settings(clock=clock, **client),
        server_settings(ticket_issuer=issuer, early_data=early_data),
    )
    drive(pair)
    assert pair.client.complete and not pair.client.resumed
    assert pair.server.complete and not pair.server.resumed
    tickets = pair.client.pop_new_tickets()
    assert len(tickets) == 1
    return tickets[0]


def resume(
    ticket: SessionTicket,
    issuer: TicketIssuer,
    clock: Clock,
    *,
    client: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
) -> Any:
    pair = make_pair(
        client_settings(session_ticket=ticket, clock=clock, **(client or {})),
        server_settings(ticket_issuer=issuer, **(server or {})),
    )
    return drive(pair)


def test_ticket_issued_and_resumed() -> None:
    clock = Clock()
    issuer = TicketIssuer(clock=clock)
    ticket = full_handshake(issuer, clock)
    assert ticket.server_name == "localhost" and ticket.alpn == "h3"
    assert ticket.max_early_data == 0  # 0-RTT is off on the server by default
    assert ticket.lifetime == issuer.usable_lifetime == 3600  # one rotation period
    clock.now += 5
    pair = resume(ticket, issuer, clock)
    assert pair.client.complete and pair.server.complete
    assert pair.client.resumed and pair.server.resumed
    assert not pair.client.early_data_offered and not pair.server.early_data_accepted
    assert_keys_match(pair)
    # No certificate in a PSK handshake; and a fresh ticket for next time.
    assert pair.client.peer_certificates == []
    assert len(pair.client.pop_new_tickets()) == 1


def test_no_tickets_unless_asked() -> None:
    clock = Clock()
    pair = drive(
        make_pair(
            client_settings(request_tickets=False),
            server_settings(ticket_issuer=TicketIssuer(clock=clock)),
        )
    )
    assert pair.client.complete and pair.client.pop_new_tickets() == []


def test_resumed_flight_has_no_certificate() -> None:
    clock = Clock()
    issuer = TicketIssuer(clock=clock)
    ticket = full_handshake(issuer, clock)
    pair = make_pair(
        client_settings(session_ticket=ticket, clock=clock),
        server_settings(ticket_issuer=issuer),
    )
    pair.client.start()
    hello = ClientHello.parse(take(pair.client, Epoch.INITIAL))
    assert list(hello.extensions)[-1] == ExtensionType.PRE_SHARED_KEY
    pair.server.receive(Epoch.INITIAL, hello.encode())
    take(pair.server, Epoch.INITIAL)
    flight = [m[0] for m in split(take(pair.server, Epoch.HANDSHAKE))]
    assert flight == [HandshakeType.ENCRYPTED_EXTENSIONS, HandshakeType.FINISHED]


def test_bad_binder_is_decrypt_error() -> None:
    clock = Clock()
    issuer = TicketIssuer(clock=clock)
    ticket = full_handshake(issuer, clock)
    pair = make_pair(
        client_settings(session_ticket=ticket, clock=clock),
        server_settings(ticket_issuer=issuer),
    )
    pair.client.start()
    hello = bytearray(take(pair.client, Epoch.INITIAL))
    hello[-1] ^= 1  # the last byte of the binder
    with pytest.raises(TlsAlert) as info:
        pair.server.receive(Epoch.INITIAL, bytes(hello))
    assert info.value.alert == AlertDescription.DECRYPT_ERROR


def test_wrong_psk_is_decrypt_error() -> None:
    """A ticket the server opens, offered with another PSK: the binder gives it away."""
    clock = Clock()
    issuer = TicketIssuer(clock=clock)
    ticket = full_handshake(issuer, clock)
    forged = SessionTicket.from_bytes(ticket.to_bytes())
    forged = SessionTicket(**{**_fields(forged), "psk": bytes(len(ticket.psk))})
    with pytest.raises(TlsAlert) as info:
        resume(forged, issuer, clock)
    assert info.value.alert == AlertDescription.DECRYPT_ERROR


def _fields(ticket: SessionTicket) -> dict[str, Any]:
    return {name: getattr(ticket, name) for name in SessionTicket.__slots__}


def test_expired_ticket_gives_full_handshake() -> None:
    clock = Clock()
    issuer = TicketIssuer(clock=clock, lifetime=60, rotation=3600 * 24)
    ticket = full_handshake(issuer, clock)
    stale = SessionTicket(**{**_fields(ticket), "lifetime": 3600})  # the client thinks it's good
    clock.now += 61
    pair = resume(stale, issuer, clock)
    assert pair.client.complete and not pair.client.resumed and not pair.server.resumed
    assert pair.client.peer_certificates  # authenticated with the certificate again


def test_client_does_not_offer_an_expired_ticket() -> None:
    clock = Clock()
    issuer = TicketIssuer(clock=clock, lifetime=60)
    ticket = full_handshake(issuer, clock)
    clock.now += 61
    pair = make_pair(client_settings(session_ticket=ticket, clock=clock), server_settings())
    pair.client.start()
    hello = ClientHello.parse(take(pair.client, Epoch.INITIAL))
    assert ExtensionType.PRE_SHARED_KEY not in hello.extensions


def test_key_rotation_accepts_previous_key_only() -> None:
    clock = Clock(0.0)
    issuer = TicketIssuer(clock=clock, rotation=100, lifetime=86400)
    clock.now = 50  # both sealed under period 0's key, each good for 100 s
    first = full_handshake(issuer, clock)
    second = full_handshake(issuer, clock)
    clock.now = 140  # period 1: the previous key still opens
    assert resume(first, issuer, clock).server.resumed
    clock.now = 250  # two rotations later: retired
    pair = resume(second, issuer, clock)
    assert pair.client.complete and not pair.server.resumed


def test_shared_secret_tickets_open_on_another_issuer() -> None:
    clock = Clock()
    secret = bytes(range(32))
    ticket = full_handshake(TicketIssuer(clock=clock, secret=secret), clock)
    assert resume(ticket, TicketIssuer(clock=clock, secret=secret), clock).server.resumed
    assert not resume(ticket, TicketIssuer(clock=clock), clock).server.resumed


def test_ticket_round_trip_and_store() -> None:
    clock = Clock()
    issuer = TicketIssuer(clock=clock)
    ticket = full_handshake(issuer, clock)
    copy = SessionTicket.from_bytes(ticket.to_bytes())
    assert copy == ticket
    assert resume(copy, issuer, clock).server.resumed
    for bad in (
        b"",
        b"\x09" + ticket.to_bytes()[1:],
        ticket.to_bytes()[:-1],
        ticket.to_bytes() + b"x",
    ):
        with pytest.raises(TicketError):
            SessionTicket.from_bytes(bad)
    store = MemoryTicketStore(clock=clock)
    store.put(ticket)
    assert store.take("localhost", ["other"]) is None
    assert store.take("elsewhere", ["h3"]) is None
    assert store.take("localhost", ["other", "h3"]) == ticket
    assert store.take("localhost", ["h3"]) is None  # single use


def test_secrets_stay_out_of_repr() -> None:
    clock = Clock()
    issuer = TicketIssuer(clock=clock, secret=b"s" * 32)
    ticket = full_handshake(issuer, clock)
    assert ticket.psk.hex() not in repr(ticket) and "ticket=" not in repr(ticket)
    assert "sss" not in repr(issuer)
    assert "s" * 32 not in repr(server_settings(ticket_issuer=issuer))


def test_hello_retry_request_then_resumption() -> None:
    from ghostwire.quic.tls import Group

    clock = Clock()
    issuer = TicketIssuer(clock=clock)
    ticket = full_handshake(issuer, clock)
    pair = resume(
        ticket,
        issuer,
        clock,
        client={"groups": [Group.SECP256R1, Group.X25519], "early_data": True},
        server={"groups": [Group.X25519], "early_data": True},
    )
    assert pair.server.hello_retry_request_sent
    assert pair.client.resumed and pair.server.resumed
    assert not pair.server.early_data_accepted


# -- 0-RTT keys --------------------------------------------------------------


def early_ticket(issuer: TicketIssuer, clock: Clock) -> SessionTicket:
    ticket = full_handshake(issuer, clock, early_data=True)
    assert ticket.max_early_data == QUIC_MAX_EARLY_DATA
    return ticket


def test_early_data_accepted_with_matching_keys() -> None:
    clock = Clock()
    issuer = TicketIssuer(clock=clock)
    ticket = early_ticket(issuer, clock)
    pair = resume(ticket, issuer, clock, client={"early_data": True}, server={"early_data": True})
    assert pair.client.early_data_offered and pair.client.early_data_accepted
    assert pair.server.early_data_accepted
    client_early = [k for k in pair.client_keys if k.epoch is Epoch.ZERO_RTT]
    server_early = [k for k in pair.server_keys if k.epoch is Epoch.ZERO_RTT]
    assert [k.is_write for k in client_early] == [True]
    assert [k.is_write for k in server_early] == [False]
    assert client_early[0].secret == server_early[0].secret


@pytest.mark.parametrize(
    "case", ["server_off", "client_off", "replayed", "other_alpn", "stale_age", "params_lower"]
)
def test_early_data_rejected(case: str) -> None:
    clock = Clock()
    issuer = TicketIssuer(clock=clock)
    ticket = early_ticket(issuer, clock)
    client: dict[str, Any] = {"early_data": case != "client_off"}
    server: dict[str, Any] = {"early_data": case != "server_off"}
    if case == "replayed":
        first = resume(ticket, issuer, clock, client=client, server=server)
        assert first.server.early_data_accepted
    if case == "other_alpn":
        client["alpn_protocols"] = ["other", "h3"]
        server["alpn_protocols"] = ["other", "h3"]
    if case == "stale_age":
        ticket = SessionTicket(**{**_fields(ticket), "received_at": ticket.received_at - 60})
    if case == "params_lower":
        server["early_data_check"] = lambda remembered: False
    pair = resume(ticket, issuer, clock, client=client, server=server)
    assert pair.client.complete and pair.client.resumed  # resumption itself works
    assert not pair.server.early_data_accepted and not pair.client.early_data_accepted
    assert not [k for k in pair.server_keys if k.epoch is Epoch.ZERO_RTT]


def test_client_never_offers_early_data_on_a_ticket_without_it() -> None:
    clock = Clock()
    issuer = TicketIssuer(clock=clock)
    ticket = full_handshake(issuer, clock)  # the server had 0-RTT off
    pair = resume(ticket, issuer, clock, client={"early_data": True}, server={"early_data": True})
    assert not pair.client.early_data_offered
    assert not [k for k in pair.client_keys if k.epoch is Epoch.ZERO_RTT]


def test_server_early_data_ticket_with_bad_size_is_protocol_violation() -> None:
    from ghostwire.quic.errors import QuicProtocolError, TransportErrorCode
    from ghostwire.quic.tls.messages import NewSessionTicket

    pair = drive(make_pair())
    bad = NewSessionTicket(60, 1, b"n", b"t", {ExtensionType.EARLY_DATA: b"\x00\x00\x40\x00"})
    with pytest.raises(QuicProtocolError) as info:
        pair.client.receive(Epoch.ONE_RTT, bad.encode())
    assert info.value.error_code == TransportErrorCode.PROTOCOL_VIOLATION


def test_suite_mismatch_is_not_resumed() -> None:
    clock = Clock()
    issuer = TicketIssuer(clock=clock)
    ticket = full_handshake(issuer, clock, cipher_suites=[CipherSuite.AES_256_GCM_SHA384])
    pair = resume(ticket, issuer, clock, server={"cipher_suites": [CipherSuite.AES_128_GCM_SHA256]})
    assert pair.client.complete and not pair.client.resumed


def test_a_ticket_is_usable_for_the_whole_lifetime_it_announces() -> None:
    """Keys retire after two rotation periods, so a ticket never promises more
    than one: wherever in a period it is issued, it opens until it expires."""
    clock = Clock(0.0)
    issuer = TicketIssuer(clock=clock, rotation=3600, lifetime=86400)
    for issued_at in (0.0, 1800.0, 3599.0):
        clock.now = issued_at
        ticket = full_handshake(issuer, clock)
        assert 0 < ticket.lifetime <= 3600
        clock.now = issued_at + ticket.lifetime - 1
        assert resume(ticket, issuer, clock).server.resumed


@pytest.mark.parametrize("field", ["cipher_suite", "alpn"])
def test_client_refuses_0rtt_accepted_under_other_suite_or_alpn(field: str) -> None:
    """RFC 8446 §4.2.10: 0-RTT accepted under a cipher suite or ALPN other than
    the ticket's is illegal_parameter (its keys, or meaning, would not match).
    The client's copy of the ticket says otherwise than the server's sealed one
    (same hash, so the PSK itself still resumes)."""
    clock = Clock()
    issuer = TicketIssuer(clock=clock)
    ticket = early_ticket(issuer, clock)
    assert ticket.cipher_suite is CipherSuite.AES_128_GCM_SHA256 and ticket.alpn == "h3"
    changed = (
        {"cipher_suite": CipherSuite.CHACHA20_POLY1305_SHA256}
        if field == "cipher_suite"
        else {"alpn": "other"}
    )
    forged = SessionTicket(**{**_fields(ticket), **changed})
    with pytest.raises(TlsAlert) as info:
        resume(
            forged,
            issuer,
            clock,
            client={"early_data": True, "alpn_protocols": ["h3", "other"]},
            server={"early_data": True, "alpn_protocols": ["h3", "other"]},
        )
    assert info.value.alert == AlertDescription.ILLEGAL_PARAMETER


def test_resumption_psk_matches_rfc_8448() -> None:
    """RFC 8446 §4.6.1: PSK = HKDF-Expand-Label(resumption_master_secret,
    "resumption", ticket_nonce, Hash.length); RFC 8448 §3-§4 trace values."""
    from ghostwire.quic.tls.psk import early_secret, resumption_psk

    master = bytes.fromhex("7df235f2031d2a051287d02b0241b0bfdaf86cc856231f2d5aba46c434ec196c")
    psk = resumption_psk("sha256", master, b"\x00\x00")
    assert psk.hex() == "4ecd0eb6ec3b4d87f5d6028f922ca4c5851a277fd41311c9e62d2c9492e1c4f3"
    assert (
        early_secret("sha256", psk).hex()
        == "9b2188e9b2fc6d64d71dc329900e20bb41915000f678aa839cbb797cb7d8332c"
    )


@pytest.mark.parametrize("early_data", [False, True])
def test_ticket_for_another_server_name_is_a_full_handshake(early_data: bool) -> None:
    """RFC 8446 §4.6.1, §4.2.11: a ticket belongs to the SNI it was issued
    under; offered under another (here: none, for an IP address) the server
    ignores it -- for plain resumption as for 0-RTT."""
    clock = Clock()
    issuer = TicketIssuer(clock=clock)
    ticket = full_handshake(issuer, clock, early_data=True)
    assert ticket.server_name == "localhost"
    pair = resume(
        ticket,
        issuer,
        clock,
        client={"server_name": "127.0.0.1", "early_data": early_data},
        server={"early_data": True},
    )
    assert pair.client.complete and not pair.client.resumed and not pair.server.resumed
    assert pair.client.peer_certificates  # authenticated by certificate instead
    assert not pair.server.early_data_accepted and not pair.client.early_data_accepted
    # Under its own name the same ticket still resumes.
    assert resume(ticket, issuer, clock).server.resumed
