"""What a server does with requests that came in 0-RTT, which an attacker may
replay (RFC 8446 §8): streams say so (``Stream.early_data``), and the HTTP/3
server runs only safe methods before the handshake completes (RFC 8470).

A relay between client and server holds the server's replies back, so the
client's requests surely go in 0-RTT and the server's handshake stays
incomplete, as it would for a replayed flight, until the test lets them go.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import trio
import trio.testing
from quic_pair import client_config, server_config

import ghostwire.http3 as h3
import ghostwire.quic as quic
from ghostwire.quic.tls import MemoryTicketStore

MAX_DATAGRAM = 65536


class HoldingRelay:
    """Forwards one client's datagrams to the server at once, and the server's
    to the client only once ``release()`` was called."""

    def __init__(self, server_port: int) -> None:
        self._server = ("127.0.0.1", server_port)
        self._released = trio.Event()

    def release(self) -> None:
        self._released.set()

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        front = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        back = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        with front, back:
            await front.bind(("127.0.0.1", 0))
            await back.bind(("127.0.0.1", 0))
            task_status.started(front.getsockname()[1])
            data, client = await front.recvfrom(MAX_DATAGRAM)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._replies, back, front, client)
                while True:
                    await back.sendto(data, self._server)
                    data, _ = await front.recvfrom(MAX_DATAGRAM)

    async def _replies(
        self, back: trio.socket.SocketType, front: trio.socket.SocketType, client: Any
    ) -> None:
        held: list[bytes] = []

        async def hold() -> None:
            while True:
                held.append((await back.recvfrom(MAX_DATAGRAM))[0])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(hold)
            await self._released.wait()
            nursery.cancel_scope.cancel()
        for data in held:
            await front.sendto(data, client)
        while True:
            data, _ = await back.recvfrom(MAX_DATAGRAM)
            await front.sendto(data, client)


REQUEST = b"request" * 10


async def _read_all(stream: Any) -> bytes:
    data = b""
    while chunk := await stream.receive_some():
        data += chunk
    return data


async def _ask(stream: Any) -> bytes:
    await stream.send_all(REQUEST)
    await stream.send_eof()
    return await _read_all(stream)


async def test_streams_opened_in_0rtt_say_so_and_later_ones_do_not() -> None:
    seen: list[tuple[Any, bool]] = []

    async def answer(stream: Any) -> None:
        async with stream:
            await stream.send_all(await _read_all(stream), end_stream=True)

    async def handler(conn: quic.Connection) -> None:
        async with trio.open_nursery() as nursery:
            async for stream in conn:
                seen.append((stream, stream.early_data))
                nursery.start_soon(answer, stream)

    store = MemoryTicketStore()
    config = client_config(session_tickets=store, early_data=True)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            serving = partial(quic.serve, handler, 0, server_config(early_data=True))
            server = await nursery.start(partial(serving, host="127.0.0.1"))
            async with quic.connect("127.0.0.1", server.port, config) as conn:
                assert await _ask(await conn.open_stream()) == REQUEST
                if not len(store):
                    await conn.ping()  # the ticket precedes the answer to this
            assert len(store) == 1

            relay = HoldingRelay(server.port)
            relay_port = await nursery.start(relay.serve)
            async with quic.connect("127.0.0.1", relay_port, config) as conn:
                assert not conn.handshake_complete  # returned early: 0-RTT
                early = await conn.open_stream()
                await early.send_all(REQUEST)
                await early.send_eof()
                await trio.testing.wait_all_tasks_blocked()
                assert [flag for _, flag in seen] == [False, True]
                relay.release()
                assert await _read_all(early) == REQUEST
                await conn.wait_handshake()
                assert conn.early_data_accepted
                assert await _ask(await conn.open_stream()) == REQUEST
            nursery.cancel_scope.cancel()
    assert [flag for _, flag in seen] == [False, True, False]
    # Still true once the handshake completed: what it carried came early.
    assert [stream.early_data for stream, _ in seen] == [False, True, False]
    assert not early.early_data  # a client's streams never say so


class _Recorder:
    """An HTTP/3 handler noting each request's method and early-data header."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, str | None]] = []
        self.got = trio.Event()

    async def __call__(self, request: h3.Request) -> h3.Response:
        await request.read()
        self.ran.append((request.method, request.header("early-data")))
        self.got.set()
        return h3.Response(200, [], request.method.encode())


async def _ticket_for(port: int, config: quic.ClientConfig, store: MemoryTicketStore) -> None:
    async with h3.Client(config) as client:
        for _ in range(10):  # the ticket follows the handshake, soon
            assert (await client.get(f"https://127.0.0.1:{port}/")).status == 200
            if len(store):
                return
    raise AssertionError("no session ticket")


async def _early_get_and_post(
    server_config_: quic.ServerConfig, *, release: bool
) -> tuple[_Recorder, list[str]]:
    """A GET and a POST sent in 0-RTT through a relay that holds the server's
    flight back (until the handshake timed out on the server, without
    ``release``): what ran, and what the client got."""
    recorder = _Recorder()
    store = MemoryTicketStore()
    config = client_config(alpn=["h3"], session_tickets=store, early_data=True)
    replies: list[str] = []
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(h3.serve, recorder, 0, server_config_, host="127.0.0.1")
        )
        await _ticket_for(server.port, config, store)
        recorder.ran.clear()
        recorder.got = trio.Event()
        relay = HoldingRelay(server.port)
        url = f"https://127.0.0.1:{await nursery.start(relay.serve)}/"

        async with h3.Client(config) as client:

            async def fetch(method: str) -> None:
                body = b"x" if method == "POST" else None
                response = await client.request(method, url, content=body)
                replies.append((await response.read()).decode())

            async with trio.open_nursery() as requests:
                requests.start_soon(fetch, "GET")
                requests.start_soon(fetch, "POST")
                await recorder.got.wait()
                await trio.testing.wait_all_tasks_blocked()
                before = list(recorder.ran)
                if release:
                    relay.release()
                else:  # a replayed flight: the handshake never completes
                    # Polls the mock clock (no real wait): no event marks the end.
                    while server.connection_count:  # noqa: ASYNC110
                        await trio.sleep(1)
                    # The server gave the handshake up; the POST must not have run.
                    assert recorder.ran == before
                    requests.cancel_scope.cancel()
        nursery.cancel_scope.cancel()
    assert before == [("GET", "1")]
    return recorder, replies


async def test_http3_runs_an_unsafe_0rtt_request_only_once_the_handshake_completes() -> None:
    with trio.fail_after(20):
        recorder, replies = await _early_get_and_post(
            server_config(alpn=["h3"], early_data=True), release=True
        )
    assert recorder.ran == [("GET", "1"), ("POST", "1")]
    assert sorted(replies) == ["GET", "POST"]


async def test_http3_never_runs_an_unsafe_request_of_a_replayed_0rtt_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = server_config(alpn=["h3"], early_data=True, handshake_timeout=2.0)
    with trio.fail_after(60):
        recorder, replies = await _early_get_and_post(config, release=False)
    assert recorder.ran == [("GET", "1")]  # the POST never ran
    assert replies == []


# -- RPC: a method not marked idempotent waits for the handshake ---------------------


async def test_rpc_runs_a_non_idempotent_0rtt_call_only_once_the_handshake_completes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """(The mock clock: were the calls to wait for the client's
    ``rpc.describe``, whose reply is held back, the test would see it.)"""
    from test_rpc_support import rpc_client_config, rpc_server_config

    import ghostwire.rpc as rpc

    ran: list[str] = []
    read_ran = trio.Event()
    wallet = rpc.Service("wallet")

    @wallet.call(idempotent=True)
    async def balance(ctx: rpc.Context) -> int:
        ran.append("balance")
        read_ran.set()
        return 7

    @wallet.call
    async def transfer(ctx: rpc.Context, amount: int) -> int:
        ran.append("transfer")
        return amount

    store = MemoryTicketStore()
    config = rpc_client_config(session_tickets=store, early_data=True)
    server = rpc.Server([wallet], config=rpc_server_config(early_data=True))
    results: list[int] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            listener = await nursery.start(partial(server.serve, 0, host="127.0.0.1"))
            async with rpc.connect(f"127.0.0.1:{listener.port}", config=config) as client:
                for _ in range(10):  # the ticket follows the handshake, soon
                    assert await client.call("wallet.balance") == 7
                    if len(store):
                        break
            assert len(store)
            ran.clear()
            relay = HoldingRelay(listener.port)
            relay_port = await nursery.start(relay.serve)
            connected_at = trio.current_time()
            async with rpc.connect(f"127.0.0.1:{relay_port}", config=config) as client:

                async def call(name: str, **kwargs: Any) -> None:
                    results.append(await client.call(name, **kwargs))

                async with trio.open_nursery() as calls:
                    calls.start_soon(call, "wallet.balance")
                    calls.start_soon(partial(call, "wallet.transfer", amount=5))
                    await read_ran.wait()
                    # At once, in 0-RTT: not after rpc.describe's 5 s timeout.
                    assert trio.current_time() - connected_at < 1.0
                    await trio.testing.wait_all_tasks_blocked()
                    assert ran == ["balance"]  # the transfer waits: it may be a replay
                    relay.release()
            nursery.cancel_scope.cancel()
    assert ran == ["balance", "transfer"]
    assert sorted(results) == [5, 7]
