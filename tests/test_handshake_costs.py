"""Work the handshake path does once, not once per item (counted, not timed)."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing
from quic_pair import CLIENT_ADDR, SERVER_ADDR, client_config, handshake, make_pair, server_config
from test_crypto import _derived

import ghostwire.quic as quic
from ghostwire.quic.cid import LocalConnectionIds
from ghostwire.quic.connection import QuicConnection
from ghostwire.quic.demux import Demux
from ghostwire.quic.recovery import Space
from ghostwire.quic.tls import MemoryTicketStore, key_exchange
from ghostwire.quic.tls.key_exchange import Group, KeyShare, prepare_key_share
from ghostwire.quic.tokens import AddressTokenMinter, stateless_reset_token


def _counting_random() -> tuple[list[int], Callable[[int], bytes]]:
    calls: list[int] = []

    def random_bytes(n: int) -> bytes:
        calls.append(n)
        return os.urandom(n)

    return calls, random_bytes


def test_new_connection_ids_take_their_random_bytes_in_one_call() -> None:
    calls, random_bytes = _counting_random()
    cids = LocalConnectionIds(b"\x01" * 8, 8, random_bytes)
    calls.clear()  # the initial ID's token
    cids.issue_up_to(8)
    assert calls == [7 * (8 + 16)]  # seven IDs and their reset tokens
    new = cids.active[1:]
    assert [e.sequence_number for e in new] == list(range(1, 8))
    assert all(len(e.cid) == 8 and len(e.stateless_reset_token) == 16 for e in new)
    values = [e.cid for e in new] + [e.stateless_reset_token for e in new]
    assert len(set(values)) == len(values)  # every slice its own bytes
    cids.issue_up_to(8)
    assert len(calls) == 1  # nothing to top up: no call


def test_keyed_tokens_and_generated_ids_take_no_random_bytes() -> None:
    calls, random_bytes = _counting_random()
    made = iter(bytes([i]) * 8 for i in range(2, 10))
    cids = LocalConnectionIds(
        b"\x01" * 8,
        8,
        random_bytes,
        lambda cid: cid * 2,  # a keyed token: derived from the ID
        new_cid=lambda: next(made),
    )
    cids.issue_up_to(4)
    assert calls == []
    assert [e.cid for e in cids.active[1:]] == [b"\x02" * 8, b"\x03" * 8, b"\x04" * 8]
    assert all(e.stateless_reset_token == e.cid * 2 for e in cids.active)


def test_a_client_demux_derives_no_server_keys() -> None:
    # A connect makes one Demux(None): no reset key and no Retry-token minter
    # (an HKDF and an AES-GCM context) until a server's work asks for them.
    calls, random_bytes = _counting_random()
    demux = Demux(None, random_bytes=random_bytes)
    assert calls == []
    token = demux.reset_token_for(b"\x01" * 8)
    assert calls == [32] and len(token) == 16
    assert demux.reset_token_for(b"\x01" * 8) == token  # one key, kept


def test_a_server_demux_makes_its_keys_at_once_in_order() -> None:
    scripted = iter([b"\x0a" * 32, b"\x0b" * 32])
    demux = Demux(server_config(), random_bytes=lambda n: next(scripted))
    assert demux.reset_token_for(b"\x01" * 8) == stateless_reset_token(b"\x0a" * 32, b"\x01" * 8)
    token = demux._tokens().mint_retry_token(("127.0.0.1", 4000), b"\x02" * 8, b"\x03" * 8, 1.0)
    assert AddressTokenMinter(b"\x0b" * 32).validate_retry_token(
        token, ("127.0.0.1", 4000), 1.0
    ) == (b"\x02" * 8, b"\x03" * 8)


def test_keys_first_used_after_the_flight_are_derived_then() -> None:
    # The server's Handshake receive and 1-RTT keys, and the client's 1-RTT
    # receive keys, wait for their first use: off the connect's critical path.
    pair = make_pair()
    hello = [d for d, _ in pair.client.datagrams_to_send(0.0)]
    server = pair._server_for(hello[0])
    for datagram in hello:
        server.receive_datagram(datagram, CLIENT_ADDR, 0.0)
    flight = [d for d, _ in server.datagrams_to_send(0.0)]
    handshake_space, app_space = server.spaces[Space.HANDSHAKE], server.spaces[Space.APPLICATION]
    assert _derived(handshake_space.send_keys) and not _derived(handshake_space.recv_keys)
    assert not _derived(app_space.send_keys) and app_space.recv_keys is None
    client = pair.client
    for datagram in flight:
        client.receive_datagram(datagram, SERVER_ADDR, 0.0)
    finished = [d for d, _ in client.datagrams_to_send(0.0)]
    assert finished and client.handshake_complete
    assert _derived(client.spaces[Space.APPLICATION].send_keys)
    assert not _derived(client.spaces[Space.APPLICATION].recv_keys)
    for datagram in finished:
        server.receive_datagram(datagram, CLIENT_ADDR, 0.0)
    pair.exchange()  # the rest: HANDSHAKE_DONE, tickets, ACKs
    assert server.handshake_confirmed and client.handshake_confirmed


def test_a_prepared_key_share_is_taken_once_by_its_side_and_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(key_exchange, "_READY", {})
    prepare_key_share(Group.X25519, client=True)
    ((_, _, prepared),) = key_exchange._READY[(Group.X25519, True)]
    assert KeyShare(Group.X25519).public_bytes != prepared  # a server's: not the client's
    assert KeyShare(Group.X25519, client=True).public_bytes == prepared
    assert KeyShare(Group.X25519, client=True).public_bytes != prepared  # taken once
    # A pair made before a fork is not used in the child (nor kept).
    prepare_key_share(Group.SECP256R1, client=False)
    ((_, _, prepared),) = key_exchange._READY[(Group.SECP256R1, False)]
    monkeypatch.setattr(os, "getpid", lambda: -1)
    assert KeyShare(Group.SECP256R1).public_bytes != prepared
    assert key_exchange._READY == {}


def _counting_generations(monkeypatch: pytest.MonkeyPatch) -> list[Group]:
    """The key pairs generated from now on (none prepared, none wanted)."""
    monkeypatch.setattr(key_exchange, "_READY", {})
    monkeypatch.setattr(key_exchange, "_WANTED", set())
    made: list[Group] = []
    generate = key_exchange._generate

    def counting(group: Group) -> object:
        made.append(group)
        return generate(group)

    monkeypatch.setattr(key_exchange, "_generate", counting)
    return made


def test_a_finished_handshake_asks_for_the_next_ones_key_pairs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The server at the client's Finished, the client given a ticket: each
    # asks for the next connect's key pair, which is made later (by the
    # shell, when idle), so the next connect generates none on its way (its
    # critical path) and the datagram that ended this one generated none.
    made = _counting_generations(monkeypatch)
    server = server_config()
    store = MemoryTicketStore()
    first = handshake(make_pair(client_config(session_tickets=store), server))
    assert first.client.handshake_complete and first.client.handshake_confirmed
    assert made == [Group.X25519] * 2  # the handshake's own, none ahead yet
    wanted = key_exchange._WANTED
    assert wanted == {(Group.X25519, True), (Group.X25519, False)}
    key_exchange.make_wanted_key_shares()
    assert made == [Group.X25519] * 4 and not key_exchange.key_shares_wanted()
    made.clear()
    second = make_pair(client_config(session_tickets=store), server)  # connect(): ClientHello
    assert made == []
    handshake(second)
    assert second.client.resumed
    assert made == []  # both sides took the pairs made ahead
    assert key_exchange.key_shares_wanted()  # and ask for a third's


async def test_the_shell_makes_the_wanted_key_pairs_when_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Over loopback: once a connect is over and nothing else waits to run,
    both sides' next key pairs are ready; none was made while a datagram was
    processed (the one that ended the handshake carries the first request
    or reply too)."""
    made = _counting_generations(monkeypatch)
    in_datagram = False
    generated_in_datagram: list[Group] = []
    generate = key_exchange._generate

    def watching(group: Group) -> object:
        if in_datagram:
            generated_in_datagram.append(group)
        return generate(group)

    monkeypatch.setattr(key_exchange, "_generate", watching)
    receive_datagram = QuicConnection.receive_datagram

    def receiving(self: QuicConnection, *args: Any) -> None:
        nonlocal in_datagram
        in_datagram = True
        try:
            receive_datagram(self, *args)
        finally:
            in_datagram = False

    monkeypatch.setattr(QuicConnection, "receive_datagram", receiving)

    async def handler(conn: quic.Connection) -> None:
        await trio.sleep_forever()

    store = MemoryTicketStore()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(quic.serve, host="127.0.0.1"), handler, 0, server_config()
            )
            async with quic.connect("127.0.0.1", server.port, client_config(session_tickets=store)):
                await trio.testing.wait_all_tasks_blocked()
                ready = {key for key, pairs in key_exchange._READY.items() if pairs}
            nursery.cancel_scope.cancel()
    assert ready == {(Group.X25519, True), (Group.X25519, False)}
    assert made == [Group.X25519] * 4  # this connect's two, and two ahead
    # Only the server's own pair for this connect was made as a datagram
    # (the ClientHello) was processed; the two ahead were not.
    assert generated_in_datagram == [Group.X25519]
