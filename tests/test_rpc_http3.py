"""The HTTP/3 mapping of ghostwire.rpc (docs/protocol.md §11) over real loopback QUIC.

One ``rpc.Server`` answers ``h3`` and ``ghostwire-rpc`` on one port. Two
independent HTTP/3 clients call it: ours (``ghostwire.http3.Client``) and
aioquic's (``aioquic.h3`` driven by tests/aioquic_h3_peer.py on an asyncio
loop in a thread). Both see the same replies: results in msgpack and JSON
(big integers and bytes included), the HTTP status and ``rpc-status`` of an
unknown method, bad arguments, a handler's crash (500, INTERNAL, no
internals), a deadline (504; the handler was cancelled), an event channel
streamed to its end (length-prefixed frames, final frame and trailers);
and a native ``ghostwire-rpc`` client is served on the same port at the same
time.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
import trio.testing
from aioquic_peer import PeerStreamReset
from quic_pair import test_ca
from test_rpc_support import rpc_client_config, rpc_server_config

import ghostwire.quic as quic
import ghostwire.rpc as rpc
from ghostwire.http3 import Client, H3ErrorCode, HttpConnectionError, HttpStreamError
from ghostwire.http3.net.session import H3Session
from ghostwire.quic.tls import TrustStore
from ghostwire.rpc.codec import decode, encode
from ghostwire.rpc.dispatch import INTERNAL_MESSAGE
from ghostwire.rpc.framing import MESSAGE, TRAILERS, FrameDecoder
from ghostwire.rpc.h3_json import decode_json, encode_json
from ghostwire.rpc.wire import decode_event, parse_trailer

Status = rpc.Status
HOST = "127.0.0.1"
BIG = 10**30 + 7  # past 64 bits: the bigint extension in msgpack, {"$int"} in JSON
ADDRESS = bytes(range(20))


# -- the service both transports serve -------------------------------------------------------


@dataclass
class Probe:
    started: trio.Event = field(default_factory=trio.Event)
    cancelled: trio.Event = field(default_factory=trio.Event)
    release: trio.Event = field(default_factory=trio.Event)
    contexts: list[rpc.Context] = field(default_factory=list)


def make_service(probe: Probe) -> rpc.Service:
    zvm = rpc.Service("zvm")

    @zvm.call
    async def echo(ctx: rpc.Context, value: Any) -> Any:
        return value

    @zvm.call
    async def get_balance(ctx: rpc.Context, address: bytes, scale: int = 1) -> int:
        return int.from_bytes(address, "big") * scale

    @zvm.call
    async def fail(ctx: rpc.Context, code: int, details: Any = None) -> None:
        raise rpc.RpcError(Status(code), f"failed with {code}: é%", details)

    @zvm.call
    async def crash(ctx: rpc.Context) -> None:
        raise RuntimeError("database password is hunter2")

    @zvm.call
    async def context(ctx: rpc.Context) -> dict[str, Any]:
        return {"metadata": dict(ctx.metadata), "has_deadline": ctx.deadline is not None}

    @zvm.call
    async def hang(ctx: rpc.Context) -> None:
        probe.contexts.append(ctx)
        probe.started.set()
        try:
            await trio.sleep_forever()
        finally:
            probe.cancelled.set()

    @zvm.call
    async def wait(ctx: rpc.Context) -> str:
        probe.started.set()
        await probe.release.wait()
        return "released"

    @zvm.events
    async def logs(ctx: rpc.Context, count: int) -> AsyncIterator[rpc.Event]:
        start = 0 if ctx.resume_after is None else ctx.resume_after + 1
        for n in range(start, count):
            yield rpc.Event({"n": n, "topic": bytes([n]) * 4, "amount": BIG + n}, cursor=n)

    @zvm.events
    async def broken(ctx: rpc.Context) -> AsyncIterator[int]:
        yield 1
        # (a failing channel discards what it buffered: let the event go out first)
        await trio.testing.wait_all_tasks_blocked()
        raise rpc.RpcError(Status.DATA_LOSS, "the log was pruned")

    @zvm.events
    async def ticks(ctx: rpc.Context) -> AsyncIterator[rpc.Event]:
        try:
            for n in range(10**9):
                yield rpc.Event(n, cursor=n)
        finally:
            probe.cancelled.set()

    @zvm.stream
    async def relay(ctx: rpc.Context, stream: rpc.BidiStream) -> None:
        pass  # pragma: no cover - not offered over HTTP/3

    return zvm


@asynccontextmanager
async def running(probe: Probe, **options: Any) -> AsyncIterator[tuple[rpc.Server, int]]:
    server = rpc.Server([make_service(probe)], config=rpc_server_config(), **options)
    async with trio.open_nursery() as nursery:
        listener = await nursery.start(functools.partial(server.serve, 0, host=HOST))
        yield server, listener.port
        nursery.cancel_scope.cancel()


# -- one view of a reply, whichever client got it ----------------------------------------------


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    trailers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    @property
    def rpc_status(self) -> int:
        value = self.header("rpc-status")
        assert value is not None, self.headers
        return int(value)

    def value(self) -> Any:
        if self.header("content-type") == "application/json":
            return decode_json(self.body)
        assert self.header("content-type") == "application/msgpack"
        return decode(self.body)


class Caller:
    """POSTs to the server from one HTTP/3 client."""

    async def post(
        self, path: str, body: bytes, headers: list[tuple[str, str]]
    ) -> Reply:  # pragma: no cover - overridden
        raise NotImplementedError

    async def call(
        self,
        method: str,
        arguments: Any = None,
        *,
        json_body: bool = False,
        headers: list[tuple[str, str]] | None = None,
    ) -> Reply:
        content_type = "application/json" if json_body else "application/msgpack"
        body = b"" if arguments is None else (encode_json if json_body else encode)(arguments)
        path = "/" + method.replace(".", "/")
        return await self.post(path, body, [("content-type", content_type), *(headers or [])])


class GwCaller(Caller):
    def __init__(self, client: Client, port: int) -> None:
        self.client, self.base = client, f"https://{HOST}:{port}"

    async def post(self, path: str, body: bytes, headers: list[tuple[str, str]]) -> Reply:
        response = await self.client.post(self.base + path, content=body, headers=headers)
        data = await response.read()
        return Reply(response.status, list(response.headers), data, list(response.trailers))


class AioquicCaller(Caller):
    def __init__(self, peer: Any, client: Any) -> None:
        self.peer, self.client = peer, client

    async def post(self, path: str, body: bytes, headers: list[tuple[str, str]]) -> Reply:
        response = await self.peer.run(
            self.client.request("POST", path, headers=headers, body=body), 20
        )
        assert response.status is not None and response.body is not None
        return Reply(response.status, response.headers, response.body, response.trailers)


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("rpc-h3") / "ca.pem"
    test_ca().write_pem(path)
    return str(path)


def gw_client() -> Client:
    config = quic.ClientConfig(alpn=["h3"], trust_store=TrustStore([test_ca().certificate]))
    return Client(config, timeout=20)


@asynccontextmanager
async def caller_for(kind: str, port: int, ca_file: str, peer: Any) -> AsyncIterator[Caller]:
    if kind == "ghostwire":
        async with gw_client() as client:
            yield GwCaller(client, port)
        return
    from aioquic_h3_peer import H3PeerClient
    from aioquic_peer import peer_configuration

    configuration = peer_configuration(
        is_client=True, alpn=["h3"], cafile=ca_file, server_name="localhost"
    )
    client = await peer.run(H3PeerClient.connect(HOST, port, configuration), 20)
    try:
        yield AioquicCaller(peer, client)
    finally:
        await peer.run(client.close(), 20)


CLIENTS = ["ghostwire", "aioquic"]


@pytest.fixture(params=CLIENTS)
def client_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def setup(
    client_kind: str, ca_file: str, request: pytest.FixtureRequest, **options: Any
) -> AsyncIterator[tuple[Probe, rpc.Server, int, Caller]]:
    peer = request.getfixturevalue("peer") if client_kind == "aioquic" else None
    probe = Probe()
    with trio.fail_after(60):
        async with running(probe, **options) as (server, port):
            async with caller_for(client_kind, port, ca_file, peer) as caller:
                yield probe, server, port, caller


def events_of(body: bytes) -> tuple[list[rpc.Event], rpc.RpcError | None]:
    """The frames of a msgpack event stream: its events and how it ended."""
    decoder = FrameDecoder()
    decoder.feed(body)
    events: list[rpc.Event] = []
    ended: list[rpc.RpcError | None] = []
    while (frame := decoder.next_frame()) is not None:
        assert not ended, "nothing may follow the final frame"
        kind, payload = frame
        if kind == MESSAGE:
            events.append(decode_event(payload))
        else:
            assert kind == TRAILERS
            ended.append(parse_trailer(payload))
    decoder.check_eof()
    assert len(ended) == 1, "the stream ends with exactly one TRAILERS frame"
    return events, ended[0]


# -- the tests -----------------------------------------------------------------------------


async def test_successful_call_msgpack_and_json(
    client_kind: str, ca_file: str, request: pytest.FixtureRequest
) -> None:
    async with setup(client_kind, ca_file, request) as (_, _, _, caller):
        reply = await caller.call("zvm.get_balance", {"address": b"\x01\x00", "scale": 3})
        assert (reply.status, reply.rpc_status) == (200, 0)
        assert reply.header("content-type") == "application/msgpack"
        assert reply.value() == 768

        body = b'{"address": {"$bytes": "0100"}, "scale": 3}'  # as curl would send it
        reply = await caller.post("/zvm/get_balance", body, [("content-type", "application/json")])
        assert (reply.status, reply.rpc_status) == (200, 0)
        assert reply.header("content-type") == "application/json"
        assert json.loads(reply.body) == 768

        # msgpack in, JSON out (accept), and the other way round
        accept_json = [("accept", "application/json")]
        reply = await caller.call("zvm.echo", {"value": [1, "a"]}, headers=accept_json)
        assert reply.header("content-type") == "application/json" and reply.value() == [1, "a"]
        reply = await caller.call(
            "zvm.echo", {"value": None}, json_body=True, headers=[("accept", "application/msgpack")]
        )
        assert reply.header("content-type") == "application/msgpack" and reply.value() is None


async def test_big_integers_and_bytes_both_ways(
    client_kind: str, ca_file: str, request: pytest.FixtureRequest
) -> None:
    value = {
        "amount": 2**256 - 1,
        "debt": -(2**255),
        "small": -5,
        "edge": 2**53,  # past JSON's exact range: tagged in JSON
        "hash": b"\x00\xff" * 16,
        "nested": [b"", {1: b"k", "$x": 1}, {"$bytes": "not bytes"}],
    }
    async with setup(client_kind, ca_file, request) as (_, _, _, caller):
        reply = await caller.call("zvm.echo", {"value": value})
        assert reply.status == 200 and reply.value() == value

        reply = await caller.call("zvm.echo", {"value": value}, json_body=True)
        assert reply.status == 200 and reply.value() == value
        plain = json.loads(reply.body)  # what any JSON parser reads: nothing lossy
        assert plain["amount"] == {"$int": str(2**256 - 1)}
        assert plain["hash"] == {"$bytes": "00ff" * 16}
        assert plain["small"] == -5
        assert plain["nested"][2] == {"$map": [["$bytes", "not bytes"]]}

        # a plain JSON number of any size is read exactly
        body = b'{"value": %d}' % (2**256 - 1)
        reply = await caller.post("/zvm/echo", body, [("content-type", "application/json")])
        assert reply.value() == 2**256 - 1


async def test_unknown_method_and_bad_requests(
    client_kind: str, ca_file: str, request: pytest.FixtureRequest
) -> None:
    async with setup(client_kind, ca_file, request) as (_, _, _, caller):
        reply = await caller.call("zvm.nope", {})
        assert (reply.status, reply.rpc_status) == (404, Status.UNIMPLEMENTED)
        error = reply.value()
        assert error["code"] == Status.UNIMPLEMENTED and "zvm.nope" in error["message"]

        reply = await caller.post("/zvm", b"", [])
        assert (reply.status, reply.rpc_status) == (404, Status.UNIMPLEMENTED)

        reply = await caller.post("/zvm/echo", b"x", [("content-type", "text/plain")])
        assert (reply.status, reply.rpc_status) == (415, Status.INVALID_ARGUMENT)

        reply = await caller.call("zvm.relay", {})  # bidirectional streams: QUIC only
        assert (reply.status, reply.rpc_status) == (404, Status.UNIMPLEMENTED)

        reply = await caller.post("/zvm/echo", b"\xc1", [("content-type", "application/msgpack")])
        assert (reply.status, reply.rpc_status) == (400, Status.INVALID_ARGUMENT)


async def test_invalid_arguments(
    client_kind: str, ca_file: str, request: pytest.FixtureRequest
) -> None:
    async with setup(client_kind, ca_file, request) as (_, _, _, caller):
        for arguments in ({}, {"address": "not bytes"}, {"address": b"", "bogus": 1}):
            reply = await caller.call("zvm.get_balance", arguments)
            assert (reply.status, reply.rpc_status) == (400, Status.INVALID_ARGUMENT)
            assert reply.value()["code"] == Status.INVALID_ARGUMENT
        reply = await caller.call("zvm.get_balance", {"address": "x"}, json_body=True)
        assert (reply.status, reply.rpc_status) == (400, Status.INVALID_ARGUMENT)
        assert "address" in json.loads(reply.body)["message"]
        reply = await caller.call("zvm.echo", [1], json_body=True)  # not a map
        assert (reply.status, reply.rpc_status) == (400, Status.INVALID_ARGUMENT)


async def test_handler_crash_is_internal_without_internals(
    client_kind: str, ca_file: str, request: pytest.FixtureRequest, caplog: Any
) -> None:
    async with setup(client_kind, ca_file, request) as (_, _, _, caller):
        for json_body in (False, True):
            reply = await caller.call("zvm.crash", {}, json_body=json_body)
            assert (reply.status, reply.rpc_status) == (500, Status.INTERNAL)
            assert reply.value() == {"code": Status.INTERNAL, "message": INTERNAL_MESSAGE}
            assert b"hunter2" not in reply.body and b"Traceback" not in reply.body
            assert all("hunter2" not in value for _, value in reply.headers)
    assert "hunter2" in caplog.text  # logged on the server


async def test_every_status_maps_to_its_http_status(
    client_kind: str, ca_file: str, request: pytest.FixtureRequest
) -> None:
    from ghostwire.rpc.h3_headers import HTTP_STATUS

    async with setup(client_kind, ca_file, request) as (_, _, _, caller):
        for status in Status:
            if status is Status.OK:
                continue
            details = {"why": b"\x00", "n": BIG}
            reply = await caller.call("zvm.fail", {"code": int(status), "details": details})
            assert (reply.status, reply.rpc_status) == (HTTP_STATUS[status], status)
            assert reply.value() == {
                "code": status,
                "message": f"failed with {int(status)}: é%",
                "details": details,
            }
            assert reply.header("rpc-message") == f"failed with {int(status)}: %C3%A9%25"


async def test_deadline_cancels_the_handler(
    client_kind: str, ca_file: str, request: pytest.FixtureRequest
) -> None:
    async with setup(client_kind, ca_file, request) as (probe, _, _, caller):
        reply = await caller.call("zvm.hang", {}, headers=[("rpc-timeout", "0.2")])
        assert (reply.status, reply.rpc_status) == (504, Status.DEADLINE_EXCEEDED)
        assert probe.cancelled.is_set()  # the handler ran and was cancelled
        reply = await caller.call("zvm.hang", {}, headers=[("rpc-timeout", "soon")])
        assert (reply.status, reply.rpc_status) == (400, Status.INVALID_ARGUMENT)


async def test_metadata_headers(
    client_kind: str, ca_file: str, request: pytest.FixtureRequest
) -> None:
    headers = [
        ("rpc-meta-token", "abc"),
        ("rpc-meta-sig-bin", "AAEC"),
        ("rpc-timeout", "30"),
        ("x-other", "ignored"),
    ]
    async with setup(client_kind, ca_file, request) as (_, _, _, caller):
        reply = await caller.call("zvm.context", {}, headers=headers)
        assert reply.value() == {
            "metadata": {"token": "abc", "sig": b"\x00\x01\x02"},
            "has_deadline": True,
        }


async def test_event_channel_streams_to_the_end(
    client_kind: str, ca_file: str, request: pytest.FixtureRequest
) -> None:
    async with setup(client_kind, ca_file, request) as (_, server, _, caller):
        reply = await caller.call("zvm.logs", {"count": 50})
        assert (reply.status, reply.header("content-type")) == (
            200,
            "application/vnd.ghostwire.events+msgpack",
        )
        events, end = events_of(reply.body)
        assert end is None
        assert [e.cursor for e in events] == list(range(50))
        assert events[7].data == {"n": 7, "topic": b"\x07" * 4, "amount": BIG + 7}
        assert ("rpc-status", "0") in reply.trailers

        # resume after a cursor; JSON lines
        reply = await caller.call(
            "zvm.logs", {"count": 4}, json_body=True, headers=[("rpc-after", "1")]
        )
        assert reply.header("content-type") == "application/x-ndjson"
        lines = [decode_json(line) for line in reply.body.splitlines()]
        assert lines == [
            {"data": {"n": 2, "topic": b"\x02" * 4, "amount": BIG + 2}, "cursor": 2},
            {"data": {"n": 3, "topic": b"\x03" * 4, "amount": BIG + 3}, "cursor": 3},
            {"status": 0},
        ]

        # an error after events: 200, the final frame and the trailers carry it
        reply = await caller.call("zvm.broken", {})
        events, end = events_of(reply.body)
        assert [e.data for e in events] == [1]
        assert end is not None and end.status is Status.DATA_LOSS
        assert ("rpc-status", str(int(Status.DATA_LOSS))) in reply.trailers

        # refused before any event: a plain HTTP error
        reply = await caller.call("zvm.logs", {"count": "many"})
        assert (reply.status, reply.rpc_status) == (400, Status.INVALID_ARGUMENT)
        assert server.statistics()["subscriptions"] == 0


async def test_native_client_on_the_same_port_at_the_same_time(
    client_kind: str, ca_file: str, request: pytest.FixtureRequest
) -> None:
    async with setup(client_kind, ca_file, request) as (probe, server, port, caller):
        assert server.alpn_protocols == [rpc.ALPN, "h3"]
        async with rpc.connect(f"{HOST}:{port}", config=rpc_client_config()) as native:
            async with trio.open_nursery() as nursery:
                replies: list[Reply] = []

                async def over_h3() -> None:
                    replies.append(await caller.call("zvm.wait", {}))

                nursery.start_soon(over_h3)
                await probe.started.wait()  # an HTTP/3 call is in flight...
                # ... while the native client calls and subscribes
                assert await native.call("zvm.get_balance", address=b"\x02") == 2
                async with native.subscribe("zvm.logs", count=3) as events:
                    assert [e.cursor async for e in events] == [0, 1, 2]
                probe.release.set()
            assert replies[0].status == 200 and replies[0].value() == "released"


async def test_http3_can_be_turned_off(ca_file: str) -> None:
    probe = Probe()
    async with running(probe, http3=False) as (server, port):
        assert server.alpn_protocols == [rpc.ALPN]
        with trio.fail_after(20):
            async with gw_client() as client:
                with pytest.raises(HttpConnectionError):  # no common ALPN: no handshake
                    await client.post(f"https://{HOST}:{port}/zvm/echo", content=b"")


def test_json_form_round_trips() -> None:
    from ghostwire.rpc.h3_json import from_json_value, to_json_value

    for value in (
        [2**64, -(2**64), 2**53 - 1, -(2**53) + 1, 2**53],
        {"$int": "5"},
        {1: 2, b"k": [b"v"]},
        {"a": {"$bytes": "00"}, "b": 1.5, "c": None, "d": True},
    ):
        assert from_json_value(json.loads(json.dumps(to_json_value(value)))) == value
    assert to_json_value(2**53 - 1) == 2**53 - 1
    assert to_json_value({"$int": "5"}) == {"$map": [["$int", "5"]]}


async def test_same_limits_as_the_quic_protocol(
    client_kind: str, ca_file: str, request: pytest.FixtureRequest
) -> None:
    limits = rpc.Limits(max_message_size=1000, max_concurrent_calls=1)
    async with setup(client_kind, ca_file, request, limits=limits) as (probe, _, _, caller):
        # refused as soon as it passes the limit; past the flow control window,
        # the client is told to stop sending (STOP_SENDING H3_NO_ERROR). aioquic
        # gets a body within the window: see the report on its reset mid-frame.
        size = 8_000_000 if client_kind == "ghostwire" else 200_000
        big = {"value": b"x" * size}
        reply = await caller.call("zvm.echo", big)
        assert (reply.status, reply.rpc_status) == (413, Status.RESOURCE_EXHAUSTED)
        reply = await caller.call("zvm.echo", {"value": b"x" * 900})
        assert reply.status == 200 and reply.value() == b"x" * 900

        async with trio.open_nursery() as nursery:
            replies: list[Reply] = []

            async def first() -> None:
                replies.append(await caller.call("zvm.wait", {}))

            nursery.start_soon(first)
            await probe.started.wait()
            reply = await caller.call("zvm.echo", {"value": 1})  # a second call at once
            assert (reply.status, reply.rpc_status) == (429, Status.RESOURCE_EXHAUSTED)
            probe.release.set()
        assert replies[0].status == 200
        assert (await caller.call("zvm.echo", {"value": 2})).value() == 2


async def test_shutdown_lets_calls_finish_and_refuses_new_ones(
    client_kind: str, ca_file: str, request: pytest.FixtureRequest
) -> None:
    """GOAWAY first (RFC 9114 §5.2): the call in flight is answered, a new
    request is refused unprocessed, and the connection closes with H3_NO_ERROR."""
    async with setup(client_kind, ca_file, request) as (probe, server, _, caller):
        async with trio.open_nursery() as nursery:
            replies: list[Reply] = []

            async def in_flight() -> None:
                replies.append(await caller.call("zvm.wait", {}))

            nursery.start_soon(in_flight)
            await probe.started.wait()
            session = _gw_session(caller)
            nursery.start_soon(server.shutdown, 30.0)
            await trio.testing.wait_all_tasks_blocked()
            refused = await _refusal(caller)
            probe.release.set()
        assert replies[0].status == 200 and replies[0].value() == "released"
        if session is not None:  # our client: it saw the GOAWAY and the graceful close
            assert session.goaway_id is not None
            with trio.fail_after(20):
                await session.closed_event.wait()
            assert session.shutdown is not None and session.shutdown.by_peer
            assert session.shutdown.error_code == H3ErrorCode.H3_NO_ERROR
        # aioquic ignores GOAWAY and sends on: the stream is refused unprocessed.
        # Ours opens a new connection, which the draining server refuses, unless
        # its request crossed the GOAWAY (then refused as aioquic's is).
        assert refused in ("H3_REQUEST_REJECTED", "connection refused"), refused


def _gw_session(caller: Caller) -> H3Session | None:
    if not isinstance(caller, GwCaller):
        return None
    (session,) = caller.client._sessions.values()
    return session


async def _refusal(caller: Caller) -> str:
    """How a new request fails on a draining server (a reply is a failure)."""
    try:
        reply = await caller.call("zvm.echo", {"value": 1})
    except HttpStreamError as exc:
        return H3ErrorCode(exc.error_code).name
    except PeerStreamReset as exc:
        return H3ErrorCode(exc.error_code).name
    except HttpConnectionError as exc:
        cause = exc.__cause__
        # CONNECTION_REFUSED (RFC 9000 §20.1) from a server refusing new connections
        assert isinstance(cause, quic.HandshakeError) and cause.by_peer, repr(cause)
        assert cause.error_code == 0x2, repr(cause)
        return "connection refused"
    return f"reply {reply.status} rpc-status {reply.header('rpc-status')}"


async def test_client_reset_cancels_the_call_at_once(ca_file: str) -> None:
    probe = Probe()
    headers = [("content-type", "application/msgpack")]
    async with running(probe) as (_, port), gw_client() as client:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                url = f"https://{HOST}:{port}/zvm/hang"
                nursery.start_soon(functools.partial(client.post, url, encode({}), headers=headers))
                await probe.started.wait()
                nursery.cancel_scope.cancel()  # our client resets the request stream
            await probe.cancelled.wait()  # ... and the server cancelled the handler
            assert probe.contexts[0].cancelled


async def test_subscriber_going_away_ends_the_subscription(ca_file: str) -> None:
    probe = Probe()
    headers = [("content-type", "application/msgpack")]
    async with running(probe) as (server, port), gw_client() as client:
        with trio.fail_after(20):
            url = f"https://{HOST}:{port}/zvm/ticks"
            response = await client.post(url, content=encode({}), headers=headers)
            assert response.status == 200
            async for chunk in response.iter_bytes():
                assert chunk  # the events flow, without end
                break
            await response.aclose()  # the subscriber goes away mid-stream
            await probe.cancelled.wait()  # the channel's generator was closed
            await trio.testing.wait_all_tasks_blocked()  # its task ends right after
            assert server.statistics()["subscriptions"] == 0
