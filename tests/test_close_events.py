"""What arrived before a peer's CONNECTION_CLOSE is reported before it.

A server that gives up on a response resets its stream and then closes the
connection; both often reach the client together. The client must see the
reset (and any last data) first: the HTTP/3 layer ignores stream events once
the connection is terminated, and would otherwise take a reset body for a
complete one.
"""

from __future__ import annotations

from quic_pair import SERVER_ADDR, handshake, make_pair

from ghostwire.quic.events import ConnectionTerminated, StreamReadable, StreamResetReceived


def test_reset_and_data_before_a_close_come_before_connection_terminated() -> None:
    pair = handshake(make_pair())
    server = pair.server
    assert server is not None
    client = pair.client
    sid = client.open_stream()
    client.send_stream_data(sid, b"request", end_stream=True)
    pair.exchange()
    reset_sid = sid
    server.reset_stream(reset_sid, 7)
    data_sid = server.open_stream()
    server.send_stream_data(data_sid, b"last words")
    in_flight = [d for d, _ in server.datagrams_to_send(pair.now)]
    server.close(0, "bye", now=pair.now)
    in_flight += [d for d, _ in server.datagrams_to_send(pair.now)]
    assert len(in_flight) >= 2
    del pair.client_events[:]
    for datagram in in_flight:  # all arrive before the application looks
        client.receive_datagram(datagram, SERVER_ADDR, pair.now)
    events = []
    while (event := client.next_event()) is not None:
        events.append(event)
    kinds = [type(event) for event in events]
    assert ConnectionTerminated in kinds
    terminated = kinds.index(ConnectionTerminated)
    assert any(
        isinstance(e, StreamResetReceived) and e.stream_id == reset_sid and e.error_code == 7
        for e in events[:terminated]
    ), events
    assert any(
        isinstance(e, StreamReadable) and e.stream_id == data_sid for e in events[:terminated]
    ), events
    assert not any(isinstance(e, StreamResetReceived | StreamReadable) for e in events[terminated:])
