"""The per-call fast paths of the RPC layer say the same as the general ones.

Each fast path (a whole request taken in one step, the argument binder's
keyword path, the cached HEADERS of an option-less call, the OK trailer
recognised without decoding, the pool's first attempt outside the retry
runner) is checked against what the general path gives for the same input.
"""

from __future__ import annotations

import enum
import functools
import math
from typing import Any

import pytest
import trio
import trio.testing

import ghostwire.rpc as rpc
from ghostwire.quic.net.suspension import may_suspend
from ghostwire.rpc.codec import decode, encode
from ghostwire.rpc.dispatch import Dispatcher
from ghostwire.rpc.framing import HEADERS, MESSAGE, TRAILERS, FrameDecoder, MessageTooLarge
from ghostwire.rpc.resilience import CallRetryState, RetryPolicy, retry_after_failure
from ghostwire.rpc.resilience.runners import AttemptFailure
from ghostwire.rpc.service import ArgumentBinder
from ghostwire.rpc.status import RpcError, Status
from ghostwire.rpc.wire import OK_TRAILER, OK_TRAILER_PAYLOAD, encode_request, parse_header


def _frame(kind: int, payload: bytes) -> bytes:
    return bytes([kind]) + len(payload).to_bytes(4, "big") + payload


def test_take_pair_takes_exactly_two_frames_of_the_right_types() -> None:
    decoder = FrameDecoder()
    decoder.feed(_frame(HEADERS, b"head") + _frame(MESSAGE, b"body"))
    assert decoder.take_pair(HEADERS, MESSAGE) == (b"head", b"body")
    assert decoder.buffered == 0


@pytest.mark.parametrize(
    "data",
    [
        _frame(HEADERS, b"head") + _frame(MESSAGE, b"body") + _frame(MESSAGE, b"more"),
        _frame(HEADERS, b"head") + _frame(TRAILERS, b"body"),
        _frame(MESSAGE, b"head") + _frame(MESSAGE, b"body"),
        _frame(HEADERS, b"head") + _frame(MESSAGE, b"body")[:-1],  # cut short
        _frame(HEADERS, b"head"),
    ],
)
def test_take_pair_leaves_anything_else_to_next_frame(data: bytes) -> None:
    decoder = FrameDecoder()
    decoder.feed(data)
    assert decoder.take_pair(HEADERS, MESSAGE) is None
    assert decoder.buffered == len(data)  # nothing taken
    first = decoder.next_frame()
    assert first is not None and first[1] == b"head"


def test_take_pair_leaves_an_oversized_frame_to_next_frame() -> None:
    decoder = FrameDecoder(max_message_size=8)
    decoder.feed(_frame(HEADERS, b"head") + _frame(MESSAGE, b"x" * 9))
    assert decoder.take_pair(HEADERS, MESSAGE) is None
    assert decoder.next_frame() == (HEADERS, b"head")
    with pytest.raises(MessageTooLarge):
        decoder.next_frame()


class Color(enum.IntEnum):
    RED = 1


async def _handler(ctx: Any, amount: int, note: str = "", ratio: float = 1.0) -> None:
    pass


def test_binder_keyword_path_checks_like_the_general_path() -> None:
    binder = ArgumentBinder(_handler, 1)
    every: dict[str, Any] = {"amount": 5, "note": "x", "ratio": 2}  # int for float: PEP 484's tower
    values = binder.bind([], every)
    assert values == every and values is not every
    assert binder.bind([], {"amount": Color.RED, "note": "", "ratio": 0.5})["amount"] is Color.RED
    wrong: list[tuple[dict[str, Any], str]] = [
        ({"amount": True}, "amount"),
        ({"ratio": "1"}, "ratio"),
    ]
    for bad, name in wrong:
        kwargs = {**every, **bad}
        with pytest.raises(RpcError) as fast:
            binder.bind([], kwargs)  # every parameter by keyword: the fast path
        with pytest.raises(RpcError) as general:
            binder.bind([kwargs.pop("amount")], kwargs)  # positional: the general path
        if name == "amount":
            assert fast.value.status is Status.INVALID_ARGUMENT and name in fast.value.message
        else:
            assert fast.value.message == general.value.message
    with pytest.raises(RpcError, match="unknown argument 'extra'"):
        binder.bind([], {**every, "extra": 1})


def _header_of(request: bytes) -> dict[str, Any]:
    decoder = FrameDecoder()
    decoder.feed(request)
    frame = decoder.next_frame()
    assert frame is not None and frame[0] == HEADERS
    return dict(decode(frame[1]))


def test_cached_call_headers_match_the_encoded_ones() -> None:
    plain = encode_request("svc.m", [1], {"a": b"x"})
    assert encode_request("svc.m", [1], {"a": b"x"}) == plain  # the cached header
    assert _header_of(plain) == {"method": "svc.m"}
    assert parse_header(encode({"method": "svc.m"})).method == "svc.m"
    timed = encode_request("svc.m", [1], {"a": b"x"}, timeout=2.5, metadata={"k": "v"})
    assert _header_of(timed) == {"method": "svc.m", "timeout": 2.5, "metadata": {"k": "v"}}
    assert _header_of(encode_request("svc.m", [], {}, kind="events")) == {
        "method": "svc.m",
        "kind": "events",
    }


def test_ok_trailer_payload_is_the_ok_trailer() -> None:
    assert decode(OK_TRAILER_PAYLOAD) == {"status": 0}
    assert _frame(TRAILERS, OK_TRAILER_PAYLOAD) == OK_TRAILER


def _classify(exc: Exception) -> AttemptFailure | None:
    return AttemptFailure(exc.status) if isinstance(exc, RpcError) else None


async def test_retry_after_failure_continues_from_the_failed_attempt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    state = CallRetryState(RetryPolicy(max_attempts=3), None, idempotent=True)
    state.begin_attempt()  # the caller's own first attempt, which failed
    numbers: list[int] = []

    async def attempt(number: int) -> str:
        numbers.append(number)
        if number < 3:
            raise RpcError(Status.UNAVAILABLE, f"attempt {number}")
        return "done"

    first = RpcError(Status.UNAVAILABLE, "attempt 1")
    assert await retry_after_failure(attempt, state, _classify, first) == "done"
    assert numbers == [2, 3] and state.attempts == 3


async def test_retry_after_failure_raises_what_it_may_not_retry() -> None:
    state = CallRetryState(RetryPolicy(max_attempts=3), None, idempotent=False)
    state.begin_attempt()
    failed = RpcError(Status.UNAVAILABLE, "maybe ran")

    async def attempt(number: int) -> None:  # pragma: no cover - never retried
        raise AssertionError("a non-idempotent call that may have run was retried")

    with pytest.raises(RpcError) as caught:
        await retry_after_failure(attempt, state, _classify, failed)
    assert caught.value is failed and state.attempts == 1


async def _returns(ctx: Any, value: int) -> int:
    return value + 1


async def _awaits(ctx: Any, value: int) -> int:
    await trio.lowlevel.checkpoint()
    return value


async def _iterates(ctx: Any, value: Any) -> None:
    async for _ in value:
        pass


async def _enters(ctx: Any, value: Any) -> None:
    async with value:
        pass


async def _comprehends(ctx: Any, value: Any) -> list[Any]:
    return [item async for item in value]


def test_only_handlers_without_a_schedule_point_skip_the_scope() -> None:
    assert not may_suspend(_returns)
    for handler in (_awaits, _iterates, _enters, _comprehends):
        assert may_suspend(handler), handler.__name__
    assert may_suspend(functools.partial(_returns))  # not a plain function: assumed to
    assert may_suspend(len)

    def returns_a_coroutine(ctx: Any, value: int) -> Any:
        return _awaits(ctx, value)  # (marked as a coroutine function, it would pass)

    assert may_suspend(returns_a_coroutine)


async def test_a_call_runs_in_a_cancel_scope_unless_it_cannot_suspend() -> None:
    svc = rpc.Service("svc")
    scopes: dict[str, Any] = {}

    @svc.call
    async def plain(ctx: rpc.Context) -> None:
        scopes["plain"] = ctx._scope

    @svc.call
    async def waits(ctx: rpc.Context) -> None:
        scopes["waits"] = ctx._scope
        await trio.lowlevel.checkpoint()

    dispatcher = Dispatcher([svc])
    for name in ("plain", "waits"):
        await dispatcher.unary(rpc.Context(f"svc.{name}"), svc.methods[name], [], {})
    assert scopes["plain"] is None and isinstance(scopes["waits"], trio.CancelScope)
    # With a deadline, or cancelled before it starts, it gets its scope again.
    await dispatcher.unary(
        rpc.Context("svc.plain", deadline=math.inf), svc.methods["plain"], [], {}
    )
    assert isinstance(scopes.get("plain"), trio.CancelScope)
    scopes.clear()
    cancelled = rpc.Context("svc.plain")
    cancelled.cancel()
    # (It still runs to its end: it has no schedule point for the scope to act.)
    await dispatcher.unary(cancelled, svc.methods["plain"], [], {})
    assert isinstance(scopes.get("plain"), trio.CancelScope)


# -- the client's reply: whole in one step, or frame by frame -------------------

_REPLIES: list[tuple[bytes, Any]] = [
    (_frame(MESSAGE, encode(7)) + OK_TRAILER, 7),
    (_frame(TRAILERS, encode({"status": int(Status.NOT_FOUND), "message": "no"})), "NOT_FOUND"),
    (_frame(MESSAGE, encode(1)) + _frame(TRAILERS, encode({"status": 0})), 1),  # OK, decoded
    (_frame(MESSAGE, encode(1)), "INTERNAL"),  # no trailer
    (OK_TRAILER + _frame(MESSAGE, encode(1)), "INTERNAL"),  # data after the trailer
    (_frame(MESSAGE, encode(1)) + OK_TRAILER + OK_TRAILER, "INTERNAL"),
    (_frame(MESSAGE, encode(b"x" * 2000)) + OK_TRAILER, "RESOURCE_EXHAUSTED"),  # over 1,000
    (_frame(MESSAGE, encode(1)) + OK_TRAILER[:-1], "INVALID_ARGUMENT"),  # cut short (FramingError)
]


async def _reply_with(split: bool) -> list[Any]:
    """What the client makes of each canned reply from a bare QUIC server,
    sent whole with its FIN (read in one step) or ``split`` (its first byte
    alone, then the rest: read frame by frame)."""
    from test_rpc_support import rpc_client_config, rpc_server_config

    import ghostwire.quic as quic

    replies = iter(_REPLIES)

    async def serve(conn: quic.Connection) -> None:
        async for stream in conn:
            assert isinstance(stream, quic.QuicStream)
            while await stream.receive_some():
                pass
            reply = next(replies)[0]
            if split:
                await stream.send_all(reply[:1])
                await trio.testing.wait_all_tasks_blocked()  # the client read it
                reply = reply[1:]
            await stream.send_all(reply, end_stream=True)
            await stream.aclose()

    seen: list[Any] = []
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            functools.partial(quic.serve, serve, 0, rpc_server_config(), host="127.0.0.1")
        )
        async with quic.connect("127.0.0.1", server.port, rpc_client_config()) as conn:
            client = rpc.RpcConnection(conn, max_message_size=1000)
            for _ in _REPLIES:
                try:
                    seen.append(await client.call("svc.m"))
                except RpcError as exc:
                    seen.append(exc.status.name)
        nursery.cancel_scope.cancel()
    return seen


@pytest.mark.parametrize("split", [False, True])
async def test_a_reply_read_whole_says_what_one_read_frame_by_frame_says(split: bool) -> None:
    with trio.fail_after(20):
        assert await _reply_with(split) == [expected for _, expected in _REPLIES]


def test_a_handlers_bytecode_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # serve_requests asks per connection: the answer is kept per code object.
    import dis

    reads = []
    real = dis.get_instructions

    def counting(code: Any) -> Any:
        reads.append(code)
        return real(code)

    monkeypatch.setattr(dis, "get_instructions", counting)

    async def answer_once_more(request: bytes) -> bytes:
        return request + b"!"

    assert [may_suspend(answer_once_more) for _ in range(3)] == [False] * 3
    assert reads == [answer_once_more.__code__]
