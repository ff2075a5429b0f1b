"""RPC calls over real loopback QUIC: values, statuses, argument checks,
deadlines, cancellation, errors, malformed input, limits, many calls."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_rpc_support import connected, rpc_client_config, rpc_server_config

import ghostwire.quic as quic
import ghostwire.rpc as rpc
from ghostwire.rpc.codec import encode
from ghostwire.rpc.dispatch import INTERNAL_MESSAGE
from ghostwire.rpc.framing import HEADERS, MESSAGE, TRAILERS, FrameDecoder, encode_frame
from ghostwire.rpc.transport import RECEIVE_SIZE
from ghostwire.rpc.wire import parse_trailer

Status = rpc.Status


class Probe:
    """What the server's handlers saw (the test's window into the server)."""

    def __init__(self) -> None:
        self.started = trio.Event()
        self.cancelled = trio.Event()
        self.release = trio.Event()
        self.ran: list[str] = []
        self.outcomes: list[tuple[str, object]] = []
        self.contexts: list[rpc.Context] = []
        self.recorded = trio.Event()  # the interceptor saw an outcome
        self.waiting = 0
        self.all_waiting = trio.Event()
        self.expect_waiting = 1


def make_service(probe: Probe) -> rpc.Service:
    zvm = rpc.Service("zvm")

    @zvm.call
    async def echo(ctx: rpc.Context, value: Any) -> Any:
        return value

    @zvm.call
    async def get_balance(ctx: rpc.Context, address: bytes, scale: int = 1) -> int:
        probe.ran.append("get_balance")
        return int.from_bytes(address, "big") * scale

    @zvm.call
    async def fail(ctx: rpc.Context, code: int, details: Any = None) -> None:
        raise rpc.RpcError(Status(code), f"failed with {code}", details)

    @zvm.call
    async def crash(ctx: rpc.Context) -> None:
        raise RuntimeError("database password is hunter2")

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
        probe.waiting += 1
        if probe.waiting >= probe.expect_waiting:
            probe.all_waiting.set()
        await probe.release.wait()
        return "released"

    @zvm.call
    async def whoami(ctx: rpc.Context) -> dict[str, Any]:
        return {
            "method": ctx.method,
            "metadata": dict(ctx.metadata),
            "host": ctx.peer.address[0],
            "remaining": ctx.time_remaining() if ctx.deadline is not None else None,
        }

    return zvm


def recording_interceptor(probe: Probe) -> rpc.Interceptor:
    @asynccontextmanager
    async def record(ctx: rpc.Context) -> AsyncIterator[None]:
        try:
            yield
        except rpc.RpcError as exc:
            probe.outcomes.append((ctx.method, exc.status))
            probe.recorded.set()
            raise
        probe.outcomes.append((ctx.method, Status.OK))
        probe.recorded.set()

    return record


@asynccontextmanager
async def setup(**server_options: Any) -> AsyncIterator[tuple[Probe, rpc.Server, rpc.Client]]:
    probe = Probe()
    server_options.setdefault("interceptors", [recording_interceptor(probe)])
    async with connected([make_service(probe)], **server_options) as (server, client):
        yield probe, server, client


# -- values -----------------------------------------------------------------------

VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**256), max_value=2**256 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=64),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.binary(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.integers(min_value=0, max_value=2**256 - 1), min_size=1, max_size=40),
    st.lists(st.binary(max_size=3000), min_size=1, max_size=10),
    st.lists(VALUES, min_size=1, max_size=10),
)
def test_uint256_bytes_and_nested_values_round_trip_over_quic(
    uints: list[int], blobs: list[bytes], values: list[Any]
) -> None:
    async def main() -> None:
        with trio.fail_after(30):
            async with setup() as (_, _, client):
                for value in [*uints, *(-u for u in uints), *blobs, *values]:
                    assert same(await client.call("zvm.echo", value), value)
                # uint256 as an argument, checked against `address: bytes` and `scale: int`
                top = 2**256 - 1
                assert await client.call("zvm.get_balance", b"\xff" * 32, scale=1) == top

    trio.run(main)


async def test_positional_keyword_and_stub_forms() -> None:
    async with setup() as (_, _, client):
        assert await client.call("zvm.get_balance", b"\x01\x00", 3) == 768
        assert await client.call("zvm.get_balance", address=b"\x02", scale=2**200) == 2**201
        zvm = client.service("zvm")
        assert await zvm.get_balance(b"\x05") == 5
        assert await zvm.get_balance(address=b"\x05", scale=-1) == -5


async def test_metadata_peer_and_deadline_reach_the_handler() -> None:
    async with setup() as (_, _, client):
        info = await client.call("zvm.whoami", metadata={"token": "t", "bin": b"\x00\xff"})
        assert info["method"] == "zvm.whoami"
        assert info["metadata"] == {"token": "t", "bin": b"\x00\xff"}
        assert info["host"] == "127.0.0.1"
        assert info["remaining"] is None
        info = await client.call("zvm.whoami", timeout=30)
        assert 0 < info["remaining"] <= 30
        with trio.move_on_after(20):
            info = await client.call("zvm.whoami")
        assert 0 < info["remaining"] <= 20


@pytest.mark.parametrize("status", [s for s in Status if s is not Status.OK])
async def test_every_status_code_crosses_the_wire(status: Status) -> None:
    async with setup() as (_, _, client):
        with pytest.raises(rpc.RpcError) as info:
            await client.call("zvm.fail", int(status), details={"why": [2**100, b"x"]})
        assert info.value.status is status
        assert info.value.message == f"failed with {int(status)}"
        assert info.value.details == {"why": [2**100, b"x"]}


async def test_unknown_method_is_unimplemented() -> None:
    async with setup() as (_, _, client):
        for name in ("zvm.nope", "other.get_balance", "nodot"):
            with pytest.raises(rpc.RpcError) as info:
                await client.call(name)
            assert info.value.status is Status.UNIMPLEMENTED


async def test_bad_arguments_are_invalid_argument_naming_them() -> None:
    async with setup() as (probe, _, client):
        cases: list[tuple[dict[str, Any], str]] = [
            ({}, "'address'"),
            ({"address": b"\x01", "bogus": 1}, "'bogus'"),
            ({"address": "not bytes"}, "'address'"),
            ({"address": b"\x01", "scale": 1.5}, "'scale'"),
        ]
        for kwargs, named in cases:
            with pytest.raises(rpc.RpcError) as info:
                await client.call("zvm.get_balance", **kwargs)
            assert info.value.status is Status.INVALID_ARGUMENT
            assert named in info.value.message
        assert probe.ran == []


async def test_handler_exception_is_internal_without_details(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with setup() as (_, _, client):
        with caplog.at_level(logging.ERROR, logger="ghostwire.rpc"):
            with pytest.raises(rpc.RpcError) as info:
                await client.call("zvm.crash")
        assert info.value.status is Status.INTERNAL
        assert info.value.message == INTERNAL_MESSAGE and info.value.details is None
        assert "hunter2" not in repr(info.value) and "Traceback" not in repr(info.value)
        assert "hunter2" in caplog.text and "RuntimeError" in caplog.text  # logged on the server
        assert await client.call("zvm.echo", 1) == 1


# -- deadlines and cancellation ------------------------------------------------------


async def test_timeout_exceeded_both_sides_see_it() -> None:
    async with setup() as (probe, _, client):
        with trio.fail_after(10):
            with pytest.raises(rpc.RpcError) as info:
                await client.call("zvm.hang", timeout=0.2)
            assert info.value.status is Status.DEADLINE_EXCEEDED
            await probe.cancelled.wait()  # the server's handler was cancelled
            await probe.recorded.wait()
        assert probe.outcomes == [("zvm.hang", Status.DEADLINE_EXCEEDED)]
        assert await client.call("zvm.echo", "alive") == "alive"


async def test_callers_cancel_scope_is_the_deadline() -> None:
    async with setup() as (probe, _, client):
        with trio.fail_after(10):
            with trio.move_on_after(0.2) as scope:
                await client.call("zvm.hang")
            assert scope.cancelled_caught
            await probe.cancelled.wait()
            await probe.recorded.wait()
        assert probe.outcomes == [("zvm.hang", Status.DEADLINE_EXCEEDED)]
        # the deadline travelled with the call
        assert probe.contexts[0].deadline is not None


async def test_caller_cancelled_mid_call_cancels_the_handler() -> None:
    async with setup() as (probe, server, client):
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:

                async def caller() -> None:
                    await client.call("zvm.hang")

                nursery.start_soon(caller)
                await probe.started.wait()
                nursery.cancel_scope.cancel()
            await probe.cancelled.wait()
            await probe.recorded.wait()
        assert probe.outcomes == [("zvm.hang", Status.CANCELLED)]
        assert await client.call("zvm.echo", "next") == "next"
        assert server.statistics()["calls_in_flight"] == 0


async def test_server_gives_up_at_the_deadline_too() -> None:
    """A deadline shorter than the client's own wait: the server's scope ends it."""
    async with setup() as (probe, _, client):
        conn = client.connection
        with trio.fail_after(10):
            # Bypass the client's own deadline: send a raw request with timeout 0.1.
            reply = await raw_call(
                conn,
                encode_frame(HEADERS, encode({"method": "zvm.hang", "timeout": 0.1}))
                + encode_frame(MESSAGE, encode([[], {}])),
            )
        assert reply.status is Status.DEADLINE_EXCEEDED
        assert probe.cancelled.is_set()


# -- malformed input and limits ----------------------------------------------------------


async def raw_call(conn: rpc.RpcConnection, data: bytes) -> rpc.RpcError:
    """Write raw bytes as a request and return the trailer's status (as an RpcError)."""
    stream = await conn.connection.open_stream()
    await stream.send_all(data)
    await stream.send_eof()
    decoder = FrameDecoder()
    while chunk := await stream.receive_some():
        decoder.feed(chunk)
    frames = []
    while (frame := decoder.next_frame()) is not None:
        frames.append(frame)
    await stream.aclose()
    assert frames and frames[-1][0] == TRAILERS
    error = parse_trailer(frames[-1][1])
    return error if error is not None else rpc.RpcError(Status.OK)


@pytest.mark.parametrize(
    "data",
    [
        b"\x07\x00\x00\x00\x00",  # unknown frame type
        encode_frame(MESSAGE, encode([[], {}])),  # no HEADERS
        encode_frame(HEADERS, b"\xc1"),  # headers that are not msgpack
        encode_frame(HEADERS, encode({"method": "zvm.echo"})),  # no arguments
        encode_frame(HEADERS, encode({"method": "zvm.echo"})) + encode_frame(MESSAGE, b"\x92"),
        encode_frame(HEADERS, encode({"method": "zvm.echo"}))
        + encode_frame(MESSAGE, encode([[1], {}]))
        + encode_frame(MESSAGE, encode(1)),  # a second message on a call
        encode_frame(HEADERS, encode({"method": "zvm.echo"}))[:-2],  # cut short
        # A timeout no float holds (a big-integer extension).
        encode_frame(HEADERS, encode({"method": "zvm.echo", "timeout": 2**1100}))
        + encode_frame(MESSAGE, encode([["x"], {}])),
    ],
)
async def test_malformed_frame_fails_that_call_only(data: bytes) -> None:
    async with setup() as (_, _, client):
        with trio.fail_after(10):
            error = await raw_call(client.connection, data)
            assert error.status is Status.INVALID_ARGUMENT
            assert await client.call("zvm.echo", "next") == "next"
        assert not client.connection.is_closed


async def test_oversized_message_fails_that_call_only() -> None:
    async with setup(limits=rpc.Limits(max_message_size=10_000)) as (_, _, client):
        with trio.fail_after(10):
            with pytest.raises(rpc.RpcError) as info:
                await client.call("zvm.echo", b"x" * 20_000)
            assert info.value.status is Status.RESOURCE_EXHAUSTED
            assert "10000" in info.value.message
            assert await client.call("zvm.echo", b"x" * 5_000) == b"x" * 5_000
            # a much larger request (more than the flow-control windows) fails the same way
            with pytest.raises(rpc.RpcError) as info:
                await client.call("zvm.echo", b"x" * 3_000_000)
            assert info.value.status is Status.RESOURCE_EXHAUSTED
            assert await client.call("zvm.echo", "next") == "next"


async def test_oversized_reply_fails_on_the_client() -> None:
    async with setup() as (_, _, client):
        small = rpc.RpcConnection(client.connection.connection, max_message_size=1000)
        with pytest.raises(rpc.RpcError) as info:
            await small.call("zvm.echo", [b"x" * 2000])
        assert info.value.status is Status.RESOURCE_EXHAUSTED
        assert await small.call("zvm.echo", [b"x" * 100]) == b"x" * 100


async def test_replies_longer_than_one_read() -> None:
    # A reply is read in reads of up to RECEIVE_SIZE: a longer one takes
    # several, read on after the first (nothing lost or reordered).
    async with setup() as (_, _, client):
        with trio.fail_after(10):
            for size in (RECEIVE_SIZE - 100, RECEIVE_SIZE + 1, 300_001):
                body = bytes(range(256)) * (size // 256) + b"e" * (size % 256)
                assert await client.call("zvm.echo", body) == body
        small = rpc.RpcConnection(client.connection.connection, max_message_size=100_000)
        with pytest.raises(rpc.RpcError) as info:
            await small.call("zvm.echo", [b"x" * 150_000])
        assert info.value.status is Status.RESOURCE_EXHAUSTED
        assert await small.call("zvm.echo", [b"x" * 90_000]) == b"x" * 90_000


async def test_concurrent_call_limit_per_connection() -> None:
    async with setup(limits=rpc.Limits(max_concurrent_calls=2)) as (probe, server, client):
        probe.expect_waiting = 2
        with trio.fail_after(10):
            results: list[str] = []

            async def wait() -> None:
                results.append(await client.call("zvm.wait"))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait)
                nursery.start_soon(wait)
                await probe.all_waiting.wait()
                assert server.statistics()["calls_in_flight"] == 2
                with pytest.raises(rpc.RpcError) as info:
                    await client.call("zvm.echo", 1)
                assert info.value.status is Status.RESOURCE_EXHAUSTED
                probe.release.set()
            assert results == ["released", "released"]
            assert await client.call("zvm.echo", 1) == 1


async def test_calls_per_second_per_client() -> None:
    limits = rpc.Limits(max_calls_per_second=0.001, burst=3)
    async with setup(limits=limits) as (_, _, client):
        for i in range(3):
            assert await client.call("zvm.echo", i) == i
        with pytest.raises(rpc.RpcError) as info:
            await client.call("zvm.echo", 4)
        assert info.value.status is Status.RESOURCE_EXHAUSTED
        assert "per second" in info.value.message


async def test_interceptors_reject_on_the_server_and_add_metadata_on_the_client() -> None:
    @asynccontextmanager
    async def require_token(ctx: rpc.Context) -> AsyncIterator[None]:
        if ctx.metadata.get("authorization") != "Bearer s3cret":
            raise rpc.RpcError(Status.UNAUTHENTICATED, "missing or bad token")
        yield

    @asynccontextmanager
    async def add_token(info: rpc.CallInfo) -> AsyncIterator[None]:
        info.metadata["authorization"] = "Bearer s3cret"
        yield

    async with setup(interceptors=[require_token]) as (probe, _, client):
        with pytest.raises(rpc.RpcError) as info:
            await client.call("zvm.get_balance", b"\x01")
        assert info.value.status is Status.UNAUTHENTICATED
        assert probe.ran == []
        authed = rpc.RpcConnection(client.connection.connection, interceptors=[add_token])
        assert await authed.call("zvm.get_balance", [b"\x01"]) == 1


async def test_ten_thousand_calls_in_flight_on_one_connection() -> None:
    one_connection = rpc.PoolOptions(max_connections_per_endpoint=1)
    async with setup(interceptors=[], options=one_connection) as (_, _, client):
        results: dict[int, int] = {}

        async def one(i: int) -> None:
            results[i] = await client.call("zvm.echo", i)

        with trio.fail_after(300):
            async with trio.open_nursery() as nursery:
                for i in range(10_000):
                    nursery.start_soon(one, i)
        assert results == {i: i for i in range(10_000)}
        assert not client.connection.is_closed


async def test_config_alpn_is_replaced_by_the_rpc_protocol() -> None:
    async with setup() as (_, _, client):
        assert client.connection.connection.alpn == rpc.ALPN
    # a client config made for another protocol still speaks ghostwire-rpc
    config = rpc_client_config(alpn=["h3"])
    from ghostwire.rpc.client import rpc_client_config as adapt

    assert list(adapt(config).alpn) == [rpc.ALPN]


async def test_serve_function_form() -> None:
    probe = Probe()
    async with trio.open_nursery() as nursery:
        serve = functools.partial(
            rpc.serve, [make_service(probe)], 0, rpc_server_config(), host="127.0.0.1"
        )
        listener = await nursery.start(serve)
        assert isinstance(listener, rpc.RpcListener) and listener.port > 0
        with trio.fail_after(10):
            address = f"127.0.0.1:{listener.port}"
            async with rpc.connect(address, config=rpc_client_config()) as client:
                assert await client.call("zvm.echo", [1, b"2"]) == [1, b"2"]
        nursery.cancel_scope.cancel()


async def test_connection_lost_mid_call_is_unavailable() -> None:
    async with setup() as (probe, _, client):
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:

                async def caller() -> None:
                    with pytest.raises(rpc.RpcError) as info:
                        await client.call("zvm.hang")
                    assert info.value.status is Status.UNAVAILABLE

                nursery.start_soon(caller)
                await probe.started.wait()
                await client.aclose()
            with pytest.raises(rpc.RpcError) as info:
                await client.call("zvm.echo", 1)
            assert info.value.status is Status.UNAVAILABLE
            await probe.cancelled.wait()  # the server saw the connection go and cancelled


def test_parse_address() -> None:
    from ghostwire.rpc.client import parse_address

    assert parse_address("localhost:4433") == ("localhost", 4433)
    assert parse_address("[::1]:443") == ("::1", 443)
    for bad in ("localhost", ":1", "host:port", ""):
        with pytest.raises(ValueError):
            parse_address(bad)


async def test_each_connection_gets_the_handler_of_its_alpn() -> None:
    """What the HTTP/3 mapping will use: another protocol on the same port."""
    probe = Probe()
    server = rpc.Server([make_service(probe)], config=rpc_server_config())
    seen: list[str | None] = []

    async def other_protocol(conn: quic.Connection) -> None:
        seen.append(conn.alpn)
        stream = await conn.accept_stream()
        assert isinstance(stream, quic.QuicStream)
        async with stream:
            await stream.send_all(b"other:" + await stream.receive_some())

    server.add_protocol("other", other_protocol)
    assert server.alpn_protocols == [rpc.ALPN, "h3", "other"]  # h3: the HTTP/3 mapping
    with pytest.raises(ValueError):
        server.add_protocol("other", other_protocol)
    async with trio.open_nursery() as nursery:
        listener = await nursery.start(functools.partial(server.serve, 0, host="127.0.0.1"))
        with trio.fail_after(10):
            config = rpc_client_config(alpn=["other"])
            async with quic.connect("127.0.0.1", listener.port, config) as conn:
                stream = await conn.open_stream()
                await stream.send_all(b"hi")
                await stream.send_eof()
                assert await stream.receive_some() == b"other:hi"
            async with rpc.connect(f"127.0.0.1:{listener.port}", rpc_client_config()) as client:
                assert await client.call("zvm.echo", 7) == 7
        nursery.cancel_scope.cancel()
    assert seen == ["other"]
